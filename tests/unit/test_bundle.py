"""mlcore.bundle: the step source bundle and the model artifact's code/ are the repo's code, complete and clean."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from mlcore import bundle
from tests.conftest import REPO_ROOT


def _py_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.py") if "__pycache__" not in p.parts}


def _requirements(path: Path) -> list[Requirement]:
    lines = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines, f"{path} is empty"
    return [Requirement(l) for l in lines]  # raises on a malformed line


def test_step_bundle_holds_the_repo_code_byte_for_byte(tmp_path):
    dest = bundle.step_source_bundle(tmp_path / "src")
    scripts = sorted(p.name for p in (REPO_ROOT / "steps").glob("*.py") if p.name != "__init__.py")
    assert {"preprocess.py", "train.py", "evaluate.py"} <= set(scripts)
    for name in scripts:
        assert (dest / name).read_bytes() == (REPO_ROOT / "steps" / name).read_bytes(), name
    assert _py_files(dest / "mlcore") == _py_files(REPO_ROOT / "mlcore")
    assert _py_files(dest / "inference") == _py_files(REPO_ROOT / "inference")
    names = {r.name for r in _requirements(dest / "requirements.txt")}
    assert {"scikit-learn", "onnxruntime"} <= names


def test_bundle_skips_caches_even_when_the_source_has_them(tmp_path, monkeypatch):
    fake_mlcore = tmp_path / "repo" / "mlcore"
    shutil.copytree(REPO_ROOT / "mlcore", fake_mlcore, ignore=shutil.ignore_patterns("__pycache__"))
    (fake_mlcore / "__pycache__").mkdir()
    (fake_mlcore / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"stale")
    (fake_mlcore / "stray.pyc").write_bytes(b"stale")
    monkeypatch.setattr(bundle, "MLCORE_DIR", fake_mlcore)
    dest = bundle.step_source_bundle(tmp_path / "src")
    code = bundle.write_model_code(tmp_path / "model")
    for root in (dest, code):
        leftovers = [p for p in root.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
        assert leftovers == [], leftovers
    assert (dest / "mlcore" / "config.py").exists()


def test_bundle_runs_standalone_and_imports_its_own_mlcore(tmp_path):
    """Inside the container only the bundle exists: its entry scripts must import the bundled mlcore."""
    dest = bundle.step_source_bundle(tmp_path / "src")
    probe = "import mlcore, preprocess, evaluate; print(mlcore.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=dest, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve().is_relative_to(dest.resolve())


def test_bundle_is_rebuildable_in_place(tmp_path):
    dest = bundle.step_source_bundle(tmp_path / "src")
    (dest / "mlcore" / "leftover.py").write_text("x = 1\n")
    bundle.step_source_bundle(dest)
    assert not (dest / "mlcore" / "leftover.py").exists(), "a rebuilt bundle must not keep stale modules"


def test_write_model_code_layout(tmp_path):
    code = bundle.write_model_code(tmp_path / "model")
    assert code == tmp_path / "model" / "code"
    assert (code / "inference.py").read_bytes() == (REPO_ROOT / "inference" / "inference.py").read_bytes()
    assert _py_files(code / "mlcore") == _py_files(REPO_ROOT / "mlcore")
    assert {r.name for r in _requirements(code / "requirements.txt")} >= {"onnxruntime"}


def test_write_model_code_without_handler_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "INFERENCE_DIR", tmp_path / "no-inference")
    with pytest.raises(FileNotFoundError, match="inference.py"):
        bundle.write_model_code(tmp_path / "model")
