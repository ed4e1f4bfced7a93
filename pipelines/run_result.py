"""The outcome of one local pipeline execution: per-step results, run.json, and the end-of-run table."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines import spec
from pipelines.liveness import alive
from pipelines.registry import atomic_write_json

RUN_FILE = "run.json"
SUCCEEDED, CACHED, FAILED, SKIPPED = "succeeded", "cached", "failed", "skipped"


class StepFailed(RuntimeError):
    """A step ended badly; the message says why and where its log is, `short` fits in one table cell."""

    def __init__(self, message: str, short: str | None = None, exit_status: int | None = None):
        super().__init__(message)
        self.short = short or message.splitlines()[0]
        self.exit_status = exit_status  # the step script's, when it ran and failed (2: bad input)


@dataclass
class StepResult:
    """One step's outcome: status (succeeded | cached | failed | skipped), time, outputs, one-line summary."""

    name: str
    status: str = SKIPPED
    duration_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    message: str = ""
    log: str | None = None
    cache_key: str | None = None
    exit_status: int | None = None


@dataclass
class RunResult:
    """A pipeline execution: Succeeded or Failed, per-step results, the registered package if any."""

    run_id: str
    run_dir: Path
    parameters: dict[str, Any]
    steps: list[StepResult]
    status: str = "Executing"
    failure: str | None = None
    model_package: dict | None = None
    model_package_reused: bool = False  # the model was byte-identical to a registered version
    started: str = ""
    finished: str = ""
    pid: int | None = None  # the process executing it, and when that process started: a killed run is
    pid_started: float | None = None  # recognised by the next CLI start (mark_abandoned)

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    @property
    def bad_input(self) -> bool:
        """A step script refused its input (exit status 2: a bad dataset or hyperparameter)."""
        return any(s.status == FAILED and s.exit_status == 2 for s in self.steps)

    def step(self, name: str) -> StepResult:
        for result in self.steps:
            if result.name == name:
                return result
        raise KeyError(f"no step {name!r}; steps: {', '.join(s.name for s in self.steps)}")

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["run_dir"] = str(self.run_dir)
        doc["pipeline"] = spec.PIPELINE_NAME
        return doc


def format_summary(result: RunResult) -> str:
    """The end-of-run table: step, status, duration, key outputs; then the verdict."""
    rows = [("STEP", "STATUS", "DURATION", "KEY OUTPUTS")]
    for step in result.steps:
        duration = f"{step.duration_s:.1f}s" if step.status in (SUCCEEDED, CACHED, FAILED) else "-"
        detail = step.summary or (step.message.splitlines()[0] if step.message else "")
        rows.append((step.name, step.status, duration, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 11)
    verdict = f"run {result.run_id}: {result.status}"
    if result.model_package and result.model_package_reused:
        verdict += (f" - the model is identical to {result.model_package['ModelPackageArn']} "
                    f"({result.model_package['ModelApprovalStatus']}): no new version")
    elif result.model_package:
        verdict += f" - registered {result.model_package['ModelPackageArn']} ({result.model_package['ModelApprovalStatus']})"
    elif result.failure:
        verdict += f" - {result.failure.splitlines()[0]}"
    lines += ["", verdict, f"run metadata: {result.run_dir / RUN_FILE}"]
    return "\n".join(lines)


def mark_abandoned(runs_dir: Path) -> list[dict]:
    """Runs still "Executing" whose process is gone (killed: it could not record its end) marked Failed with the
    reason; returns their run.json documents."""
    marked = []
    for path in sorted(Path(runs_dir).glob(f"*/{RUN_FILE}")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if doc.get("status") != "Executing" or not doc.get("pid") or alive(doc["pid"], doc.get("pid_started")):
            continue
        doc.update(status="Failed", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   failure=f"the process running it (pid {doc['pid']}) ended without finishing it (killed?)")
        atomic_write_json(path, doc)
        marked.append(doc)
    return marked
