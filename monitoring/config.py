"""Typed configuration of the monitor: alarm thresholds, ground-truth policies, time parsing.

Every limit the monitoring job applies lives in `MonitorConfig`, so the CLI, the processing
entry script and the tests read the same defaults.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

CONFLICT_POLICIES = ("exclude", "latest")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class MonitorConfig:
    """Limits of the monitoring job; a violation is raised when one is crossed."""

    max_f1_macro_drop: float = field(default=0.05, metadata={"help": "alarm when macro F1 falls more than this below the baseline"})
    max_roc_auc_macro_drop: float = field(default=0.05, metadata={"help": "alarm when macro ROC AUC falls more than this below the baseline"})
    min_labelled_samples: int = field(default=20, metadata={"help": "judge quality only for windows with at least this many labelled texts"})
    min_drift_samples: int = field(default=30, metadata={"help": "judge drift only for windows with at least this many texts"})
    bootstrap: int = field(default=100, metadata={"help": "bootstrap resamples for metric standard deviations"})
    seed: int = 0
    max_label_delay_hours: float = field(default=24.0, metadata={"help": "ground truth received later than this after the inference is late"})
    include_late_labels: bool = field(default=False, metadata={"help": "use late ground truth in quality metrics (it is always counted)"})
    conflicting_labels: str = field(default="exclude", metadata={"help": "conflicting duplicate ground truth: exclude | latest"})
    psi_threshold: float = field(default=0.2, metadata={"help": "population stability index above which a distribution has drifted"})
    drift_alpha: float = field(default=0.01, metadata={"help": "significance level of the KS / binomial drift tests (Bonferroni over labels)"})
    max_rate_delta: float = field(default=0.10, metadata={"help": "predicted label rate may move this much (absolute) before it drifts"})
    psi_bins: int = field(default=10, metadata={"help": "quantile bins of the score PSI"})

    def __post_init__(self) -> None:
        if self.conflicting_labels not in CONFLICT_POLICIES:
            raise ValueError(f"conflicting_labels must be one of {', '.join(CONFLICT_POLICIES)}, got {self.conflicting_labels!r}")
        for name in ("max_f1_macro_drop", "max_roc_auc_macro_drop", "max_label_delay_hours", "psi_threshold", "max_rate_delta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.drift_alpha < 1:
            raise ValueError(f"drift_alpha must be in (0, 1), got {self.drift_alpha}")
        if self.psi_bins < 2:
            raise ValueError(f"psi_bins must be >= 2, got {self.psi_bins}")
        if self.bootstrap < 0 or self.min_labelled_samples < 1 or self.min_drift_samples < 1:
            raise ValueError("bootstrap must be >= 0 and the minimum sample counts >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MonitorConfig":
        """Build from a dict (e.g. monitor_config.json); unknown keys are an error naming the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown monitor setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '1h', '1d', '1w' -> timedelta; anything else is a ValueError saying the format."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit s, m, h, d or w (e.g. 1h, 30m)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be > 0")
    return timedelta(seconds=seconds)


def parse_time(text: str) -> datetime:
    """ISO 8601 (a trailing Z accepted; naive means UTC) -> aware UTC datetime."""
    try:
        value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use ISO 8601, e.g. 2024-05-01T13:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, as SageMaker writes times."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
