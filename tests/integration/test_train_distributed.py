"""steps/train.py under `torchrun --nproc-per-node 2` on CPU (gloo), as SageMaker's torchrun driver runs it.

Each process trains on its half of every batch and DDP averages the gradients, so the model is the one a
single process trains (fp32 and no dropout make that checkable to float rounding); process 0 alone writes
the model. The torchrun job is stopped mid-training, as a spot interruption stops it, and restarted with the
same command and checkpoint directory (what SageMaker does after restoring /opt/ml/checkpoints from S3):
it resumes and ends with that same model.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data import keyword_rows, write_split_dir
from tests.helpers.models import save_tiny_bert
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import free_port

TRAIN_SCRIPT = REPO_ROOT / "steps" / "train.py"
TRAIN_ROWS, VALIDATION_ROWS, EPOCHS, BATCH = 192, 64, 5, 16
HPS = ["--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--learning-rate", "5e-3", "--head-learning-rate", "5e-3",
       "--warmup-ratio", "0", "--weight-decay", "0", "--max-length", "32", "--progress", "false",
       "--export-onnx", "false", "--threshold-grid", "19", "--precision", "fp32"]
PROCESSES = 2


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ddp-data")
    return {"base": save_tiny_bert(tmp / "base", dropout=0.0),
            "train": write_split_dir(tmp / "train", keyword_rows(TRAIN_ROWS, seed=1)),
            "validation": write_split_dir(tmp / "validation", keyword_rows(VALIDATION_ROWS, seed=2))}


def command(launcher: list[str], data: dict[str, Path], out: Path) -> list[str]:
    return [*launcher, str(TRAIN_SCRIPT), *HPS, "--base-model", str(data["base"]), "--train-dir", str(data["train"]),
            "--validation-dir", str(data["validation"]), "--model-dir", str(out / "model"),
            "--output-data-dir", str(out / "output"), "--checkpoint-dir", str(out / "checkpoints")]


def torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={PROCESSES}", "--nnodes=1",
            "--master-addr=127.0.0.1", f"--master-port={free_port(18700, 18800)}"]


def environment() -> dict[str, str]:
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
    env.pop("OMP_NUM_THREADS", None)  # torchrun and train.py pick the threads per process
    return env


def interrupted_then_resumed(data: dict[str, Path], out: Path) -> str:
    """torchrun stopped (SIGKILL to it and its workers) once epoch 2 is logged, then the same command again; its log."""
    import psutil

    proc = subprocess.Popen(command(torchrun(), data, out), env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first = []
    try:
        for line in proc.stdout:
            first.append(line)
            if line.startswith("epoch=2 "):
                break
    finally:  # the workers run in sessions of their own: each is killed by its id, as the instance's end stops them
        for process in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            try:
                process.kill()
            except psutil.NoSuchProcess:  # a worker that ended on its own meanwhile
                pass
        proc.wait(timeout=60)
    assert any(line.startswith("epoch=2 ") for line in first), "".join(first)[-3000:]
    assert not (out / "model").exists() or not any((out / "model").iterdir()), "killed before writing a model"
    second = subprocess.run(command(torchrun(), data, out), env=environment(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return second.stdout + second.stderr


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ddp-runs")
    single = subprocess.run(command([sys.executable], data, tmp / "single"), env=environment(), capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    return {"single": (tmp / "single", single.stdout), "ddp": (tmp / "ddp", interrupted_then_resumed(data, tmp / "ddp"))}


def validation_probabilities(model_dir: Path, validation: Path) -> np.ndarray:
    from mlcore.datasets import read_split
    from mlcore.predictor import load_predictor

    return load_predictor(model_dir, backend="torch").predict_proba(read_split(validation).texts)


def test_each_process_trains_on_its_half_of_every_batch(runs):
    _, log = runs["ddp"]
    assert "resumed from" in log
    resumed_epochs = [int(e) for e in re.findall(r"^epoch=(\d+) ", log, re.M)]
    assert resumed_epochs and resumed_epochs[-1] == EPOCHS and resumed_epochs == sorted(set(resumed_epochs))
    for epoch in resumed_epochs:
        rows = {int(rank): int(n) for rank, n in
                re.findall(rf"process (\d)/{PROCESSES}: epoch {epoch} trained on (\d+) rows", log)}
        assert rows == {rank: TRAIN_ROWS // PROCESSES for rank in range(PROCESSES)}, (epoch, log[-3000:])


def test_matches_single_process_training(runs, data):
    (single_dir, _), (ddp_dir, _) = runs["single"], runs["ddp"]
    summaries = [json.loads((d / "model" / "training_summary.json").read_text()) for d in (single_dir, ddp_dir)]
    assert [s["processes"] for s in summaries] == [1, PROCESSES]
    assert summaries[0]["steps"] == summaries[1]["steps"] == EPOCHS * TRAIN_ROWS // BATCH  # the same optimizer steps
    assert abs(summaries[0]["validation"]["f1_macro"] - summaries[1]["validation"]["f1_macro"]) <= 0.01
    single, ddp = (validation_probabilities(d / "output" / "model", data["validation"]) for d in (single_dir, ddp_dir))
    assert np.abs(single - ddp).max() < 1e-3  # gradients averaged over the halves = the whole batch's gradient


def test_process_zero_alone_writes_one_model(runs):
    ddp_dir, log = runs["ddp"]
    assert sorted(p.name for p in ddp_dir.iterdir()) == ["checkpoints", "model", "output"]
    assert sorted(p.name for p in (ddp_dir / "output").iterdir()) == ["history.json", "model"]
    assert sorted(p.name for p in (ddp_dir / "checkpoints").iterdir()) == ["checkpoint.pt"]
    assert len(re.findall(r"^serving artifact \(torch\)", log, re.M)) == 1
    assert len(json.loads((ddp_dir / "output" / "history.json").read_text())) == EPOCHS
