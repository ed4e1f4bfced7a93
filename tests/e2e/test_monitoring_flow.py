"""End to end: serve a tiny model with data capture on, send texts, ingest their labels, run the
monitor; its metrics equal mlcore.metrics.multilabel_report on the same texts (within rounding)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

import numpy as np
import pytest

from tests.helpers.models import save_tiny_bert
from tests.helpers.paths import REPO_ROOT

PORT = 18520
LABELS = ["a", "b", "c"]


def _flag(help_text: str, *candidates: str) -> str:
    for flag in candidates:
        if re.search(rf"{re.escape(flag)}\b", help_text):
            return flag
    pytest.fail(f"the model server takes none of {candidates}; update this test to its flags:\n{help_text}")


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[dict | list, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read()), dict(response.headers)


def _wait(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"model server exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"model server did not answer {url} within {seconds} s")


def _decisive_tiny_model(dest):
    """The tiny random classifier with a scaled-up head: probabilities far from the 0.5 thresholds, so
    the 6-decimal rounding of the served JSON cannot flip a decision."""
    import torch
    from transformers import AutoModelForSequenceClassification

    save_tiny_bert(dest, labels=LABELS, seed=3)
    model = AutoModelForSequenceClassification.from_pretrained(dest)
    with torch.no_grad():
        model.classifier.weight.mul_(300.0)
    model.save_pretrained(dest)
    return dest


@pytest.mark.slow
def test_serve_capture_label_monitor(tmp_path, monkeypatch):
    from mlcore.metrics import multilabel_report
    from mlcore.predictor import ModelInfo, load_predictor
    from mlops.cli import main
    from monitoring.capture import read_capture
    from monitoring.operational import load_snapshots, period_latency, sample

    model_dir = _decisive_tiny_model(tmp_path / "model")
    capture_dir = tmp_path / "capture"
    help_text = subprocess.run([sys.executable, "-m", "inference.server", "--help"], capture_output=True, text=True,
                               cwd=REPO_ROOT, timeout=120).stdout
    cmd = [sys.executable, "-m", "inference.server", _flag(help_text, "--model-dir", "--model-path", "--model"), str(model_dir),
           _flag(help_text, "--port"), str(PORT), _flag(help_text, "--capture-dir", "--data-capture-dir"), str(capture_dir)]
    if "--host" in help_text:
        cmd += ["--host", "127.0.0.1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLOPS_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{PORT}"
    rng = np.random.default_rng(0)
    words = ["happy", "angry", "cat", "storm", "coffee", "late", "train", "music", "rain", "win", "lose", "hello"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 9)))) + f" #{i}" for i in range(40)]
    try:
        _wait(f"{base}/ping", proc)
        ops = tmp_path / "operational.jsonl"

        def traffic(_seconds):
            _post(f"{base}/invocations", {"inputs": texts[:32]}, {"X-Amzn-SageMaker-Inference-Id": "batch-1"})
            for i, text in enumerate(texts[32:]):
                _post(f"{base}/invocations", {"inputs": text}, {"X-Amzn-SageMaker-Inference-Id": f"single-{i}"})
        sample(f"{base}/metrics", ops, 0.01, 2, sleep=traffic)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    captured, stats, _ = read_capture(capture_dir)
    assert stats.texts == 40 and not stats.malformed, stats.to_dict()
    id_of = {t.text: t.inference_id for t in captured}
    batch_ids = sorted(i for i in id_of.values() if i.rsplit(":", 1)[-1].isdigit() and ":" in i)
    assert len(batch_ids) == 32, f"batch items need per-text ids <inferenceId>:<index>, got {sorted(id_of.values())[:5]}"

    # True labels, keyed by the ids the capture holds; offline predictions of the same texts.
    y_true = (rng.random((len(texts), len(LABELS))) < 0.4).astype(np.int8)
    gt_file = tmp_path / "labels.jsonl"
    gt_file.write_text("".join(json.dumps({"inference_id": id_of[t], "labels": [l for l, v in zip(LABELS, row) if v]}) + "\n"
                               for t, row in zip(texts, y_true)))
    info = ModelInfo.read(model_dir)
    offline = load_predictor(model_dir, backend="torch").predict_proba(texts)
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "evaluation.json").write_text(json.dumps(multilabel_report(y_true, offline, info.thresholds, LABELS, bootstrap=0)))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    assert main(["monitor", "ground-truth", str(gt_file), "--baseline-dir", str(baseline)]) == 0
    out = tmp_path / "out"
    assert main(["monitor", "report", "--capture-dir", str(capture_dir), "--baseline-dir", str(baseline), "--output-dir",
                 str(out), "--operational", str(ops), "--min-labelled-samples", "10", "--bootstrap", "0", "--quiet"]) == 0

    doc = json.loads((out / "monitoring.json").read_text())
    assert doc["overall"]["labelled"] == 40 and doc["capture"]["served_predictions_differ"] == 0
    got = doc["overall"]["quality"]["report"]["multilabel_classification_metrics"]
    want = multilabel_report(y_true, offline, info.thresholds, LABELS, bootstrap=0)["multilabel_classification_metrics"]
    served = np.asarray([[t.probabilities[l] for l in LABELS] for t in sorted(captured, key=lambda t: texts.index(t.text))])
    assert np.abs(served - offline).max() < 1e-4  # the server returns what the model computes offline
    assert np.abs(offline - info.thresholds).min() > 1e-3  # so no decision sits within rounding of a threshold
    for name in ("f1_macro", "f1_micro", "precision_macro", "recall_macro", "hamming_loss", "subset_accuracy"):
        assert got[name]["value"] == pytest.approx(want[name]["value"], abs=1e-6), name
    # A random tiny BERT scores all texts within ~1e-4 of each other, so ranking metrics move with the
    # served rounding: exact against the served probabilities, close against the offline ones.
    on_served = multilabel_report(y_true, served, info.thresholds, LABELS, bootstrap=0)["multilabel_classification_metrics"]
    for name in ("roc_auc_macro", "roc_auc_micro"):
        assert got[name]["value"] == pytest.approx(on_served[name]["value"], abs=1e-6), name
        assert got[name]["value"] == pytest.approx(want[name]["value"], abs=0.02), name
    report = json.loads((out / "report.json").read_text())
    period = period_latency(load_snapshots(ops))
    assert period["requests"] >= 9 and period["LatencyP50"] is not None
    assert "latency_histogram" in report["images"]
    assert datetime.fromisoformat(doc["overall"]["start"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
