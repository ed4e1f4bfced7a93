"""The monitor's baseline in the local world: from the model registry and the run that built the model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlcore.config import EVALUATION_FILE
from monitoring.baseline import STATISTICS_FILE, BaselineError
from pipelines.registry import LocalModelRegistry, RegistryError
from pipelines.spec import PREPROCESS


def resolve_local_baseline(settings, root: str | Path, version: int | None = None, status: str | None = "Approved") -> Path:
    """Copy the registered model's evaluation.json (+ its run's statistics.json) into `root/v<N>`; returns it.

    One directory per model version, so a score baseline built for a version stays with it.
    """
    registry = LocalModelRegistry(settings.registry_dir)
    group = settings.model_package_group
    try:
        package = registry.describe(group, version) if version else registry.latest(group, status)
    except RegistryError as exc:
        raise BaselineError(str(exc)) from None
    if package is None:
        raise BaselineError(
            f"no {status or 'registered'} version in model package group {group!r} under {settings.registry_dir}: "
            "approve one (`mlops registry approve`), pass --model-version, or pass --baseline-dir"
        )
    n = package["ModelPackageVersion"]
    dest = Path(root) / f"v{n}"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(registry.version_dir(group, n) / EVALUATION_FILE, dest / EVALUATION_FILE)
    run_id = package.get("SourceRunId")
    if run_id:
        stats = Path(settings.runs_dir) / run_id / PREPROCESS / "output" / "statistics" / STATISTICS_FILE
        if stats.is_file():
            shutil.copyfile(stats, dest / STATISTICS_FILE)
    (dest / "baseline_source.json").write_text(json.dumps({"group": group, "version": n, "run_id": run_id}, indent=2))
    return dest
