"""The monitoring job on crafted capture + ground truth: its metrics equal mlcore.metrics on the
same data, quality drops raise violations, the CLI and the processing entry write the report."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from mlcore.metrics import multilabel_report
from monitoring.config import MonitorConfig
from monitoring.job import run_monitoring
from monitoring.synthetic import capture_line, capture_path, write_lines

LABELS = ["joy", "anger", "fear", "love"]
RATES = np.array([0.35, 0.2, 0.15, 0.25])
THRESHOLDS = np.array([0.5, 0.4, 0.5, 0.45], dtype=np.float32)
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
CHROMIUM = Path("/usr/bin/chromium")


def labelled_sample(n: int, rng: np.random.Generator, noise: float = 1.2):
    """Labels at RATES and probabilities that carry signal about them (a decent model)."""
    y = (rng.random((n, len(LABELS))) < RATES).astype(np.int8)
    logits = (y * 2 - 1) * 1.5 + rng.normal(scale=noise, size=y.shape)
    return y, (1 / (1 + np.exp(-logits))).round(6).astype(np.float32)


def write_baseline(directory: Path, rng: np.random.Generator) -> dict:
    """evaluation.json computed by mlcore.metrics on a held-out sample, as steps/evaluate.py writes it."""
    y, p = labelled_sample(600, rng)
    report = multilabel_report(y, p, THRESHOLDS, LABELS, bootstrap=20, seed=0)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "evaluation.json").write_text(json.dumps(report))
    return report


def write_traffic(root: Path, y: np.ndarray, p: np.ndarray, start: datetime, batch: int = 4, spacing_s: float = 30,
                  prefix: str = "req"):
    """Capture files of batched requests; returns {inference id: row index}."""
    ids, lines = {}, []
    for r, i in enumerate(range(0, len(y), batch)):
        rows = list(range(i, min(i + batch, len(y))))
        when = start + timedelta(seconds=spacing_s * r)
        texts = [f"text number {k} " + "word " * (k % 7) for k in rows]
        lines.append((when, capture_line(texts, p[rows], LABELS, THRESHOLDS, when, inference_id=f"{prefix}{r}")))
        ids.update({f"{prefix}{r}:{j}": k for j, k in enumerate(rows)})
    for when, line in lines:
        write_lines(capture_path(root, "bert-ep", when), [line])
    return ids


def write_ground_truth(path: Path, y: np.ndarray, ids: dict, skip: set[str] = frozenset()) -> None:
    with open(path, "w") as fh:
        for inference_id, k in ids.items():
            if inference_id in skip:
                continue
            fh.write(json.dumps({"inference_id": inference_id, "labels": [l for l, v in zip(LABELS, y[k]) if v]}) + "\n")


@pytest.fixture
def scenario(tmp_path):
    rng = np.random.default_rng(7)
    write_baseline(tmp_path / "baseline", rng)
    y, p = labelled_sample(480, rng)  # 120 requests of 4, 30 s apart = 1 h
    ids = write_traffic(tmp_path / "capture", y, p, T0)
    skip = set(list(ids)[::10])  # every tenth text never gets a label
    gt_file = tmp_path / "labels.jsonl"
    write_ground_truth(gt_file, y, ids, skip)
    return {"root": tmp_path, "y": y, "p": p, "ids": ids, "skip": skip, "gt_file": gt_file}


def _ingest(scenario, received: datetime) -> Path:
    from monitoring.ground_truth import parse_ground_truth, store_ground_truth

    records, _ = parse_ground_truth(scenario["gt_file"], label_names=LABELS)
    store = scenario["root"] / "gt-store"
    store_ground_truth(records, store, received)
    return store


def test_monitor_metrics_equal_multilabel_report_overall_and_per_window(scenario):
    root, y, p, ids = scenario["root"], scenario["y"], scenario["p"], scenario["ids"]
    store = _ingest(scenario, T0 + timedelta(hours=2))
    config = MonitorConfig(bootstrap=20)
    doc = run_monitoring(root / "capture", store, root / "baseline", root / "out", window=timedelta(minutes=30), config=config)

    labelled = [k for i, k in ids.items() if i not in scenario["skip"]]
    assert doc["overall"]["labelled"] == len(labelled) == 432
    assert doc["ground_truth"]["merge"]["counts"]["missing_ground_truth"] == 48
    offline = multilabel_report(y[labelled], p[labelled], THRESHOLDS, LABELS, bootstrap=20, seed=0)
    got = doc["overall"]["quality"]["report"]["multilabel_classification_metrics"]
    want = offline["multilabel_classification_metrics"]
    for name in ("f1_macro", "f1_micro", "roc_auc_macro", "precision_macro", "recall_macro", "hamming_loss"):
        assert got[name]["value"] == pytest.approx(want[name]["value"], abs=1e-6), name
    assert got["per_label"]["anger"]["tp"] == want["per_label"]["anger"]["tp"]

    assert [w["start"] for w in doc["windows"]] == ["2024-05-01T10:00:00Z", "2024-05-01T10:30:00Z"]
    for w, lo, hi in zip(doc["windows"], (0, 240), (240, 480)):
        rows = [k for i, k in ids.items() if i not in scenario["skip"] and lo <= k < hi]
        expected = multilabel_report(y[rows], p[rows], THRESHOLDS, LABELS, bootstrap=20, seed=0)
        assert w["labelled"] == len(rows)
        assert w["quality"]["report"]["multilabel_classification_metrics"]["f1_macro"]["value"] == pytest.approx(
            expected["multilabel_classification_metrics"]["f1_macro"]["value"], abs=1e-6)
    assert doc["capture"]["served_predictions_differ"] == 0
    assert [v for v in doc["violations"] if v["constraint_check_type"] == "baseline_drop_check"] == []


def test_quality_drop_is_a_violation_only_in_the_bad_window(tmp_path):
    rng = np.random.default_rng(11)
    write_baseline(tmp_path / "baseline", rng)
    y_good, p_good = labelled_sample(240, rng)
    y_bad, _ = labelled_sample(240, rng)
    p_bad = rng.random(y_bad.shape).round(6).astype(np.float32)  # the model stopped knowing anything
    ids_good = write_traffic(tmp_path / "capture", y_good, p_good, T0)
    ids_bad = write_traffic(tmp_path / "capture", y_bad, p_bad, T0 + timedelta(hours=1), prefix="later")
    write_ground_truth(tmp_path / "good.jsonl", y_good, ids_good)
    write_ground_truth(tmp_path / "bad.jsonl", y_bad, ids_bad)
    from monitoring.ground_truth import parse_ground_truth, store_ground_truth

    for name in ("good.jsonl", "bad.jsonl"):
        store_ground_truth(parse_ground_truth(tmp_path / name)[0], tmp_path / "gt", T0 + timedelta(hours=3))
    doc = run_monitoring(tmp_path / "capture", tmp_path / "gt", tmp_path / "baseline", tmp_path / "out",
                         window=timedelta(hours=1), config=MonitorConfig(bootstrap=0))
    first, second = doc["windows"]
    assert first["quality"]["status"] == "ok" and second["quality"]["status"] == "violation"
    violated = {(v["window"].split("/")[0], v["metric_name"]) for v in doc["violations"]
                if v["constraint_check_type"] == "baseline_drop_check"}
    assert ("2024-05-01T11:00:00Z", "f1_macro") in violated and ("2024-05-01T11:00:00Z", "roc_auc_macro") in violated
    assert not any(w == "2024-05-01T10:00:00Z" for w, _ in violated)


def _png_ok(path: Path) -> None:
    import matplotlib.image as mpimg

    image = mpimg.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100, path
    assert float(np.std(image[..., :3])) > 0.01, f"{path} is a blank image"


def test_cli_ground_truth_report_and_browser(scenario, tmp_path, monkeypatch):
    from mlops.cli import main

    root = scenario["root"]
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    broken = root / "more.csv"
    # req0:0 and req2:2 are among the texts without labels in the first file
    broken.write_text("inference_id,labels\nreq0:0,joy\nreq0:0,anger\nreq2:2,nonsense\n")
    for path in (scenario["gt_file"], broken):
        assert main(["monitor", "ground-truth", str(path), "--baseline-dir", str(root / "baseline"),
                     "--received-at", "2024-05-01T12:10:00Z"]) == 0
    empty = root / "bad.jsonl"
    empty.write_text("{oops\n")
    assert main(["monitor", "ground-truth", str(empty), "--no-label-check"]) == 2
    out = tmp_path / "report"
    rc = main(["monitor", "report", "--capture-dir", str(root / "capture"), "--baseline-dir", str(root / "baseline"),
               "--output-dir", str(out), "--window", "30m", "--bootstrap", "10", "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    counts = report["data"]["ground_truth"]["merge"]["counts"]
    assert counts["duplicate_conflicting_ids"] == 1 and counts["excluded_unknown_label"] == 1
    assert counts["missing_ground_truth"] == 48 - 2 and report["overall"]["labelled"] == 432
    for key in ("confusion_matrices", "roc_curves", "capture_throughput", "quality_over_time", "predicted_rates"):
        assert key in report["images"], key
        _png_ok(out / report["images"][key])
    html = (out / "report.html").read_text()
    assert "Model monitoring report" in html and "confusion_matrices.png" in html
    assert main(["monitor", "run", "--capture-dir", str(root / "nowhere"), "--baseline-dir", str(root / "baseline")]) == 2
    assert main(["monitor", "run", "--capture-dir", str(root / "capture"), "--baseline-dir", str(root / "baseline"),
                 "--since", "2024-05-02T00:00:00Z", "--until", "2024-05-01T00:00:00Z"]) == 2

    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install it with `apt-get install chromium` to check the report renders")
    shot = tmp_path / "shot.png"
    proc = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1200,2400", (out / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _png_ok(shot)


def test_processing_entry_script_writes_results_report_and_emf(scenario):
    root = scenario["root"]
    store = _ingest(scenario, T0 + timedelta(hours=2))
    out = root / "processing-output"
    cmd = [sys.executable, "-m", "monitoring.monitor_job", "--capture-dir", str(root / "capture"),
           "--ground-truth-dir", str(store), "--baseline-dir", str(root / "baseline"), "--output-dir", str(out),
           "--since", "2024-05-01T10:00:00Z", "--until", "2024-05-01T11:00:00Z", "--endpoint-name", "bert-ep",
           "--bootstrap", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["texts"] == 480 and summary["labelled"] == 432
    for name in ("monitoring.json", "constraint_violations.json", "merged.jsonl", "report.html", "report.json"):
        assert (out / name).is_file(), name
    emf = [json.loads(l) for l in (out / "metrics.emf.jsonl").read_text().splitlines()]
    assert sum(e["Throughput"] * 60 for e in emf) == pytest.approx(120, abs=0.01)  # 120 requests, one-minute buckets
    assert all(e["EndpointName"] == "bert-ep" for e in emf)
    bad = subprocess.run(cmd[:-4] + ["--window", "soon"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid duration" in bad.stderr
