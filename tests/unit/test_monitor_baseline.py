"""The local baseline: the latest Approved registry version's evaluation + its run's statistics."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from mlops.local_baseline import resolve_local_baseline
from mlops.settings import Settings
from monitoring.baseline import BaselineError, load_baseline
from pipelines.registry import LocalModelRegistry
from pipelines.spec import PREPROCESS

LABELS = ["a", "b"]


def _evaluation(f1: float) -> dict:
    per_label = {l: {"tp": 3, "fp": 1, "fn": 1, "tn": 5, "threshold": t} for l, t in zip(LABELS, (0.4, 0.6))}
    return {"multilabel_classification_metrics": {"f1_macro": {"value": f1}, "roc_auc_macro": {"value": 0.9},
                                                  "per_label": per_label}, "n_samples": 10, "labels": LABELS}


def test_latest_approved_version_and_its_statistics(tmp_path):
    settings = Settings(home=tmp_path)
    registry = LocalModelRegistry(settings.registry_dir)
    artifact = tmp_path / "model.tar.gz"
    with tarfile.open(artifact, "w:gz"):
        pass
    with pytest.raises(BaselineError, match="no Approved version"):
        registry.create_group(settings.model_package_group)
        resolve_local_baseline(settings, tmp_path / "bl")
    stats = settings.runs_dir / "run-1" / PREPROCESS / "output" / "statistics" / "statistics.json"
    stats.parent.mkdir(parents=True)
    stats.write_text(json.dumps({"splits": {"train": {"rows": 4, "length": {"chars": {"p50": 10, "p95": 30}}}}}))
    registry.register(settings.model_package_group, artifact, _evaluation(0.7), "Approved", source_run_id="run-1")
    registry.register(settings.model_package_group, artifact, _evaluation(0.2), "Rejected", source_run_id="run-2")
    directory = resolve_local_baseline(settings, tmp_path / "bl")
    assert directory == tmp_path / "bl" / "v1"
    baseline = load_baseline(directory)
    assert baseline.metric("f1_macro") == 0.7 and baseline.label_names == LABELS
    np.testing.assert_allclose(baseline.thresholds, [0.4, 0.6])
    assert baseline.statistics["splits"]["train"]["rows"] == 4
    assert baseline.expected_predicted_rates()[0] == {"a": 0.4, "b": 0.4}
    assert load_baseline(resolve_local_baseline(settings, tmp_path / "bl", version=2)).metric("f1_macro") == 0.2


def test_unusable_baselines_say_which_file(tmp_path):
    with pytest.raises(BaselineError, match="evaluation.json not found"):
        load_baseline(tmp_path)
    (tmp_path / "evaluation.json").write_text("{")
    with pytest.raises(BaselineError, match=r"evaluation.json:1: not valid JSON"):
        load_baseline(tmp_path)
    doc = _evaluation(0.5)
    del doc["multilabel_classification_metrics"]["per_label"]["b"]["threshold"]
    (tmp_path / "evaluation.json").write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="per_label thresholds missing"):
        load_baseline(tmp_path)
