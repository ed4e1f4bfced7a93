"""The source bundle of the SageMaker processing and training steps, assembled when a definition is built.

`step_source_bundle(dest)`: steps/*.py at the top (the entry scripts), mlcore/ beside them and a
requirements.txt that the step containers install at start. Built from the repo, never committed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS_DIR = REPO_ROOT / "steps"
MLCORE_DIR = REPO_ROOT / "mlcore"

# What the step scripts need beyond the images' own torch: the Hugging Face images carry transformers (found
# satisfied there), the PyTorch training image of CPU training does not. The training step vendors the
# onnxruntime it installs into the model artifact (mlcore.packaging).
STEP_REQUIREMENTS = ("transformers>=5.0,<6", "accelerate>=1.0", "scikit-learn>=1.5", "matplotlib>=3.8", "tqdm>=4.66", "onnx>=1.17", "onnxruntime>=1.20")

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


# What the steps need to log to a SageMaker managed MLflow tracking server (mlflow-skinny and the plugin that
# signs its calls): in the bundle only when the pipeline has one.
TRACKING_REQUIREMENTS = ("sagemaker-mlflow>=0.1",)


def step_source_bundle(dest: str | Path, extra_requirements: tuple[str, ...] = ()) -> Path:
    """Build a step source directory at `dest` (replacing what an earlier build left there)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for script in sorted(STEPS_DIR.glob("*.py")):
        if script.name != "__init__.py":
            shutil.copy2(script, dest / script.name)
    if (dest / "mlcore").exists():
        shutil.rmtree(dest / "mlcore")
    shutil.copytree(MLCORE_DIR, dest / "mlcore", ignore=_IGNORE)
    (dest / "requirements.txt").write_text("\n".join((*STEP_REQUIREMENTS, *extra_requirements)) + "\n")
    return dest
