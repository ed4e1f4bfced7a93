"""`mlops monitor`: ingest ground truth, run the monitoring job, build the report, scrape server metrics.

Local layout under $MLOPS_HOME/monitoring/: ground_truth/<yyyy>/<mm>/<dd>/<hh>/*.jsonl,
baseline/v<N>/ (evaluation.json, statistics.json, score_baseline.npz), output/ (job results
and report), operational.jsonl (scraped /metrics). Capture is read from $MLOPS_HOME/capture.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

from mlcore.config import add_dataclass_arguments
from mlops.cli import CliError
from mlops.settings import Settings
from monitoring.config import MonitorConfig, parse_duration, parse_time

ORDER = 60


def monitoring_home(settings: Settings) -> Path:
    return settings.monitoring_dir


def default_capture_dir(settings: Settings) -> Path:
    return settings.home / "capture"


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration_arg(text: str):
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config(args) -> MonitorConfig:
    """MonitorConfig from --config JSON, with the flags given on the command line on top."""
    base = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise CliError(f"monitor config not found: {path}")
        try:
            base = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    try:
        flags = {f.name: getattr(args, f.name) for f in fields(MonitorConfig) if getattr(args, f.name, None) is not None}
        return MonitorConfig.from_dict({**base, **flags})
    except (ValueError, TypeError) as exc:
        raise CliError(f"invalid monitor setting: {exc}") from None


def _baseline_dir(args, settings: Settings) -> Path:
    from mlops.local_baseline import resolve_local_baseline
    from monitoring.baseline import BaselineError

    if args.baseline_dir:
        path = Path(args.baseline_dir)
        if not path.is_dir():
            raise CliError(f"baseline directory not found: {path}")
        return path
    try:
        return resolve_local_baseline(settings, monitoring_home(settings) / "baseline", args.model_version)
    except BaselineError as exc:
        raise CliError(str(exc)) from None


def _capture_dir(args, settings: Settings) -> Path:
    root = Path(args.capture_dir) if args.capture_dir else default_capture_dir(settings)
    path = root / args.endpoint if args.endpoint else root
    if not path.exists():
        raise CliError(f"no capture at {path}: start the model server with data capture on, or pass --capture-dir")
    return path


def cmd_ground_truth(args) -> int:
    from monitoring.baseline import BaselineError, load_baseline
    from monitoring.ground_truth import GroundTruthError, parse_ground_truth, store_ground_truth

    settings = Settings.from_env()
    label_names = None
    if args.baseline_dir or not args.no_label_check:
        try:
            label_names = load_baseline(_baseline_dir(args, settings)).label_names
        except (CliError, BaselineError) as exc:
            if args.baseline_dir:
                raise
            print(f"note: labels not checked against the model ({exc})", file=sys.stderr)
    received = args.received_at or datetime.now(timezone.utc)
    try:
        records, stats = parse_ground_truth(args.file, args.format, label_names, received)
    except GroundTruthError as exc:
        raise CliError(str(exc)) from None
    for example in stats.examples:
        print(f"rejected {example}", file=sys.stderr)
    if not records:
        raise CliError(f"{args.file}: no valid ground-truth record ({stats.lines} line(s) read, all rejected)")
    store = Path(args.store) if args.store else settings.ground_truth_dir
    target = store_ground_truth(records, store, received, stem=Path(args.file).stem[:40] or "labels")
    print(f"stored {stats.records} ground-truth record(s) in {target}")
    print(f"lines read {stats.lines}, rejected {sum(stats.rejected.values())}, duplicate ids in file {stats.duplicate_ids}")
    if stats.unknown_labels:
        names = ", ".join(f"{k} ({v})" for k, v in stats.unknown_labels.most_common())
        print(f"warning: labels unknown to the model (their records will be excluded from quality metrics): {names}",
              file=sys.stderr)
    return 0


def _run_job(args, settings: Settings) -> dict:
    from monitoring.baseline import BaselineError
    from monitoring.job import run_monitoring

    if args.since and args.until and args.since >= args.until:
        raise CliError(f"--since {args.since.isoformat()} must be before --until {args.until.isoformat()}")
    config = _config(args)
    gt = Path(args.ground_truth_dir) if args.ground_truth_dir else settings.ground_truth_dir
    try:
        return run_monitoring(_capture_dir(args, settings), gt if gt.exists() else None, _baseline_dir(args, settings),
                              _output_dir(args, settings), args.since, args.until, args.window, config,
                              progress=not args.quiet)
    except (BaselineError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None


def _output_dir(args, settings: Settings) -> Path:
    return Path(args.output_dir) if args.output_dir else monitoring_home(settings) / "output"


def _print_summary(doc: dict) -> None:
    overall = doc["overall"]
    q = overall.get("quality", {})
    counts = doc["ground_truth"].get("merge", {}).get("counts", {})
    print(f"texts {overall['texts']} (requests {overall['requests']}), labelled {overall['labelled']}, "
          f"missing ground truth {counts.get('missing_ground_truth', 0)}, late {counts.get('late', 0)}, "
          f"conflicting {counts.get('duplicate_conflicting_ids', 0)}, unknown-label {counts.get('excluded_unknown_label', 0)}, "
          f"unmatched {counts.get('ground_truth_unmatched', 0)}, malformed capture lines {doc['capture']['malformed_lines']}")
    if q.get("status") in ("ok", "violation"):
        for c in q["checks"]:
            print(f"{c['metric']}: {c['current'] if c['current'] is None else round(c['current'], 4)} "
                  f"(baseline {c['baseline']}, limit drop {c['limit']}) {'VIOLATION' if c['violated'] else 'ok'}")
    else:
        print(f"quality: {q.get('status')} ({q.get('reason', '')})")
    drift = overall.get("drift", {})
    if "status" in drift:
        print(f"drift: {drift['status']} ({drift.get('reason', '')})")
    else:
        print("drift: " + ", ".join(f"{k} {v.get('status')}" for k, v in drift.items()))
    for v in doc["violations"]:
        print(f"VIOLATION [{v['window']}] {v['description']}")
    print(f"status: {doc['status']}")


def cmd_run(args) -> int:
    settings = Settings.from_env()
    doc = _run_job(args, settings)
    _print_summary(doc)
    print(f"results in {_output_dir(args, settings)}")
    return 1 if (doc["violations"] and args.fail_on_violation) else 0


def cmd_report(args) -> int:
    from monitoring.report import build_report

    settings = Settings.from_env()
    out = _output_dir(args, settings)
    if not args.from_existing:
        _print_summary(_run_job(args, settings))
    operational = Path(args.operational) if args.operational else monitoring_home(settings) / "operational.jsonl"
    try:
        doc = build_report(out, operational, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(f"report: {out / 'report.html'} ({len(doc['images'])} chart(s)), {out / 'report.json'}")
    return 1 if (doc["violations"] and args.fail_on_violation) else 0


def cmd_baseline(args) -> int:
    import numpy as np

    from monitoring.baseline import load_baseline, write_score_baseline
    from monitoring.capture import read_capture
    from monitoring.job import align

    settings = Settings.from_env()
    directory = _baseline_dir(args, settings)
    labels = load_baseline(directory).label_names
    if args.model:
        if not args.data:
            raise CliError("--model needs --data (a data.jsonl of texts, e.g. the test split)")
        from mlcore.predictor import load_predictor

        texts = _read_texts(Path(args.data))
        scores = load_predictor(args.model).predict_proba(texts, progress=not args.quiet)
        source = f"model {args.model} on {args.data}"
    else:
        captured, _, _ = read_capture(_capture_dir(args, settings), args.since, args.until, progress=not args.quiet)
        _kept, scores, mismatched = align(captured, labels)
        if mismatched:
            print(f"note: {len(mismatched)} captured text(s) lack some baseline labels and were skipped", file=sys.stderr)
        source = f"capture {args.since or 'start'} .. {args.until or 'end'}"
    if len(scores) < 30:
        raise CliError(f"only {len(scores)} reference text(s): a score baseline needs at least 30")
    path = write_score_baseline(directory, np.asarray(scores), labels, source)
    print(f"score baseline of {len(scores)} text(s) ({source}) written to {path}")
    return 0


def _read_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise CliError(f"data file not found: {path}")
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            texts.append(str(json.loads(line)["text"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CliError(f"{path}:{number}: expected a JSON object with a 'text' field") from None
    return texts


def cmd_scrape(args) -> int:
    from monitoring.operational import ScrapeError, emf_lines, sample

    settings = Settings.from_env()
    out = Path(args.out) if args.out else monitoring_home(settings) / "operational.jsonl"
    try:
        series = sample(args.url, out, args.interval, args.count, progress=not args.quiet)
    except (ScrapeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    for row in series:
        print(f"{row['time']}  {row['Throughput']:.2f} req/s  p50 {row['LatencyP50']} ms  p99 {row['LatencyP99']} ms  "
              f"CPU {row['CPUUtilization']}%  RSS {row['MemoryRSS']} MB")
    if args.emf:
        for line in emf_lines(series, {"EndpointName": args.endpoint or "local"}):
            print(line)
    print(f"snapshots appended to {out}")
    return 0


def _add_window_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=_time_arg, help="start of the monitored period (ISO 8601, UTC when no zone)")
    p.add_argument("--until", type=_time_arg, help="end of the monitored period (exclusive)")


def _add_source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--capture-dir", help="data-capture directory (default $MLOPS_HOME/capture)")
    p.add_argument("--endpoint", help="read only <capture-dir>/<endpoint>")
    p.add_argument("--baseline-dir", help="directory with evaluation.json (+ statistics.json, score_baseline.npz); "
                                          "default: the latest Approved registry version")
    p.add_argument("--model-version", type=int, help="registry version whose evaluation is the baseline")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_job_flags(p: argparse.ArgumentParser) -> None:
    _add_window_flags(p)
    p.add_argument("--window", type=_duration_arg, help="also judge each window of this size (e.g. 1h, 30m)")
    _add_source_flags(p)
    p.add_argument("--ground-truth-dir", help="ingested ground truth (default $MLOPS_HOME/monitoring/ground_truth)")
    p.add_argument("--output-dir", help="where results go (default $MLOPS_HOME/monitoring/output)")
    p.add_argument("--config", help="JSON file of MonitorConfig settings (flags override it)")
    p.add_argument("--fail-on-violation", action="store_true", help="exit with status 1 when a violation is found")
    add_dataclass_arguments(p, MonitorConfig, human=True)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "monitor", help="model quality, drift and operational monitoring of the served model",
        description=__doc__.split("\n\n")[0],
    )
    sub = parser.add_subparsers(dest="monitor_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("ground-truth", help="ingest true labels keyed by inference id",
                       description="Ingest labels: SageMaker ground-truth JSONL, JSONL {inference_id, labels} or "
                                   "CSV inference_id,labels (labels joined by ';'). Stored SageMaker-style by receive hour.")
    p.add_argument("file", help="the labels file")
    p.add_argument("--format", default="auto", choices=("auto", "sagemaker", "jsonl", "csv"))
    p.add_argument("--received-at", type=_time_arg, help="when the labels arrived (default now; decides lateness)")
    p.add_argument("--store", help="ground-truth store (default $MLOPS_HOME/monitoring/ground_truth)")
    p.add_argument("--baseline-dir", help="check label names against this baseline's labels")
    p.add_argument("--model-version", type=int, help="check label names against this registry version")
    p.add_argument("--no-label-check", action="store_true", help="do not look up the model's label names")
    p.set_defaults(func=cmd_ground_truth)

    p = sub.add_parser("run", help="merge capture with ground truth; quality, drift and violations")
    _add_job_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="run the job and write report.html + report.json + PNG charts")
    _add_job_flags(p)
    p.add_argument("--operational", help="scraped /metrics snapshots (default $MLOPS_HOME/monitoring/operational.jsonl)")
    p.add_argument("--from-existing", action="store_true", help="render the last job's results without re-running it")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("baseline", help="store reference score distributions for score-drift checks")
    _add_window_flags(p)
    _add_source_flags(p)
    p.add_argument("--model", help="score --data with this model (directory or model.tar.gz) instead of using capture")
    p.add_argument("--data", help="data.jsonl of reference texts for --model")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("scrape", help="sample the model server's Prometheus /metrics over time")
    p.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8080/metrics")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between scrapes")
    p.add_argument("--count", type=int, default=12, help="number of scrapes (>= 2)")
    p.add_argument("--out", help="snapshot file (default $MLOPS_HOME/monitoring/operational.jsonl)")
    p.add_argument("--emf", action="store_true", help="also print CloudWatch EMF lines")
    p.add_argument("--endpoint", help="EndpointName dimension of the EMF lines")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_scrape)
