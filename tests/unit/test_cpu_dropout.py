"""CpuDropout: the mask's rate and scale, every 16-bit lane random, seeded repeats, gradients, the swap."""
from __future__ import annotations

import json

import pytest
import torch

from mlcore.cpu_dropout import CpuDropout, keep_mask, use_cpu_dropout
from mlcore.modeling import load_classifier

N = 1 << 20


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_lane_keeps_one_minus_p_and_the_scale_keeps_the_mean(p):
    torch.manual_seed(0)
    factor = keep_mask(torch.Size([N // 4, 4]), p, torch.float32)
    kept = factor > 0
    sigma = (p * (1 - p) / (N // 4)) ** 0.5
    # each column is one of the four int16 lanes of an int64 draw: a generator with fewer than 64 random bits
    # per draw would leave a lane constant
    for lane in range(4):
        assert abs(kept[:, lane].float().mean().item() - (1 - p)) < 5 * sigma, lane
    assert abs(factor.mean().item() - 1.0) < 5 * sigma / (1 - p)
    assert torch.unique(factor).tolist() == [0.0, pytest.approx(1 / (1 - round(p * 65536) / 65536))]


def test_neighbouring_elements_are_independent():
    torch.manual_seed(1)
    kept = (keep_mask(torch.Size([N]), 0.5, torch.float32) > 0).float()
    correlation = torch.corrcoef(torch.stack([kept[:-1], kept[1:]]))[0, 1].item()
    assert abs(correlation) < 5 / N ** 0.5


def test_training_mode_draws_seeded_masks_with_matching_gradients_and_eval_is_identity():
    layer = CpuDropout(0.3)
    x = torch.randn(64, 50, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    torch.testing.assert_close(layer(x), out)
    dropped = out == 0
    assert 0.2 < dropped.float().mean().item() < 0.4
    out.float().sum().backward()
    scale = torch.tensor(1 / (1 - round(0.3 * 65536) / 65536), dtype=torch.bfloat16)
    expected = torch.where(dropped & (x != 0), torch.zeros_like(x), scale.expand_as(x))
    torch.testing.assert_close(x.grad, expected)
    layer.eval()
    assert layer(x) is x
    assert CpuDropout(0.0).train()(x) is x
    assert not CpuDropout(1.0).train()(x).any()


def test_swap_on_cpu_keeps_the_saved_model_and_eval_logits(tiny_base_model, tmp_path):
    torch.manual_seed(0)
    model, tokenizer = load_classifier(str(tiny_base_model), ["x", "y"])
    model.save_pretrained(tmp_path / "before")
    batch = tokenizer(["a b c", "d e"], return_tensors="pt", padding=True)
    model.eval()
    before = model(**batch).logits
    rates = [m.p for m in model.modules() if type(m) is torch.nn.Dropout and m.p > 0]
    assert use_cpu_dropout(model, "cuda") == 0
    assert use_cpu_dropout(model, "cpu") == len(rates) > 0
    assert [m.p for m in model.modules() if isinstance(m, CpuDropout)] == rates
    assert not any(type(m) is torch.nn.Dropout and m.p > 0 for m in model.modules())
    torch.testing.assert_close(model(**batch).logits, before)
    model.train()
    assert not torch.equal(model(**batch).logits, model(**batch).logits)  # dropout is active in training
    model.save_pretrained(tmp_path / "after")
    for name in ("config.json",):
        assert json.loads((tmp_path / "after" / name).read_text()) == json.loads((tmp_path / "before" / name).read_text())
    from safetensors.torch import load_file

    assert load_file(tmp_path / "after" / "model.safetensors").keys() == load_file(
        tmp_path / "before" / "model.safetensors").keys()
