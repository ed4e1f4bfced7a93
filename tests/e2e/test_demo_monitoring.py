"""The demo's monitoring half on a tiny model, through the real local stack: test traffic while the server's
/metrics are scraped, a score baseline, then the report. Its operations section has latency, throughput, CPU
and memory, score drift is judged, and one look says whether the model is healthy."""
from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np

from mlcore.metrics import multilabel_report
from mlcore.predictor import ModelInfo, load_predictor
from mlops.cli import main as cli_main
from mlops.commands.demo import SCRAPES, _monitor, send_test_traffic, start_local_stack
from mlops.local_endpoint import LocalEndpoint
from mlops.settings import Settings
from pipelines import spec
from pipelines.registry import LocalModelRegistry
from pipelines.tarball import make_model_tarball
from tests.helpers.data import keyword_rows, write_split_dir


def test_the_demo_report_answers_is_the_model_healthy_with_operations_and_drift(tmp_path, monkeypatch,
                                                                                 packaged_tiny_model):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    settings = Settings.from_env()
    outputs = tmp_path / "PreprocessData" / "output"  # the preprocessing step's splits, as a run leaves them
    test_rows, validation_rows = keyword_rows(60, seed=11), keyword_rows(60, seed=12)
    write_split_dir(outputs / "test", test_rows)
    write_split_dir(outputs / "validation", validation_rows)
    info = ModelInfo.read(packaged_tiny_model)  # the registered evaluation: the model on the test split
    probs = load_predictor(packaged_tiny_model).predict_proba([r["text"] for r in test_rows])
    truth = np.asarray([[int(name in r["labels"]) for name in info.label_names] for r in test_rows])
    evaluation = {**multilabel_report(truth, probs, info.thresholds, info.label_names, bootstrap=0),
                  "labels": info.label_names}
    LocalModelRegistry(settings.registry_dir).register(
        settings.model_package_group, make_model_tarball(packaged_tiny_model, tmp_path / "m.tar.gz"), evaluation)
    assert cli_main(["registry", "approve", "1"]) == 0  # deploys v1 to the local endpoint

    labels_file, metrics_file = settings.home / "gt.jsonl", settings.monitoring_dir / "operational.jsonl"
    metrics_file.parent.mkdir(parents=True)
    urls, stop = start_local_stack(settings)
    try:
        assert send_test_traffic(urls["endpoint"], outputs / "test", labels_file, metrics_file, limit=60) == 60
        assert _monitor(settings, outputs, labels_file) == 0
    finally:
        stop()
        LocalEndpoint(settings.home, spec.ENDPOINT_NAME).stop()

    out = settings.monitoring_dir / "output"
    report = json.loads((out / "report.json").read_text())
    period = report["operational"]["server"]["period"]
    assert period["requests"] >= 60 and period["Errors"] == 0  # every test text went through the scraped server
    assert 0 < period["LatencyP50"] <= period["LatencyP90"] <= period["LatencyP99"]
    assert period["CPUUtilizationMean"] is not None and period["MemoryRSSMax"] > 50  # MB: a model is loaded
    series = report["operational"]["server"]["series"]
    assert len(series) == SCRAPES - 1 and all(r["MemoryRSS"] for r in series)
    assert report["drift"]["scores"]["status"] in ("ok", "drift")  # judged against the validation baseline
    assert report["overall"]["labelled"] == 60
    health = report["health"]
    assert {health[k]["status"] for k in ("quality", "drift", "operations")} <= {"ok", "attention"}
    assert "p99" in health["operations"]["detail"] and "MB (peak)" in health["operations"]["detail"]
    for chart in ("latency_over_time", "latency_histogram", "throughput_over_time", "resources_over_time",
                  "capture_throughput", "score_psi", "confusion_matrices"):
        image = mpimg.imread(out / report["images"][chart])
        assert image.shape[0] > 200 and float(np.std(image[..., :3])) > 0.02, chart
    html = (out / "report.html").read_text()
    assert html.index("Is the model healthy?") < html.index("<h2>Violations</h2>")  # the verdict comes first
    assert "No server metrics scraped" not in html and "p99 ms" in html
