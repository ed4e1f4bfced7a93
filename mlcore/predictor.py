"""Load a packaged model directory and turn texts into per-label probabilities.

One interface (`Predictor`) over several backends, so evaluation, the model server and the
benchmarks call the same thing: "torch" (the reference), "torch-bf16", and the ONNX Runtime
backends registered by `mlcore.onnx_backend` ("onnx", "onnx-int8").
"""
from __future__ import annotations

import importlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from mlcore.batching import CALL_COST_TOKENS, TokenEncoder, pad_batch, plan_batches

THRESHOLDS_FILE = "thresholds.json"
SERVING_FILE = "serving.json"
# The weight files each backend loads (glob patterns in the model directory); every other file of a
# model directory (tokenizer, config, thresholds) is needed by all backends.
BACKEND_FILES = {
    "torch": ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin"),
    "torch-bf16": ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin"),
    "onnx": ("model.onnx", "model.onnx.data"),
    "onnx-int8": ("model.int8.onnx", "model.int8.onnx.data"),
}
WEIGHT_PATTERNS = tuple(sorted({p for patterns in BACKEND_FILES.values() for p in patterns}))


@dataclass
class ModelInfo:
    """What a model directory says about its outputs: label order, tuned thresholds, max length."""

    label_names: list[str]
    thresholds: np.ndarray
    max_length: int
    default_threshold: float = 0.5

    @classmethod
    def read(cls, model_dir: str | Path) -> "ModelInfo":
        model_dir = Path(model_dir)
        path = model_dir / THRESHOLDS_FILE
        if path.exists():
            doc = json.loads(path.read_text())
            return cls(
                label_names=list(doc["labels"]),
                thresholds=np.asarray(doc["thresholds"], dtype=np.float32),
                max_length=int(doc.get("max_length", 128)),
                default_threshold=float(doc.get("default_threshold", 0.5)),
            )
        config_path = model_dir / "config.json"
        if not config_path.exists():
            raise FileNotFoundError(
                f"{model_dir} is not a model directory: neither {THRESHOLDS_FILE} nor config.json found"
            )
        config = json.loads(config_path.read_text())
        id2label = config.get("id2label") or {}
        labels = [id2label[str(i)] if str(i) in id2label else id2label.get(i, f"LABEL_{i}") for i in range(len(id2label))]
        return cls(labels, np.full(len(labels), 0.5, dtype=np.float32), 128)

    def write(self, model_dir: str | Path) -> None:
        doc = {
            "labels": self.label_names,
            "thresholds": [round(float(t), 6) for t in self.thresholds],
            "default_threshold": self.default_threshold,
            "max_length": self.max_length,
        }
        (Path(model_dir) / THRESHOLDS_FILE).write_text(json.dumps(doc, indent=2))


def extract_model(path: str | Path, dest: str | Path | None = None) -> Path:
    """A model directory as is, or a SageMaker `model.tar.gz` unpacked into `dest` (or a temp dir)."""
    path = Path(path)
    if path.is_dir():
        if (path / "model.tar.gz").exists() and not (path / "config.json").exists():
            path = path / "model.tar.gz"
        else:
            return path
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    target = Path(dest) if dest else Path(tempfile.mkdtemp(prefix="model-"))
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "r:*") as tar:
        tar.extractall(target, filter="data")
    return target


class Predictor(Protocol):
    label_names: list[str]
    thresholds: np.ndarray
    max_length: int
    call_cost_tokens: float  # what one more model call costs in padded tokens (mlcore.batching.plan_batches)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Probabilities, shape (len(texts), len(label_names)), in the order of `texts`."""


def planned_batches(encoder: TokenEncoder, texts: Sequence[str], batch_size: int, progress: bool = False,
                    call_cost_tokens: float = CALL_COST_TOKENS):
    """(row indices, padded int64 arrays) per model call: `texts` tokenized once, unpadded, then cut into calls of
    at most `batch_size` rows by token length (`plan_batches`), each padded to its longest row."""
    ids = encoder(texts)
    plan = plan_batches([len(x) for x in ids], batch_size, call_cost_tokens)
    if progress:
        from tqdm.auto import tqdm

        plan = tqdm(plan, desc="predict", unit="batch")
    for idx in plan:
        yield idx, pad_batch([ids[i] for i in idx], encoder.pad_id)


class TorchPredictor:
    """The reference backend: transformers + PyTorch, fp32 or bf16 weights."""

    def __init__(self, model_dir: str | Path, dtype: str = "fp32", num_threads: int | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if num_threads:
            torch.set_num_threads(num_threads)
        self.model_dir = Path(model_dir)
        info = ModelInfo.read(self.model_dir)
        self.label_names, self.thresholds, self.max_length = info.label_names, info.thresholds, info.max_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.encoder, self.call_cost_tokens = TokenEncoder(self.tokenizer, self.max_length), float(CALL_COST_TOKENS)
        self.inputs = set(self.tokenizer.model_input_names)  # e.g. no token_type_ids for DistilBERT
        torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir, dtype=torch_dtype).eval()
        self._torch = torch

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        with torch.inference_mode():
            for idx, batch in planned_batches(self.encoder, texts, batch_size, progress, self.call_cost_tokens):
                inputs = {k: torch.from_numpy(v) for k, v in batch.items() if k in self.inputs}
                logits = self.model(**inputs).logits.float()
                out[idx] = torch.sigmoid(logits).numpy()
        return out


def _torch_fp32(model_dir: Path, **kw) -> Predictor:
    return TorchPredictor(model_dir, dtype="fp32", **kw)


def _torch_bf16(model_dir: Path, **kw) -> Predictor:
    return TorchPredictor(model_dir, dtype="bf16", **kw)


BACKENDS: dict[str, Callable[..., Predictor] | str] = {
    "torch": _torch_fp32,
    "torch-bf16": _torch_bf16,
    # Registered lazily so onnxruntime is imported only when used.
    "onnx": "mlcore.onnx_backend:load_onnx_fp32",
    "onnx-int8": "mlcore.onnx_backend:load_onnx_int8",
}


def serving_backend(model_dir: str | Path) -> str:
    """The backend the packaging step chose for this model (serving.json), else "torch"."""
    path = Path(model_dir) / SERVING_FILE
    if path.exists():
        return json.loads(path.read_text()).get("backend", "torch")
    return "torch"


def check_backend_files(model_dir: Path, backend: str) -> None:
    """FileNotFoundError naming what the directory does carry when `backend`'s weights are absent."""
    import fnmatch

    names = [p.name for p in Path(model_dir).iterdir() if p.is_file()]
    if any(fnmatch.fnmatch(n, pat) for n in names for pat in BACKEND_FILES.get(backend, ())):
        return
    present = [b for b, pats in BACKEND_FILES.items() if any(fnmatch.fnmatch(n, p) for n in names for p in pats)]
    raise FileNotFoundError(
        f"{model_dir} has no weights for backend {backend} ({', '.join(BACKEND_FILES[backend])}); it serves "
        f"{', '.join(present) or 'no backend'}. A packaged artifact carries only its serving backend: the "
        "complete model (torch weights, every ONNX export) is the training output's model/ directory")


def load_predictor(model_path: str | Path, backend: str = "auto", **kwargs) -> Predictor:
    """A predictor for a model directory or model.tar.gz; backend "auto" = what serving.json chose."""
    model_dir = extract_model(model_path)
    if backend == "auto":
        backend = os.environ.get("MLOPS_BACKEND") or serving_backend(model_dir)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    check_backend_files(model_dir, backend)
    factory = BACKENDS[backend]
    if isinstance(factory, str):
        module, _, name = factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
    return factory(model_dir, **kwargs)


def decide(probabilities: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """0/1 decisions: a label is predicted when its probability reaches its threshold."""
    return (probabilities >= np.asarray(thresholds, dtype=np.float32)).astype(np.int8)
