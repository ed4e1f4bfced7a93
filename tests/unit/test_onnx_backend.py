"""ONNX export: probabilities match PyTorch on padded mixed-length batches; int8 only where F1 holds."""
from __future__ import annotations

import collections
import json
import logging
import shutil

import numpy as np
import pytest

from mlcore import onnx_backend
from mlcore.predictor import load_predictor

TEXTS = ["hi", "a somewhat longer sentence about an apple and a banana in the kitchen",
         "cherry", "word " * 300, "mid length text with a few more tokens"]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    model = tmp_path_factory.mktemp("onnx") / "model"
    shutil.copytree(tiny_model_dir, model)
    validation = (TEXTS * 4, np.tile(np.eye(5, 3, dtype=np.float32), (4, 1)))
    report = onnx_backend.export_onnx(model, quantize=True, validation=validation)
    return model, report


def test_fp32_onnx_matches_torch_on_padded_batches_of_mixed_lengths(exported):
    model, _ = exported
    reference = load_predictor(model, backend="torch").predict_proba(TEXTS, batch_size=5)
    onnx = load_predictor(model, backend="onnx")
    assert isinstance(onnx, onnx_backend.OnnxPredictor)
    for batch_size in (1, 2, 5):  # different padding in every batch
        np.testing.assert_allclose(onnx.predict_proba(TEXTS, batch_size=batch_size), reference, atol=1e-4)


def test_int8_model_is_written_and_close(exported):
    model, _ = exported
    assert (model / onnx_backend.INT8_FILE).stat().st_size < (model / onnx_backend.FP32_FILE).stat().st_size
    int8 = load_predictor(model, backend="onnx-int8").predict_proba(TEXTS)
    fp32 = load_predictor(model, backend="onnx").predict_proba(TEXTS)
    assert int8.shape == fp32.shape and np.abs(int8 - fp32).max() < 0.05


def test_serving_json_records_the_f1_based_choice(exported):
    model, report = exported
    written = json.loads((model / "serving.json").read_text())
    assert written == report
    assert set(report["f1_macro"]) == {"onnx", "onnx-int8"} and report["validation_rows"] == len(TEXTS) * 4
    drop = report["f1_macro"]["onnx"] - report["f1_macro"]["onnx-int8"]
    assert report["backend"] == ("onnx-int8" if drop <= onnx_backend.MAX_F1_DROP else "onnx")
    assert type(load_predictor(model)).__name__ == "OnnxPredictor"  # auto follows serving.json


def test_int8_is_rejected_when_it_loses_f1(tiny_model_dir, tmp_path, monkeypatch, caplog):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    monkeypatch.setattr(onnx_backend, "MAX_F1_DROP", -1.0)  # any int8 result now counts as a loss
    with caplog.at_level(logging.INFO, logger=onnx_backend.__name__):
        report = onnx_backend.export_onnx(model, validation=(TEXTS, np.eye(5, 3)))
    assert report["backend"] == "onnx" and any("serving fp32 ONNX" in m for m in caplog.messages)


def test_without_validation_fp32_is_served(tiny_model_dir, tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    report = onnx_backend.export_onnx(model, quantize=False)
    assert report["backend"] == "onnx" and not (model / onnx_backend.INT8_FILE).exists()


def test_bad_inputs_are_precise_errors(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a packaged model directory"):
        onnx_backend.export_onnx(tmp_path)
    with pytest.raises(FileNotFoundError, match="ONNX export"):
        onnx_backend.OnnxPredictor(tiny_model_dir)
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    with pytest.raises(ValueError, match="does not match 5 texts x 3 labels"):
        onnx_backend.export_onnx(model, validation=(TEXTS, np.zeros((5, 2))))


def test_session_uses_the_cores_available(exported):
    model, _ = exported
    predictor = onnx_backend.OnnxPredictor(model)
    assert predictor.session.get_session_options().intra_op_num_threads == onnx_backend.available_cores()


@pytest.mark.parametrize("file", [onnx_backend.FP32_FILE, onnx_backend.INT8_FILE])
def test_residual_adds_run_as_layer_normalization_not_the_slow_fused_kernel(exported, tmp_path, file):
    """ORT's SkipLayerNormalization CPU kernel took 6x the time of Add + LayerNormalization (module docstring):
    neither the exported graph nor the graph the session runs may contain it."""
    import onnx
    import onnxruntime

    model, _ = exported
    written = collections.Counter(n.op_type for n in onnx.load(str(model / file)).graph.node)
    onnx_backend.open_session(onnxruntime, model / file, 1, optimized_path=tmp_path / "run.onnx")
    ran = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "run.onnx")).graph.node)
    layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    for ops in (written, ran):
        assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] == 2 * layers, ops
    assert ran["Attention"] + ran["QAttention"] == layers, ran  # attention stays fused
