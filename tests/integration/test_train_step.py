"""steps/train.py through SageMaker's training conventions (SM_* env vars, --hyperparameters)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from tests.helpers.data import keyword_rows, write_split_dir
from tests.helpers.paths import REPO_ROOT

TRAIN_SCRIPT = REPO_ROOT / "steps" / "train.py"
# The recipe of tests/helpers/models.py:train_tiny_classifier. Over 16 seeds it scored test macro-F1 0.68-0.92
# (mean 0.85) on the keyword task; guessing every label scores 0.57. The former recipe (12 epochs at 5e-3, no
# warmup) scored 0.69-0.87 over 8 seeds.
TINY_HPS = ["--epochs", "16", "--batch-size", "16", "--learning-rate", "3e-3", "--head-learning-rate", "3e-3",
            "--warmup-ratio", "0.1", "--weight-decay", "0",
            "--max-length", "32", "--progress", "false", "--export-onnx", "false", "--threshold-grid", "19"]
LEARNED_F1 = 0.65  # above guessing (0.57), below every seed of the recipe


def run_train(tmp: Path, base_model: Path, extra=(), env_extra=None, rows=240):
    channels = tmp / "input" / "data"
    write_split_dir(channels / "train", keyword_rows(rows, seed=1))
    write_split_dir(channels / "validation", keyword_rows(80, seed=2))
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(channels / "train"),
        "SM_CHANNEL_VALIDATION": str(channels / "validation"),
        "SM_MODEL_DIR": str(tmp / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp / "output" / "data"),
        **(env_extra or {}),
    }
    proc = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--base_model", str(base_model), *TINY_HPS, *extra],
        env=env, capture_output=True, text=True, timeout=300,
    )
    return proc, tmp / "model"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base_model):
    tmp = tmp_path_factory.mktemp("train")
    proc, model_dir = run_train(tmp, tiny_base_model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, model_dir


def test_writes_a_sagemaker_ready_model_directory(trained):
    _, model_dir = trained
    config = json.loads((model_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "a", "1": "b", "2": "c"}
    thresholds = json.loads((model_dir / "thresholds.json").read_text())
    assert thresholds["labels"] == ["a", "b", "c"]
    assert all(0.0 < t < 1.0 for t in thresholds["thresholds"]) and thresholds["max_length"] == 32
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    assert (model_dir / "code" / "inference.py").exists()
    assert (model_dir / "code" / "mlcore" / "handler.py").exists()
    assert not (model_dir / "code" / "requirements.txt").exists()  # nothing to pip-install at endpoint start
    serving = json.loads((model_dir / "serving.json").read_text())
    assert serving["backend"] == "torch" and "model.safetensors" in serving["files"]  # --export-onnx false
    full = model_dir.parent / "output" / "data" / "model"  # SM_OUTPUT_DATA_DIR/model: the complete model
    assert (full / "model.safetensors").exists() and (full / "thresholds.json").exists()
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert summary["config"]["epochs"] == 16.0 and summary["steps"] == 16 * 15


def test_logs_lines_a_sagemaker_metric_definition_can_scrape(trained):
    proc, _ = trained
    f1 = [float(x) for x in re.findall(r"eval_f1_macro=([0-9.]+)", proc.stdout)]
    loss = [float(x) for x in re.findall(r"train_loss=([0-9.]+)", proc.stdout)]
    assert len(f1) == 16 and len(loss) == 16
    assert loss[-1] < loss[0]


def test_learns_a_keyword_task(trained):
    from mlcore.datasets import read_split
    from mlcore.metrics import quick_scores
    from mlcore.predictor import decide, load_predictor

    proc, model_dir = trained
    predictor = load_predictor(model_dir, backend="torch")
    test = read_split(write_split_dir(model_dir.parent / "test", keyword_rows(100, seed=3)))
    probs = predictor.predict_proba(test.texts)
    scores = quick_scores(test.matrix(), probs, predictor.thresholds)
    assert scores["f1_macro"] > LEARNED_F1, proc.stdout[-2000:]
    assert decide(probs, predictor.thresholds).shape == (100, 3)


def test_same_seed_same_model(tmp_path, trained, tiny_base_model):
    _, first = trained
    proc, second = run_train(tmp_path, tiny_base_model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert (first / "thresholds.json").read_text() == (second / "thresholds.json").read_text()


def test_frozen_word_embeddings_stay_the_base_models_and_the_rest_learns(tmp_path, trained, tiny_base_model):
    proc, model_dir = run_train(tmp_path, tiny_base_model, ["--freeze-word-embeddings", "true", "--epochs", "2"],
                                rows=64)
    assert proc.returncode == 0, proc.stderr[-3000:]
    base, tuned = load_file(tiny_base_model / "model.safetensors"), load_file(model_dir / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    assert (tuned[f"bert.{key}"] == base.get(key, base.get(f"bert.{key}"))).all()
    layer = "encoder.layer.0.attention.self.query.weight"
    assert not (tuned[f"bert.{layer}"] == base.get(layer, base.get(f"bert.{layer}"))).all()
    _, unfrozen = trained
    assert not (load_file(unfrozen / "model.safetensors")[f"bert.{key}"] == tuned[f"bert.{key}"]).all()


def test_asymmetric_loss_no_dropout_and_layer_decay_still_learn_the_task(tmp_path, tiny_base_model):
    from mlcore.datasets import read_split
    from mlcore.metrics import quick_scores
    from mlcore.predictor import load_predictor

    proc, model_dir = run_train(tmp_path, tiny_base_model, ["--loss", "asl", "--dropout", "0",
                                                            "--layer-lr-decay", "0.8", "--threshold-shrink", "-1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mlcore.metrics import SHRINK_CANDIDATES

    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert summary["validation"]["threshold_shrink"] in SHRINK_CANDIDATES  # chosen by cross-validation
    assert all(h["threshold_shrink"] in SHRINK_CANDIDATES for h in summary["history"])
    config = json.loads((model_dir / "config.json").read_text())
    assert config["hidden_dropout_prob"] == 0 and config["attention_probs_dropout_prob"] == 0
    assert "attention=eager" in proc.stdout + proc.stderr  # no attention dropout: the faster kernel on CPU
    predictor = load_predictor(model_dir, backend="torch")
    test = read_split(write_split_dir(tmp_path / "test", keyword_rows(100, seed=3)))
    scores = quick_scores(test.matrix(), predictor.predict_proba(test.texts), predictor.thresholds)
    assert scores["f1_macro"] > LEARNED_F1, proc.stdout[-2000:]


@pytest.mark.parametrize("flags, message", [
    (["--loss", "focal"], "loss must be one of asl, bce, not 'focal'"),
    (["--dropout", "1.5"], "--dropout 1.5: a rate must be below 1"),
    (["--layer-lr-decay", "0"], "--layer-lr-decay 0.0: must be in (0, 1]"),
    (["--attention-dropout", "1"], "--attention-dropout 1.0: a rate must be below 1"),
    (["--ema-decay", "1"], "--ema-decay 1.0: must be in [0, 1)"),
    (["--rdrop-alpha", "-1"], "--rdrop-alpha -1.0: must be >= 0"),
    (["--class-balance-beta", "1"], "--class-balance-beta 1.0: must be in [0, 1)"),
])
def test_out_of_range_training_options_are_clear_errors(tmp_path, tiny_base_model, flags, message):
    proc, _ = run_train(tmp_path, tiny_base_model, flags, rows=32)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_resumes_from_an_epoch_checkpoint(tmp_path, tiny_base_model):
    ckpt = tmp_path / "checkpoints"
    proc, _ = run_train(tmp_path / "one", tiny_base_model, ["--epochs", "1", "--checkpoint-dir", str(ckpt)], rows=64)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ckpt / "checkpoint.pt").exists()
    proc, model_dir = run_train(tmp_path / "two", tiny_base_model, ["--epochs", "2", "--checkpoint-dir", str(ckpt)], rows=64)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    assert len(re.findall(r"^epoch=\d", proc.stdout, re.M)) == 1  # only epoch 2 ran
    assert json.loads((model_dir / "training_summary.json").read_text())["steps"] == 2 * 4


def _max_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two state dicts' encoder weights (keys of `a`)."""
    keys = [k for k in a if ".encoder." in k]
    assert keys
    return max(float(abs(a[k] - b[k]).max()) for k in keys)


NEAR_ONE = ["--ema-decay", "0.999999"]  # the average barely leaves its first value: the weights after step 1


def test_moving_average_is_the_model_kept(tmp_path, tiny_base_model):
    """The saved model is the average: with a decay near 1 it is the weights after the first step (the average's
    first update copies them), not those after the last."""
    flags = ["--epochs", "2", "--dropout", "0"]
    runs = {}
    for name, extra in (("first step", ["--max-steps", "1"]), ("plain", []), ("averaged", NEAR_ONE)):
        proc, model_dir = run_train(tmp_path / name.replace(" ", "-"), tiny_base_model, [*flags, *extra], rows=64)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = load_file(model_dir / "model.safetensors")
    assert _max_difference(runs["first step"], runs["averaged"]) < 1e-4
    assert _max_difference(runs["first step"], runs["plain"]) > 1e-3


def test_resume_carries_the_moving_average(tmp_path, tiny_base_model):
    """One epoch, a stop, a resume: the average in the last checkpoint is still the weights after step 1 of the
    first run (an average restarted at the resume would hold the weights after step 5)."""
    import torch

    flags = ["--dropout", "0", "--epochs", "2"]
    proc, first_step = run_train(tmp_path / "first-step", tiny_base_model, [*flags, "--max-steps", "1"], rows=64)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "checkpoints"
    for part, epochs in (("first", "1"), ("resumed", "2")):
        proc, _ = run_train(tmp_path / part, tiny_base_model,
                            [*flags, *NEAR_ONE, "--epochs", epochs, "--checkpoint-dir", str(ckpt)], rows=64)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    saved = torch.load(ckpt / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["state"]["step"] == 8
    average = {k.removeprefix("module."): v.numpy() for k, v in saved["ema"].items() if k.startswith("module.")}
    assert _max_difference(load_file(first_step / "model.safetensors"), average) < 1e-4


def test_bad_channel_is_a_clear_error(tmp_path, tiny_base_model):
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(tmp_path / "missing"),
           "SM_CHANNEL_VALIDATION": str(tmp_path / "missing"), "SM_MODEL_DIR": str(tmp_path / "m")}
    proc = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--base-model", str(tiny_base_model)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "missing" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_hyperparameter_is_rejected(tmp_path):
    proc = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--epocs", "3"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--epocs" in proc.stderr


def test_rdrop_and_label_weights_reach_the_training_step(tmp_path, tiny_base_model):
    """R-drop: without dropout the two passes agree, so the loss is the plain loss and the model the plain run's;
    with dropout, two runs drawing the same masks (both R-drop) differ only by the KL weight, and their models part.
    Class-balanced weights (the tiny set's label counts differ by chance, ~1.2x) move the model off the plain run's."""
    flags = ["--epochs", "1", "--max-steps", "3", "--precision", "fp32"]
    runs = {}
    for name, extra in (("plain", ["--dropout", "0"]), ("rdrop", ["--dropout", "0", "--rdrop-alpha", "4"]),
                        ("kl weight ~0", ["--dropout", "0.3", "--rdrop-alpha", "1e-9"]),
                        ("kl weight 4", ["--dropout", "0.3", "--rdrop-alpha", "4"]),
                        ("balanced", ["--dropout", "0", "--class-balance-beta", "0.999"])):
        proc, model_dir = run_train(tmp_path / name.replace(" ", "-"), tiny_base_model, [*flags, *extra], rows=64)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = load_file(model_dir / "model.safetensors")
    assert _max_difference(runs["plain"], runs["rdrop"]) < 1e-5
    assert _max_difference(runs["kl weight ~0"], runs["kl weight 4"]) > 1e-4
    assert _max_difference(runs["plain"], runs["balanced"]) > 1e-4
