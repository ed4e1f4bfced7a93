"""Fixtures of the reliability suite: a tiny ONNX model (a model server is ready in seconds, as the
packaged artifact serves), and a local home whose registry holds several versions of it."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlops.local_endpoint import LocalEndpoint
from mlops.settings import Settings
from pipelines import spec
from pipelines.registry import LocalModelRegistry
from pipelines.tarball import make_model_tarball
from tests.helpers.models import save_tiny_bert
from tests.helpers.stack import kill_model_servers

VERSIONS = 6
EVALUATION = {"multilabel_classification_metrics": {"f1_macro": {"value": 0.9}, "roc_auc_macro": {"value": 0.95}}}


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    """A tiny BERT over labels a, b, c exported to ONNX (fp32): serving.json names the onnx backend."""
    from mlcore.onnx_backend import export_onnx

    model_dir = save_tiny_bert(tmp_path_factory.mktemp("onnx-tiny") / "model", labels=["a", "b", "c"])
    export_onnx(model_dir, quantize=False)
    return model_dir


@pytest.fixture(scope="session")
def onnx_tarball(onnx_model, tmp_path_factory) -> Path:
    return make_model_tarball(onnx_model, tmp_path_factory.mktemp("onnx-tar") / "model.tar.gz")


@pytest.fixture
def home(tmp_path, monkeypatch, onnx_tarball) -> Settings:
    """MLOPS_HOME with versions 1..VERSIONS registered (PendingManualApproval) and nothing serving; afterwards
    every model server it started is stopped, whatever the test left."""
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_NUM_THREADS", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    settings = Settings.from_env()
    registry = LocalModelRegistry(settings.registry_dir)
    for _ in range(VERSIONS):
        registry.register(settings.model_package_group, onnx_tarball, EVALUATION)
    yield settings
    LocalEndpoint(settings.home, spec.ENDPOINT_NAME).stop()
    kill_model_servers(settings.home)
