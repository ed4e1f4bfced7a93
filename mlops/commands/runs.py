"""`mlops runs`: the local pipeline executions ($MLOPS_HOME/runs/<run-id>/run.json), newest first."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from mlops.output import add_output_option, emit
from mlops.settings import Settings
from pipelines.run_result import RUN_FILE

ORDER = 15


def load_runs(runs_dir: Path) -> list[dict]:
    """Every run's run.json (unreadable ones as status "Unreadable"), newest first."""
    runs = []
    for path in sorted(Path(runs_dir).glob(f"*/{RUN_FILE}")) if Path(runs_dir).is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {"run_id": path.parent.name, "run_dir": str(path.parent), "status": "Unreadable", "steps": []}
        runs.append(doc)
    return sorted(runs, key=lambda r: (r.get("started") or "", r["run_id"]), reverse=True)


def summary(run: dict) -> dict:
    """One row of `runs list`: id, status, times, what it registered, why it failed."""
    package = run.get("model_package") or {}
    steps = run.get("steps") or []
    seconds = None
    if run.get("started") and run.get("finished"):
        seconds = (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
    return {
        "RunId": run["run_id"], "Status": run.get("status"), "Started": run.get("started"), "DurationSeconds": seconds,
        "Cached": sum(1 for s in steps if s.get("status") == "cached"),
        "Ran": sum(1 for s in steps if s.get("status") in ("succeeded", "failed") and s.get("duration_s", 0) > 1),
        "ModelPackageVersion": package.get("ModelPackageVersion"),
        "AlreadyRegistered": bool(run.get("model_package_reused")),
        "InputData": (run.get("parameters") or {}).get("InputData"),
        "Failure": run.get("failure"), "RunDir": run.get("run_dir"),
    }


def _version(item: dict) -> str:
    version = item["ModelPackageVersion"]
    return "-" if version is None else f"v{version}" + (" (same model)" if item["AlreadyRegistered"] else "")


def cmd_list(args) -> int:
    settings = Settings.from_env()
    items = [summary(r) for r in load_runs(settings.runs_dir)]
    if args.status:
        items = [i for i in items if (i["Status"] or "").lower() == args.status.lower()]
    items = items[: args.max_items] if args.max_items else items
    columns = [("RUN", "RunId"), ("STATUS", "Status"), ("STARTED", lambda i: (i["Started"] or "-").replace("T", " ")[:19]),
               ("DURATION", lambda i: "-" if i["DurationSeconds"] is None else f"{i['DurationSeconds']:.0f}s"),
               ("CACHED", "Cached"), ("VERSION", _version), ("INPUT", "InputData"),
               ("FAILURE", lambda i: (i["Failure"] or "")[:60])]
    emit(items, columns, args.output, title=f"pipeline runs in {settings.runs_dir}",
         empty=f"no runs in {settings.runs_dir} (start one with `mlops run`)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list the local pipeline runs", description=__doc__)
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="runs, newest first: status, duration, cached steps, registered version")
    p.add_argument("--status", help="only runs with this status (Succeeded, Failed, Stopped, Executing)")
    p.add_argument("--max-items", type=int, default=0, metavar="N", help="at most N runs (default: all)")
    add_output_option(p)
    p.set_defaults(func=cmd_list)
