"""Drift without labels: a shifted sample is flagged, an unshifted one from the same source is not."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from monitoring import drift
from monitoring.baseline import length_reference, write_score_baseline
from monitoring.config import MonitorConfig
from monitoring.job import run_monitoring
from monitoring.synthetic import beta_scores, capture_line, capture_path, shifted_scores, write_lines

LABELS = ["joy", "anger", "fear", "love"]
RATES = [0.30, 0.10, 0.05, 0.20]
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
CFG = MonitorConfig()


def test_psi_is_zero_for_identical_and_grows_with_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=4000)
    edges = drift.quantile_edges(ref, 10)
    same = drift.psi(drift.binned(ref, edges), drift.binned(ref, edges))
    small = drift.psi(drift.binned(ref, edges), drift.binned(ref + 0.1, edges))
    large = drift.psi(drift.binned(ref, edges), drift.binned(ref + 1.0, edges))
    assert same == pytest.approx(0.0, abs=1e-12)
    assert 0 < small < 0.1 < CFG.psi_threshold < large


def test_score_drift_flags_only_the_shifted_labels():
    rng = np.random.default_rng(2)
    reference = beta_scores(2000, RATES, rng)
    unshifted = beta_scores(300, RATES, rng)
    shifted = shifted_scores(beta_scores(300, RATES, rng), 2.0, [1, 3])
    calm = drift.score_drift(reference, unshifted, LABELS, CFG)
    alarm = drift.score_drift(reference, shifted, LABELS, CFG)
    assert calm["status"] == "ok" and calm["drifted_labels"] == []
    assert alarm["status"] == "drift" and alarm["drifted_labels"] == ["anger", "love"]
    assert alarm["per_label"]["anger"]["psi"] > CFG.psi_threshold and alarm["per_label"]["anger"]["ks_pvalue"] < 1e-6


def test_rate_drift_uses_effect_size_and_significance():
    rng = np.random.default_rng(3)
    expected = dict(zip(LABELS, RATES))
    same = (rng.random((400, 4)) < RATES).astype(np.int8)
    moved = (rng.random((400, 4)) < [0.30, 0.45, 0.05, 0.20]).astype(np.int8)
    assert drift.rate_drift(same, expected, LABELS, CFG)["drifted_labels"] == []
    result = drift.rate_drift(moved, expected, LABELS, CFG)
    assert result["drifted_labels"] == ["anger"]
    assert result["per_label"]["anger"]["observed"] == pytest.approx(moved[:, 1].mean())


def test_length_drift_against_training_statistics():
    rng = np.random.default_rng(4)
    train = rng.gamma(4.0, 15.0, size=5000)
    stats = {"splits": {"train": {"text_length": {"chars": {
        "mean": float(train.mean()), "p50": float(np.percentile(train, 50)), "p95": float(np.percentile(train, 95)),
        "max": float(train.max())}}}}}
    reference = length_reference(stats)
    assert reference["p50"] == pytest.approx(np.percentile(train, 50))
    assert drift.length_drift(rng.gamma(4.0, 15.0, size=300), reference, CFG)["status"] == "ok"
    longer = drift.length_drift(rng.gamma(4.0, 15.0, size=300) * 2.5, reference, CFG)
    assert longer["status"] == "drift" and longer["observed"]["share_over_train_p95"] > 0.3


def _baseline_dir(tmp_path, reference: np.ndarray, lengths: np.ndarray):
    """A baseline as the pipeline would leave it, built from the reference sample (no labels needed here)."""
    d = tmp_path / "baseline"
    d.mkdir()
    thresholds = [0.5] * len(LABELS)
    predicted = reference >= 0.5
    n = len(reference)
    per_label = {l: {"tp": int(predicted[:, j].sum()), "fp": 0, "fn": 0, "tn": int(n - predicted[:, j].sum()),
                     "threshold": thresholds[j]} for j, l in enumerate(LABELS)}
    (d / "evaluation.json").write_text(json.dumps({
        "multilabel_classification_metrics": {"f1_macro": {"value": 0.5, "standard_deviation": 0.01},
                                              "roc_auc_macro": {"value": 0.8, "standard_deviation": 0.01},
                                              "per_label": per_label},
        "n_samples": n, "labels": LABELS}))
    (d / "statistics.json").write_text(json.dumps({"text_length": {"train": {"chars": {
        "mean": float(lengths.mean()), "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)), "max": float(lengths.max())}}}}))
    write_score_baseline(d, reference, LABELS, "test")
    return d


def _write_traffic(root, scores: np.ndarray, lengths: np.ndarray, start: datetime):
    lines = [capture_line("x" * int(length), s[None], LABELS, 0.5, start + timedelta(seconds=10 * i), inference_id=f"q{i}")
             for i, (s, length) in enumerate(zip(scores, lengths))]
    write_lines(capture_path(root, "ep", start), lines)


def test_monitoring_job_flags_shifted_traffic_and_not_unshifted(tmp_path):
    rng = np.random.default_rng(5)
    reference = beta_scores(2000, RATES, rng)
    ref_lengths = np.maximum(1, rng.gamma(4.0, 15.0, size=2000))
    baseline = _baseline_dir(tmp_path, reference, ref_lengths)

    _write_traffic(tmp_path / "calm", beta_scores(200, RATES, rng), rng.gamma(4.0, 15.0, size=200) + 1, T0)
    calm = run_monitoring(tmp_path / "calm", None, baseline, tmp_path / "out-calm")
    assert calm["overall"]["quality"]["status"] == "insufficient_labels"
    assert {k: v["status"] for k, v in calm["overall"]["drift"].items()} == {
        "predicted_rates": "ok", "scores": "ok", "input_length": "ok"}
    assert calm["violations"] == [] and calm["status"] == "ok"

    shifted = shifted_scores(beta_scores(200, RATES, rng), 2.5, [2])
    _write_traffic(tmp_path / "shift", shifted, rng.gamma(4.0, 15.0, size=200) * 3 + 1, T0)
    alarm = run_monitoring(tmp_path / "shift", None, baseline, tmp_path / "out-shift", window=timedelta(minutes=10))
    d = alarm["overall"]["drift"]
    assert d["scores"]["drifted_labels"] == ["fear"]
    assert d["predicted_rates"]["drifted_labels"] == ["fear"]
    assert d["input_length"]["status"] == "drift"
    kinds = {(v["window"], v["constraint_check_type"]) for v in alarm["violations"]}
    assert {("overall", "scores_drift_check"), ("overall", "predicted_rates_drift_check"),
            ("overall", "input_length_drift_check")} <= kinds
    assert len(alarm["windows"]) == 4  # 200 texts 10 s apart = 33 min in 10-min windows
    assert sum(w["texts"] for w in alarm["windows"]) == 200
    assert json.loads((tmp_path / "out-shift" / "constraint_violations.json").read_text())["violations"] == alarm["violations"]


def test_cli_score_baseline_from_a_reference_window_then_drift(tmp_path, monkeypatch, capsys):
    from mlops.cli import main

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(6)
    baseline = _baseline_dir(tmp_path, beta_scores(500, RATES, rng), rng.gamma(4.0, 15.0, size=500) + 1)
    (baseline / "score_baseline.npz").unlink()
    lengths = rng.gamma(4.0, 15.0, size=600) + 1
    _write_traffic(tmp_path / "cap", beta_scores(300, RATES, rng), lengths[:300], T0)
    shifted = shifted_scores(beta_scores(300, RATES, rng), -3.0, [0])
    later = T0 + timedelta(hours=2)
    lines = [capture_line("y" * int(n), s[None], LABELS, 0.5, later + timedelta(seconds=i), inference_id=f"s{i}")
             for i, (s, n) in enumerate(zip(shifted, lengths[300:]))]
    write_lines(capture_path(tmp_path / "cap", "ep", later), lines)
    common = ["--capture-dir", str(tmp_path / "cap"), "--baseline-dir", str(baseline), "--quiet"]
    assert main(["monitor", "run", *common, "--since", "2024-05-01T12:00:00Z"]) == 0  # no score baseline yet
    assert "scores skipped" in capsys.readouterr().out
    assert main(["monitor", "baseline", *common, "--until", "2024-05-01T11:00:00Z"]) == 0
    assert "score baseline of 300 text(s)" in capsys.readouterr().out
    out = tmp_path / "out"
    args = ["monitor", "run", *common, "--output-dir", str(out), "--since", "2024-05-01T12:00:00Z", "--fail-on-violation"]
    assert main(args) == 1
    doc = json.loads((out / "monitoring.json").read_text())
    assert doc["overall"]["drift"]["scores"]["drifted_labels"] == ["joy"]
    assert main(["monitor", "run", *common, "--until", "2024-05-01T11:00:00Z", "--fail-on-violation",
                 "--output-dir", str(tmp_path / "out2")]) == 0  # the reference window itself is calm
    assert main(["monitor", "run", *common, "--psi-threshold", "-1"]) == 2


def test_baseline_reads_preprocess_statistics_as_written_by_mlcore_datasets():
    from mlcore.datasets import LabeledTexts, statistics
    from monitoring.baseline import train_label_prevalence

    rng = np.random.default_rng(8)
    def split(n, long=False):
        texts = ["w" * int(k) for k in rng.gamma(4.0, 15.0 * (3 if long else 1), size=n) + 1]
        labels = [[l for l, r in zip(LABELS, RATES) if rng.random() < r] for _ in range(n)]
        return LabeledTexts(texts, labels, LABELS)
    train = split(1000)
    stats = json.loads(json.dumps(statistics({"train": train, "validation": split(50, long=True), "test": split(50, long=True)})))
    reference = length_reference(stats)
    lengths = np.array([len(t) for t in train.texts])
    assert reference["p50"] == pytest.approx(np.percentile(lengths, 50))  # the train split, not the long ones
    prevalence = train_label_prevalence(stats, LABELS)
    assert prevalence == pytest.approx({l: train.matrix()[:, j].mean() for j, l in enumerate(LABELS)})
