"""model.tar.gz as SageMaker writes it: the model directory's contents at the archive root, reproducible."""
from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path


def make_model_tarball(model_dir: Path, dest: Path) -> Path:
    """Tar `model_dir` into `dest` with its contents at the archive root (as SageMaker does), reproducibly."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(model_dir.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False, filter=normalise)
    os.replace(tmp, dest)
    return dest
