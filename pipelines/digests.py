"""Content digests (sha256): of one file, and of a file or directory tree (relative names + contents).

Used for step cache keys, content-addressed S3 locations (source bundles, staged input data) and
the registry's ModelDataETag.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".git"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
_BLOCK = 1 << 20


def _iter_files(path: Path) -> Iterable[Path]:
    """Files under `path` in a stable order, without bytecode caches."""
    if path.is_file():
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if Path(name).suffix not in _SKIP_SUFFIXES:
                yield Path(root) / name


def _update(digest, file: Path) -> None:
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (what `sha256sum` prints)."""
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def hash_path(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a directory's relative file names + contents."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot hash {path}: it does not exist")
    digest = hashlib.sha256()
    for file in _iter_files(path):
        rel = file.relative_to(path).as_posix() if path.is_dir() else ""
        digest.update(rel.encode() + b"\0")
        _update(digest, file)
        digest.update(b"\0")
    return digest.hexdigest()
