"""Assemble what travels into SageMaker containers, at packaging time (never copies in the repo).

- `step_source_bundle(dest)`: a step's source dir: steps/*.py + mlcore/ + inference/ + requirements.txt.
- `write_model_code(model_dir)`: `code/` of the model artifact: inference.py + mlcore/ + requirements.txt,
  the layout the Hugging Face inference toolkit loads (`code/inference.py`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import mlcore

MLCORE_DIR = Path(mlcore.__file__).resolve().parent
# In the repo (and the installed editable package) the siblings are next to mlcore/; inside a
# step's source bundle too, since the bundle keeps the same layout.
ROOT = MLCORE_DIR.parent
STEPS_DIR = ROOT / "steps"
INFERENCE_DIR = ROOT / "inference"

# What the step and inference containers need beyond the Hugging Face DLC images' own packages.
STEP_REQUIREMENTS = ["scikit-learn>=1.5", "matplotlib>=3.8", "tqdm>=4.66", "onnx>=1.17", "onnxruntime>=1.20"]
MODEL_REQUIREMENTS = ["scikit-learn>=1.5", "onnxruntime>=1.20"]

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def _copy_package(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=_IGNORE)


def step_source_bundle(dest: str | Path) -> Path:
    """Build a step source directory at `dest`: entry scripts at the top, packages beside them."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for script in sorted(STEPS_DIR.glob("*.py")):
        if script.name != "__init__.py":
            shutil.copy2(script, dest / script.name)
    _copy_package(MLCORE_DIR, dest / "mlcore")
    if INFERENCE_DIR.is_dir():
        _copy_package(INFERENCE_DIR, dest / "inference")
    (dest / "requirements.txt").write_text("\n".join(STEP_REQUIREMENTS) + "\n")
    return dest


def write_model_code(model_dir: str | Path) -> Path:
    """Write `code/` into a model directory so the tarred directory is a valid HF DLC artifact."""
    handler = INFERENCE_DIR / "inference.py"
    if not handler.exists():
        raise FileNotFoundError(f"{handler} not found: the model server handlers must travel with the model")
    code = Path(model_dir) / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy2(handler, code / "inference.py")
    _copy_package(MLCORE_DIR, code / "mlcore")
    (code / "requirements.txt").write_text("\n".join(MODEL_REQUIREMENTS) + "\n")
    return code
