"""Fixtures of the reliability suite: a tiny ONNX model (a model server is ready in seconds, as the
packaged artifact serves)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.models import save_tiny_bert


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    """A tiny BERT over labels a, b, c exported to ONNX (fp32): serving.json names the onnx backend."""
    from mlcore.onnx_backend import export_onnx

    model_dir = save_tiny_bert(tmp_path_factory.mktemp("onnx-tiny") / "model", labels=["a", "b", "c"])
    export_onnx(model_dir, quantize=False)
    return model_dir
