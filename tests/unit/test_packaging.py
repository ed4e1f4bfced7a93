"""What travels into containers: the step source bundle, and the model artifact (only what serving needs)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from mlcore import packaging
from pipelines import source_bundle
from tests.helpers.paths import REPO_ROOT


def _py_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.py") if "__pycache__" not in p.parts}


def _requirements(path: Path) -> list[Requirement]:
    lines = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines, f"{path} is empty"
    return [Requirement(l) for l in lines]  # raises on a malformed line


# ----------------------------------------------------------------------------- step source bundle
def test_step_bundle_holds_the_repo_code_byte_for_byte(tmp_path):
    dest = source_bundle.step_source_bundle(tmp_path / "src")
    scripts = sorted(p.name for p in (REPO_ROOT / "steps").glob("*.py") if p.name != "__init__.py")
    assert {"preprocess.py", "train.py", "evaluate.py"} <= set(scripts)
    for name in scripts:
        assert (dest / name).read_bytes() == (REPO_ROOT / "steps" / name).read_bytes(), name
    assert _py_files(dest / "mlcore") == _py_files(REPO_ROOT / "mlcore")
    assert not (dest / "inference").exists(), "the steps need only mlcore"
    names = {r.name for r in _requirements(dest / "requirements.txt")}
    assert {"scikit-learn", "onnxruntime"} <= names


def test_bundle_skips_caches_even_when_the_source_has_them(tmp_path, monkeypatch):
    fake_mlcore = tmp_path / "repo" / "mlcore"
    shutil.copytree(REPO_ROOT / "mlcore", fake_mlcore, ignore=shutil.ignore_patterns("__pycache__"))
    (fake_mlcore / "__pycache__").mkdir()
    (fake_mlcore / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"stale")
    (fake_mlcore / "stray.pyc").write_bytes(b"stale")
    monkeypatch.setattr(source_bundle, "MLCORE_DIR", fake_mlcore)
    monkeypatch.setattr(packaging, "MLCORE_DIR", fake_mlcore)
    dest = source_bundle.step_source_bundle(tmp_path / "src")
    code = packaging.write_model_code(tmp_path / "model")
    for root in (dest, code):
        leftovers = [p for p in root.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
        assert leftovers == [], leftovers
    assert (dest / "mlcore" / "config.py").exists()


def test_bundle_runs_standalone_and_imports_its_own_mlcore(tmp_path):
    """Inside the container only the bundle exists: its entry scripts must import the bundled mlcore."""
    dest = source_bundle.step_source_bundle(tmp_path / "src")
    probe = "import mlcore, preprocess, evaluate; print(mlcore.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=dest, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve().is_relative_to(dest.resolve())


def test_bundle_is_rebuildable_in_place(tmp_path):
    dest = source_bundle.step_source_bundle(tmp_path / "src")
    (dest / "mlcore" / "leftover.py").write_text("x = 1\n")
    source_bundle.step_source_bundle(dest)
    assert not (dest / "mlcore" / "leftover.py").exists(), "a rebuilt bundle must not keep stale modules"


# ----------------------------------------------------------------------------- model artifact
def test_model_code_is_the_toolkit_entry_and_mlcore_with_nothing_to_pip_install(tmp_path):
    (tmp_path / "model" / "code").mkdir(parents=True)
    (tmp_path / "model" / "code" / "requirements.txt").write_text("onnxruntime\n")  # left by an older packaging
    code = packaging.write_model_code(tmp_path / "model")
    assert code == tmp_path / "model" / "code"
    assert (code / "inference.py").read_bytes() == (REPO_ROOT / "mlcore" / "toolkit_entry.py").read_bytes()
    assert _py_files(code / "mlcore") == _py_files(REPO_ROOT / "mlcore")
    assert not (code / "requirements.txt").exists(), "the toolkit pip-installs code/requirements.txt at every start"
    assert not (code / "vendor").exists()


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "code" not in p.relative_to(root).parts}


def test_artifact_carries_only_the_serving_backend_and_its_runtime(tiny_classifier):
    full, artifact = tiny_classifier
    serving = json.loads((artifact / "serving.json").read_text())
    backend = serving["backend"]
    assert backend in ("onnx-int8", "onnx"), serving
    weights = {"onnx-int8": "model.int8.onnx", "onnx": "model.onnx"}[backend]
    assert weights in _files(artifact) and weights in serving["files"]
    assert not [f for f in _files(artifact) if f.endswith((".safetensors", ".bin"))], "torch weights stay in the full model"
    assert len([f for f in _files(artifact) if f.endswith(".onnx")]) == 1
    assert {"tokenizer.json", "config.json", "thresholds.json"} <= _files(artifact)
    assert set(serving["files"]) == _files(artifact)
    vendored = serving["vendored"]
    assert vendored["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (artifact / "code" / "vendor" / "onnxruntime" / "capi").is_dir()
    assert not (artifact / "code" / "vendor" / "onnxruntime" / "quantization").exists()
    full_bytes = sum(p.stat().st_size for p in full.rglob("*") if p.is_file())
    weight_bytes = sum((artifact / f).stat().st_size for f in serving["files"])
    assert weight_bytes < full_bytes / 2


def test_artifact_predicts_like_the_full_model_and_says_what_it_lacks(tiny_classifier):
    from mlcore.predictor import load_predictor

    full, artifact = tiny_classifier
    backend = json.loads((artifact / "serving.json").read_text())["backend"]
    texts = ["apple and cherry", "nothing here", "banana " * 40]
    served = load_predictor(artifact).predict_proba(texts)
    np.testing.assert_allclose(served, load_predictor(full, backend=backend).predict_proba(texts), atol=1e-6)
    with pytest.raises(FileNotFoundError, match=f"it serves {backend}.*training output"):
        load_predictor(artifact, backend="torch")


def test_torch_packaging_ships_the_weights_and_no_runtime(trained_tiny_model, tmp_path):
    doc = packaging.package_serving_model(trained_tiny_model, tmp_path / "torch", backend="torch")
    files = _files(tmp_path / "torch")
    assert doc["backend"] == "torch" and "model.safetensors" in files and not any(f.endswith(".onnx") for f in files)
    assert not (tmp_path / "torch" / "code" / "vendor").exists() and "vendored" not in doc
    with pytest.raises(ValueError, match="unknown backend"):
        packaging.package_serving_model(trained_tiny_model, tmp_path / "x", backend="tensorrt")
