"""ONNX Runtime backend: export at packaging time, optimise, quantise only where quality holds.

Served over HTTP on 2 cores, one text per request (benchmarks/bench_server.py, the README's table):
batch-1 p50 4.7 ms for ORT fp32 and 2.4 ms for int8 per-channel versus 12.0 ms for PyTorch. int8 is
chosen only when its validation macro-F1 stays within `MAX_F1_DROP` of fp32; the choice is
written to serving.json.

Residual adds stay `Add` + `LayerNormalization`: ONNX Runtime's fused `SkipLayerNormalization` CPU
kernel (1.32) took 673 us per call where Add + LayerNormalization took 110 us (batch 32 x 22 tokens x
384, profiled on 2 cores), a quarter of the int8 model's time. The graph is written without it and
the session is told not to fuse it back (`UNFUSED`); GELU is left for the session's own `Gelu` fusion
(274 us per call against 680 us for the exported `BiasGelu`).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from mlcore.batching import CALL_COST_TOKENS, TokenEncoder
from mlcore.modeling import available_cores
from mlcore.predictor import SERVING_FILE, ModelInfo, planned_batches

logger = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MAX_F1_DROP = 0.005
# ORT graph fusions left out, in the exported graph (optimizer options) and in the session (its optimizer names)
UNFUSED_EXPORT = {"enable_skip_layer_norm": False, "enable_bias_gelu": False, "enable_gelu": False}
UNFUSED_SESSION = ["SkipLayerNormFusion"]


def _export(model_dir: Path, dest: Path) -> None:
    """torch.onnx.export with a padded example batch (else the padding mask is dropped from the graph)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    example = tokenizer(["a short one", "a somewhat longer example sentence so that the first row is padded"],
                        padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with torch.inference_mode():
        torch.onnx.export(model, tuple(example[n] for n in names), str(dest), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)


def _optimise(path: Path, model_dir: Path, fuse_attention: bool = True) -> None:
    """Fuse attention and the embedding LayerNorm with ORT's transformer optimiser (in place); see UNFUSED_EXPORT.

    `fuse_attention=False` leaves attention as MatMuls (benchmarks/bench_static_int8.py: static QDQ has no Attention).
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    config = json.loads((model_dir / "config.json").read_text())
    options = FusionOptions("bert")
    for name, value in UNFUSED_EXPORT.items():
        setattr(options, name, value)
    options.enable_attention = fuse_attention
    optimised = optimizer.optimize_model(str(path), model_type="bert", num_heads=config["num_attention_heads"],
                                         hidden_size=config["hidden_size"], opt_level=1,
                                         optimization_options=options)
    optimised.save_model_to_file(str(path))


def _quantise(src: Path, dest: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def import_onnxruntime(model_dir: str | Path):
    """onnxruntime, with an error that says which runtime the artifact carries when it cannot be imported."""
    try:
        import onnxruntime
    except ImportError as exc:
        serving = Path(model_dir) / SERVING_FILE
        vendored = json.loads(serving.read_text()).get("vendored") if serving.exists() else None
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        detail = (f"the artifact carries onnxruntime {vendored.get('version')} built for CPython "
                  f"{vendored.get('python')} ({vendored.get('platform')}) and this process runs CPython {running}"
                  if vendored else "the artifact carries no ONNX Runtime and none is installed")
        raise ImportError(f"cannot import onnxruntime ({exc}): {detail}. Package the model with the serving "
                          "image's Python (the training and inference images of pipelines/bertmlc are both "
                          "py312), or serve the torch backend") from exc
    return onnxruntime


def open_session(ort, path: Path, num_threads: int | None = None, optimized_path: Path | None = None):
    """A CPU session over `path`: all of ORT's graph optimisations but UNFUSED_SESSION, `num_threads` (default:
    the cores available) for each operator; `optimized_path` writes the graph the session runs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or available_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=UNFUSED_SESSION)


class OnnxPredictor:
    """Predictor over an ONNX file of the model directory (fp32 or int8)."""

    def __init__(self, model_dir: str | Path, file: str = FP32_FILE, num_threads: int | None = None):
        from transformers import AutoTokenizer

        ort = import_onnxruntime(model_dir)
        self.model_dir = Path(model_dir)
        path = self.model_dir / file
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: package the model with ONNX export (steps/train.py "
                                    "--export-onnx true) or serve with backend torch")
        info = ModelInfo.read(self.model_dir)
        self.label_names, self.thresholds, self.max_length = info.label_names, info.thresholds, info.max_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.encoder, self.call_cost_tokens = TokenEncoder(self.tokenizer, self.max_length), float(CALL_COST_TOKENS)
        self.session = open_session(ort, path, num_threads)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        for idx, batch in planned_batches(self.encoder, texts, batch_size, progress, self.call_cost_tokens):
            out[idx] = 1.0 / (1.0 + np.exp(-self._logits(batch)))
        return out

    def _logits(self, batch: dict) -> np.ndarray:
        """One model call: the logits of a padded batch."""
        return self.session.run(["logits"], {k: v for k, v in batch.items() if k in self.inputs})[0]


def load_onnx_fp32(model_dir: Path, **kwargs) -> OnnxPredictor:
    return OnnxPredictor(model_dir, FP32_FILE, **kwargs)


def load_onnx_int8(model_dir: Path, **kwargs) -> OnnxPredictor:
    return OnnxPredictor(model_dir, INT8_FILE, **kwargs)


def _validation_arrays(validation, label_names: list[str]) -> tuple[list[str], np.ndarray | None]:
    """Texts and 0/1 matrix (model label order) from LabeledTexts or a (texts, matrix) pair."""
    if validation is None:
        return [], None
    if isinstance(validation, tuple):
        texts, y = list(validation[0]), np.asarray(validation[1], dtype=np.float32)
        if y.shape != (len(texts), len(label_names)):
            raise ValueError(f"validation matrix shape {y.shape} does not match {len(texts)} texts x "
                             f"{len(label_names)} labels")
        return texts, y
    return list(validation.texts), validation.with_label_names(label_names).matrix()


def export_onnx(model_dir: str | Path, quantize: bool = True, validation=None) -> dict:
    """Write model.onnx (+ model.int8.onnx) and serving.json; int8 only if its F1 drop <= MAX_F1_DROP."""
    from mlcore.metrics import quick_scores

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists() or not (model_dir / "thresholds.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a packaged model directory (config.json and thresholds.json "
                                "are required)")
    texts, y = _validation_arrays(validation, ModelInfo.read(model_dir).label_names)
    started = time.time()
    fp32 = model_dir / FP32_FILE
    _export(model_dir, fp32)
    try:
        _optimise(fp32, model_dir)
    except Exception as exc:  # an unoptimised graph still serves correctly, only slower
        logger.warning("ORT transformer optimisation skipped (%s: %s)", exc.__class__.__name__, exc)
    report: dict = {"backend": "onnx", "max_f1_drop": MAX_F1_DROP}
    if quantize:
        _quantise(fp32, model_dir / INT8_FILE)
        if texts:
            scores = {}
            for name, loader in (("onnx", load_onnx_fp32), ("onnx-int8", load_onnx_int8)):
                predictor = loader(model_dir)
                scores[name] = quick_scores(y, predictor.predict_proba(texts, 64), predictor.thresholds)["f1_macro"]
            drop = (scores["onnx"] or 0.0) - (scores["onnx-int8"] or 0.0)
            report.update({"f1_macro": scores, "int8_f1_drop": round(drop, 6), "validation_rows": len(texts)})
            if drop <= MAX_F1_DROP:
                report["backend"] = "onnx-int8"
            else:
                logger.info("int8 loses %.4f macro-F1 on validation (> %s): serving fp32 ONNX", drop, MAX_F1_DROP)
        else:
            report["note"] = "no validation data to check int8 quality: serving fp32 ONNX"
    report["export_seconds"] = round(time.time() - started, 1)
    (model_dir / SERVING_FILE).write_text(json.dumps(report, indent=2))
    return report
