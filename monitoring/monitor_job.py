"""Entry script of the scheduled SageMaker processing job that monitors an endpoint.

Channels (SageMaker processing paths, each overridable by a flag):
  /opt/ml/processing/input/capture       the endpoint's data capture (S3 prefix synced in)
  /opt/ml/processing/input/ground_truth  ground truth in SageMaker's merge shape (optional)
  /opt/ml/processing/input/baseline      evaluation.json (+ statistics.json, score_baseline.npz)
  /opt/ml/processing/output              monitoring.json, constraint_violations.json, merged.jsonl,
                                         report.html/json + PNGs, metrics.emf.jsonl
The period defaults to the hour before the job starts (as a schedule runs it); exit status 0
even with violations unless --fail-on-violation, so the schedule records results either way.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from mlcore.config import PROCESSING_ROOT, add_dataclass_arguments
from monitoring.config import MonitorConfig, parse_duration, parse_time

EMF_FILE = "metrics.emf.jsonl"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--capture-dir", default=str(PROCESSING_ROOT / "input" / "capture"))
    p.add_argument("--ground-truth-dir", default=str(PROCESSING_ROOT / "input" / "ground_truth"))
    p.add_argument("--baseline-dir", default=str(PROCESSING_ROOT / "input" / "baseline"))
    p.add_argument("--output-dir", default=str(PROCESSING_ROOT / "output"))
    p.add_argument("--since", help="period start, ISO 8601 (default: --period before --until)")
    p.add_argument("--until", help="period end, ISO 8601 (default: now, floored to the hour)")
    p.add_argument("--period", default="1h", help="length of the default period (e.g. 1h, 1d)")
    p.add_argument("--window", help="also judge windows of this size inside the period")
    p.add_argument("--endpoint-name", default="endpoint", help="EndpointName dimension of the EMF metrics")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--fail-on-violation", action="store_true")
    add_dataclass_arguments(p, MonitorConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from monitoring.job import run_monitoring
    from monitoring.operational import capture_throughput, emf_lines

    args = build_parser().parse_args(argv)
    try:
        until = parse_time(args.until) if args.until else datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        since = parse_time(args.since) if args.since else until - parse_duration(args.period)
        window = parse_duration(args.window) if args.window else None
        config = MonitorConfig(**{f.name: getattr(args, f.name) for f in fields(MonitorConfig) if getattr(args, f.name) is not None})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if since >= until:
        print(f"error: period start {since} is not before its end {until}", file=sys.stderr)
        return 2
    gt = Path(args.ground_truth_dir)
    doc = run_monitoring(args.capture_dir, gt if gt.exists() else None, args.baseline_dir, args.output_dir,
                         since, until, window, config, progress=True)
    out = Path(args.output_dir)
    from monitoring.job import load_merged

    rows = load_merged(out)
    first: dict[str, tuple[datetime, int]] = {}
    for r in rows:
        first.setdefault(r["event_id"], (parse_time(r["time"]), r["batch_size"]))
    series = capture_throughput([t for t, _ in first.values()], [b for _, b in first.values()], timedelta(minutes=1))
    lines = emf_lines(series, {"EndpointName": args.endpoint_name})
    (out / EMF_FILE).write_text("".join(line + "\n" for line in lines))
    if not args.no_report:
        from monitoring.report import build_report

        build_report(out)
    print(json.dumps({"status": doc["status"], "violations": len(doc["violations"]),
                      "texts": doc["overall"]["texts"], "labelled": doc["overall"]["labelled"]}))
    return 1 if doc["violations"] and args.fail_on_violation else 0


if __name__ == "__main__":
    sys.exit(main())
