"""Base-model resolution, head learning rates, precision choice."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.config import DEFAULT_BASE_MODEL, TrainingConfig, parse_config, to_hyperparameters
from mlcore.modeling import (
    BaseModelError,
    load_classifier,
    make_optimizer,
    parameter_groups,
    resolve_base_model,
    use_fast_training_attention,
)
from tests.helpers.models import minilm_path


def test_default_base_model_resolves_to_the_shipped_minilm():
    path = Path(resolve_base_model(DEFAULT_BASE_MODEL))
    assert path == minilm_path() and (path / "config.json").exists()


def test_local_directory_is_used_as_is(tiny_base_model):
    assert resolve_base_model(str(tiny_base_model)) == str(tiny_base_model)


def test_unreachable_hub_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError, match="could not load base model 'no-such-org/no-such-model'"):
        load_classifier("no-such-org/no-such-model", ["a", "b"])


def test_head_gets_its_own_learning_rate(tiny_base_model):
    model, _ = load_classifier(str(tiny_base_model), ["x", "y"])
    groups = parameter_groups(model, learning_rate=1e-5, head_learning_rate=1e-3, weight_decay=0.01)
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_id[id(named["classifier.weight"])]["lr"] == 1e-3
    assert by_id[id(named["bert.pooler.dense.weight"])]["lr"] == 1e-3
    assert by_id[id(named["bert.encoder.layer.0.attention.self.query.weight"])]["lr"] == 1e-5
    assert by_id[id(named["bert.embeddings.LayerNorm.weight"])]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_fused_optimizer_takes_the_same_steps_as_per_tensor_adamw(tiny_base_model):
    """The fused kernel is a speed change only: three steps on the same gradients give the same weights."""
    import torch

    models = [load_classifier(str(tiny_base_model), ["x", "y"])[0] for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = models[0].classifier.weight.detach().clone()
    fused = make_optimizer(models[0], 1e-3, 1e-2, 0.01, "cpu")
    reference = torch.optim.AdamW(parameter_groups(models[1], 1e-3, 1e-2, 0.01), foreach=False)
    assert fused.defaults["fused"] and [g["lr"] for g in fused.param_groups] == [g["lr"] for g in reference.param_groups]
    torch.manual_seed(0)
    for _ in range(3):
        grads = {n: torch.randn_like(p) for n, p in models[0].named_parameters()}
        for model, optimizer in zip(models, (fused, reference)):
            for name, param in model.named_parameters():
                param.grad = grads[name].clone()
            optimizer.step()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(models[0].classifier.weight, start)  # the steps did move the weights


def test_config_round_trips_through_sagemaker_hyperparameters():
    cfg = TrainingConfig(epochs=2.5, learning_rate=3e-5, progress=False)
    argv = [x for k, v in to_hyperparameters(cfg).items() for x in (f"--{k}", v)]
    assert parse_config(TrainingConfig, argv) == cfg


def test_config_reads_sagemaker_env(monkeypatch):
    monkeypatch.setenv("SM_HPS", '{"epochs": "4", "max-length": "64"}')
    cfg = parse_config(TrainingConfig, ["--batch-size", "8"])
    assert (cfg.epochs, cfg.max_length, cfg.batch_size) == (4.0, 64, 8)


def test_layer_lr_decay_gives_each_layer_its_rate_from_the_top_down(tiny_base_model):
    model, _ = load_classifier(str(tiny_base_model), ["x", "y"])
    layers = model.config.num_hidden_layers
    groups = parameter_groups(model, 1e-4, 1e-3, 0.01, layer_lr_decay=0.5)
    lr_of = {name: g["lr"] for g in groups for p in g["params"] for name, q in model.named_parameters() if p is q}
    top, bottom = layers - 1, 0
    assert lr_of[f"bert.encoder.layer.{top}.output.dense.weight"] == pytest.approx(1e-4)
    assert lr_of[f"bert.encoder.layer.{bottom}.output.dense.weight"] == pytest.approx(1e-4 * 0.5 ** (layers - 1))
    assert lr_of["bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-4 * 0.5 ** layers)
    assert lr_of["classifier.weight"] == 1e-3 and lr_of["bert.pooler.dense.weight"] == 1e-3
    assert sum(len(g["params"]) for g in groups) == len(lr_of)
    flat = parameter_groups(model, 1e-4, 1e-3, 0.01)  # no decay: one encoder rate, as before
    assert sorted({g["lr"] for g in flat}) == [1e-4, 1e-3]


def test_dropout_override_reaches_every_rate_and_makes_training_mode_deterministic(tiny_base_model):
    import torch

    model, tokenizer = load_classifier(str(tiny_base_model), ["x", "y"], dropout=0.0)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.0
    assert model.config.classifier_dropout == 0.0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    batch = tokenizer(["a b c", "d e"], return_tensors="pt", padding=True)
    model.train()
    torch.testing.assert_close(model(**batch).logits, model(**batch).logits)
    kept, _ = load_classifier(str(tiny_base_model), ["x", "y"])
    assert any(m.p > 0 for m in kept.modules() if isinstance(m, torch.nn.Dropout))


def test_attention_dropout_alone_and_the_kernel_it_trains_with(tiny_base_model, tmp_path):
    """Training on CPU uses eager attention (sdpa's flash backward and its in-kernel dropout are slower there),
    which computes the same logits and is not written into the saved model; other devices keep sdpa."""
    import json

    import torch

    model, tokenizer = load_classifier(str(tiny_base_model), ["x", "y"], attention_dropout=0.0)
    assert model.config.attention_probs_dropout_prob == 0.0 and model.config.hidden_dropout_prob > 0
    batch = tokenizer(["a b c", "d e"], return_tensors="pt", padding=True)
    model.eval()
    before = model(**batch).logits
    assert use_fast_training_attention(model, "cpu") == "eager"
    torch.testing.assert_close(model(**batch).logits, before, rtol=1e-4, atol=1e-5)
    model.save_pretrained(tmp_path)
    assert "eager" not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
    kept, _ = load_classifier(str(tiny_base_model), ["x", "y"])
    assert use_fast_training_attention(kept, "cuda") == "sdpa"
    assert use_fast_training_attention(kept, "cpu") == "eager"
