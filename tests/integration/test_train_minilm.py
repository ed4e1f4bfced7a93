"""The one test on the real shipped all-MiniLM-L6-v2: train.py learns the demo data, packages ONNX."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlcore.datasets import write_split
from mlcore.datasets.demo import generate_demo
from mlcore.metrics import quick_scores
from mlcore.predictor import load_predictor
from mlcore.splitting import stratified_split
from tests.helpers.paths import REPO_ROOT


@pytest.mark.slow
def test_minilm_fine_tunes_on_demo_data_and_serves_with_onnx(tmp_path):
    data = generate_demo(n_rows=1400, seed=5)
    parts = stratified_split(data.matrix(), 0.15, 0.15, seed=0)
    for name, rows in parts.items():
        write_split(data.subset(rows), tmp_path / name)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(tmp_path / "train"), "SM_CHANNEL_VALIDATION": str(tmp_path / "validation"),
           "SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "out")}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "steps" / "train.py"), "--epochs", "2", "--max-length", "48",
                           "--progress", "false"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    serving = json.loads((tmp_path / "model" / "serving.json").read_text())  # the serving artifact (SM_MODEL_DIR)
    assert serving["backend"] in ("onnx", "onnx-int8") and "int8_f1_drop" in serving

    test = data.subset(parts["test"])
    full_dir = tmp_path / "out" / "model"  # the complete model: torch weights and every ONNX export
    reference = load_predictor(full_dir, backend="torch")
    probs = reference.predict_proba(test.texts)
    scores = quick_scores(test.matrix(), probs, reference.thresholds)
    assert scores["f1_macro"] > 0.6 and scores["roc_auc_macro"] > 0.85, scores  # random: ~0.2 / 0.5

    onnx = load_predictor(full_dir, backend="onnx").predict_proba(test.texts)  # mixed lengths, padded batches
    assert np.abs(onnx - probs).max() < 1e-3
