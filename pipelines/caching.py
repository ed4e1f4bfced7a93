"""Step caching like SageMaker's: reuse a step's outputs when its code, arguments and inputs are unchanged.
Entries and the runs that made or reuse them share their files (hard links): a cached run costs no disk.

The cache key hashes the step's code (its script + the packages it imports), its logical
arguments (no run-specific paths) and the content of its input files. An entry is a directory
`<cache>/<step>/<key>/` holding `outputs/<name>/...` and `entry.json`; it is built in a temp
directory and renamed into place, so an entry is complete or absent.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pipelines.digests import hash_path

ENTRY_FILE = "entry.json"


def link_or_copy(src: str | Path, dest: str | Path) -> None:
    """Hard-link `src` at `dest` (no bytes copied), or copy it where links are impossible (another file system).

    Safe because step outputs are written once: a step writes a new file (or replaces one with os.replace),
    it never rewrites another step's or a cache entry's file in place.
    """
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


@dataclass
class StepSignature:
    """What decides whether a step must run again: code, arguments and input contents."""

    step: str
    code: Mapping[str, str | Path] = field(default_factory=dict)
    arguments: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str | Path] = field(default_factory=dict)

    def components(self) -> dict[str, Any]:
        """The hashed pieces, kept in the entry so one can see why a key changed."""
        return {
            "step": self.step,
            "code": {name: hash_path(p) for name, p in sorted(self.code.items())},
            "arguments": json.loads(json.dumps(dict(self.arguments), sort_keys=True, default=str)),
            "inputs": {name: hash_path(p) for name, p in sorted(self.inputs.items())},
        }

    def key(self, components: dict[str, Any] | None = None) -> str:
        doc = components or self.components()
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class CacheHit:
    """A complete cache entry: its key, metadata, and the stored outputs."""

    key: str
    path: Path
    meta: dict

    def output(self, name: str) -> Path:
        return self.path / "outputs" / name


class StepCache:
    """Complete-or-absent cache entries of step outputs under `root`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry_dir(self, step: str, key: str) -> Path:
        return self.root / step / key

    def lookup(self, signature: StepSignature, key: str | None = None) -> CacheHit | None:
        """The entry for this signature, or None when the step must run."""
        key = key or signature.key()
        path = self.entry_dir(signature.step, key)
        meta_path = path / ENTRY_FILE
        if not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if any(not (path / "outputs" / name).exists() for name in meta.get("outputs", [])):
            return None
        return CacheHit(key, path, meta)

    def store(self, signature: StepSignature, outputs: Mapping[str, str | Path], key: str | None = None,
              components: dict | None = None, attachments: Mapping[str, str | Path] | None = None,
              **meta: Any) -> CacheHit:
        """Copy `outputs` (name -> file or directory) into a new entry; an existing entry is kept.

        `attachments` (file name -> file, e.g. the step log) are kept beside the outputs, not restored.
        """
        components = components or signature.components()
        key = key or signature.key(components)
        final = self.entry_dir(signature.step, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:8]}-", dir=final.parent))
        try:
            for name, src in outputs.items():
                src = Path(src)
                dest = tmp / "outputs" / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dest, copy_function=link_or_copy)
                elif src.is_file():
                    link_or_copy(src, dest)
                else:
                    raise FileNotFoundError(f"step {signature.step} output {name!r} missing: {src}")
            for name, src in (attachments or {}).items():
                shutil.copy2(src, tmp / name)
            doc = {"step": signature.step, "key": key, "outputs": sorted(outputs), "signature": components, **meta}
            (tmp / ENTRY_FILE).write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / ENTRY_FILE).exists():  # not a concurrent writer winning: a real error
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return CacheHit(key, final, json.loads((final / ENTRY_FILE).read_text(encoding="utf-8")))

    @staticmethod
    def restore(hit: CacheHit, destinations: Mapping[str, str | Path]) -> None:
        """Put the cached outputs at `destinations` (name -> path; hard links, see `link_or_copy`), replacing
        what is there."""
        for name, dest in destinations.items():
            src = hit.output(name)
            dest = Path(dest)
            if dest.is_dir():
                shutil.rmtree(dest)
            elif dest.exists():
                dest.unlink()
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest, copy_function=link_or_copy)
            else:
                link_or_copy(src, dest)
