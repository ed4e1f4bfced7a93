"""Base-model resolution, head learning rates, precision choice."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.config import DEFAULT_BASE_MODEL, TrainingConfig, parse_config, to_hyperparameters
from mlcore.modeling import BaseModelError, load_classifier, make_optimizer, parameter_groups, resolve_base_model
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
