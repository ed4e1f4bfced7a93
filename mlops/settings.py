"""Settings of the local world: where runs, the cache, the model registry and the MLflow tracking live.

Read from env vars (`MLOPS_HOME`, `MLOPS_MODEL_PACKAGE_GROUP`, `MLOPS_PYTHON`, `MLOPS_TRACKING`,
`MLFLOW_TRACKING_URI`) so the CLI, the tests and the lead's deploy commands agree on one home directory.
MLflow is embedded by default: `sqlite:///<home>/mlflow.db`, artifacts under `<home>/mlartifacts`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mlcore.config import env_value
from pipelines.spec import MODEL_PACKAGE_GROUP

DEFAULT_HOME = ".mlops"


@dataclass
class Settings:
    """Local paths and names; the directories default to sub-directories of `home`."""

    home: Path = field(default_factory=lambda: Path(DEFAULT_HOME))
    registry_dir: Path | None = None
    runs_dir: Path | None = None
    cache_dir: Path | None = None
    model_package_group: str = MODEL_PACKAGE_GROUP
    python: str = sys.executable
    tracking: bool = True
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().resolve()
        self.registry_dir = Path(self.registry_dir) if self.registry_dir else self.home / "registry"
        self.runs_dir = Path(self.runs_dir) if self.runs_dir else self.home / "runs"
        self.cache_dir = Path(self.cache_dir) if self.cache_dir else self.home / "cache"
        self.tracking_uri = self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"
        if not self.model_package_group:
            raise ValueError("model package group must not be empty")

    @property
    def monitoring_dir(self) -> Path:
        """The monitor's home: ground truth, baselines, outputs, scraped server metrics."""
        return self.home / "monitoring"

    @property
    def ground_truth_dir(self) -> Path:
        """The ground-truth store (SageMaker's yyyy/mm/dd/hh layout): `mlops monitor ground-truth` and the
        predict Lambda's feedback route write it, the monitor reads it."""
        return self.monitoring_dir / "ground_truth"

    @property
    def artifacts_dir(self) -> Path:
        """Where the embedded MLflow keeps run artifacts (evaluation report and plots)."""
        return self.home / "mlartifacts"

    @property
    def events_file(self) -> Path:
        """Where `publish_event` appends the EventBridge-shaped events (one JSON a line)."""
        return self.home / "events.jsonl"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from `MLOPS_HOME` (default ./.mlops), `MLOPS_MODEL_PACKAGE_GROUP`, `MLOPS_PYTHON`,
        `MLOPS_TRACKING` (true/false, default true) and `MLFLOW_TRACKING_URI` (default: the embedded database)."""
        env = os.environ if env is None else env
        values: dict = {
            "home": Path(env.get("MLOPS_HOME") or DEFAULT_HOME),
            "model_package_group": env.get("MLOPS_MODEL_PACKAGE_GROUP") or MODEL_PACKAGE_GROUP,
            "python": env.get("MLOPS_PYTHON") or sys.executable,
            "tracking": env_value("MLOPS_TRACKING", True, env=env),
            "tracking_uri": env.get("MLFLOW_TRACKING_URI") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
