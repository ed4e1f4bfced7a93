"""Package a trained model directory as the serving artifact: only what the chosen backend needs.

The complete model directory (HF weights, tokenizer, tuned thresholds, both ONNX exports,
serving.json) stays in the training job's output, where evaluation reads the torch reference. The
artifact (SM_MODEL_DIR, tarred by SageMaker into model.tar.gz) gets:
- the weights of the backend serving.json chose (`model.int8.onnx`, `model.onnx` or the HF weights);
- tokenizer files, config.json, thresholds.json, serving.json, training_summary.json;
- `code/` for the Hugging Face inference toolkit: `inference.py` (the entry module), `mlcore/`, and
  for the ONNX backends `vendor/onnxruntime` (the ONNX Runtime the export was validated with), so
  the endpoint starts with no pip install and no network.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import mlcore
from mlcore.predictor import BACKEND_FILES, SERVING_FILE, WEIGHT_PATTERNS, serving_backend

logger = logging.getLogger(__name__)

MLCORE_DIR = Path(mlcore.__file__).resolve().parent
ENTRY_MODULE = MLCORE_DIR / "toolkit_entry.py"
CODE_DIR = "code"
VENDOR_DIR = "vendor"
# Parts of the onnxruntime package that serving never imports (optimiser, quantiser, tools).
ORT_UNUSED = ("transformers", "quantization", "tools", "datasets")
_IGNORE = ("__pycache__", "*.pyc", ".pytest_cache")


def _is_weights(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in WEIGHT_PATTERNS)


def _copy_tree(src: Path, dest: Path, *ignore: str) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*_IGNORE, *ignore))


def vendor_onnxruntime(code_dir: Path) -> None:
    """Copy the installed onnxruntime package (minus its tools) into `code/vendor/`."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("onnxruntime is not installed here, so it cannot travel with the model: "
                                  "pip install onnxruntime, or package the model for the torch backend")
    source = Path(next(iter(spec.submodule_search_locations)))
    _copy_tree(source, code_dir / VENDOR_DIR / "onnxruntime", *ORT_UNUSED)


def write_model_code(model_dir: str | Path, vendor_ort: bool = False) -> Path:
    """Write `code/` (toolkit entry module + mlcore, and ONNX Runtime when asked) into a model directory."""
    code = Path(model_dir) / CODE_DIR
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ENTRY_MODULE, code / "inference.py")
    _copy_tree(MLCORE_DIR, code / "mlcore")
    stale = code / "requirements.txt"  # nothing is pip-installed at endpoint start
    if stale.exists():
        stale.unlink()
    if vendor_ort:
        vendor_onnxruntime(code)
    elif (code / VENDOR_DIR).exists():
        shutil.rmtree(code / VENDOR_DIR)
    return code


def package_serving_model(full_dir: str | Path, dest: str | Path, backend: str | None = None) -> dict:
    """Copy what serving `backend` (default: serving.json's choice) needs from `full_dir` into `dest`.

    Returns the serving.json written into `dest` (the backend, the files shipped, the vendored runtime).
    """
    full_dir, dest = Path(full_dir), Path(dest)
    backend = backend or serving_backend(full_dir)
    if backend not in BACKEND_FILES:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKEND_FILES)}")
    weights = [p for p in sorted(full_dir.iterdir())
               if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in BACKEND_FILES[backend])]
    if not weights:
        raise FileNotFoundError(f"{full_dir} has no weights for backend {backend} "
                                f"(expected {', '.join(BACKEND_FILES[backend])})")
    dest.mkdir(parents=True, exist_ok=True)
    shipped = []
    for path in sorted(full_dir.iterdir()):
        if path.is_file() and (path in weights or not _is_weights(path.name)):
            shutil.copy2(path, dest / path.name)
            shipped.append(path.name)
    doc = json.loads((full_dir / SERVING_FILE).read_text()) if (full_dir / SERVING_FILE).exists() else {}
    doc["backend"] = backend
    doc["files"] = sorted(set(shipped) | {SERVING_FILE})
    write_model_code(dest, vendor_ort=backend.startswith("onnx"))
    if backend.startswith("onnx"):
        doc["vendored"] = vendor_identity(dest)
    else:
        doc.pop("vendored", None)
    (dest / SERVING_FILE).write_text(json.dumps(doc, indent=2))
    logger.info("packaged %s for serving with %s: %s", dest, backend, ", ".join(doc["files"]))
    return doc


def vendor_identity(model_dir: Path) -> dict:
    """What `code/vendor/onnxruntime` is: version, and the CPython and platform it was built for."""
    capi = model_dir / CODE_DIR / VENDOR_DIR / "onnxruntime" / "capi"
    info = {"package": "onnxruntime"}
    for so in capi.glob("onnxruntime_pybind11_state*.so"):
        parts = so.name.split(".")  # onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so
        if len(parts) == 3 and parts[1].startswith("cpython-"):
            tag = parts[1].split("-")
            info["python"] = f"{tag[1][0]}.{tag[1][1:]}"
            info["platform"] = "-".join(tag[2:])
    version_file = capi / "build_and_package_info.py"
    if version_file.exists():
        for line in version_file.read_text().splitlines():
            if line.startswith("__version__"):
                info["version"] = line.split("=", 1)[1].strip().strip("\"'")
    return info
