"""The monitoring job: capture + ground truth -> quality and drift per time window, with violations.

Same code locally (`mlops monitor run`) and as a SageMaker processing job
(`monitoring/monitor_job.py`). Writes `monitoring.json` (everything), `constraint_violations.json`
(SageMaker's name for the alarms) and `merged.jsonl` (one scored text a line, for the report).
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlcore.predictor import decide
from monitoring import drift
from monitoring.baseline import Baseline, length_reference, load_baseline
from monitoring.capture import CapturedText, read_capture
from monitoring.config import MonitorConfig, iso
from monitoring.ground_truth import load_ground_truth
from monitoring.merge import merge

RESULT_FILE = "monitoring.json"
VIOLATIONS_FILE = "constraint_violations.json"
MERGED_FILE = "merged.jsonl"
QUALITY_CHECKS = (("f1_macro", "max_f1_macro_drop"), ("roc_auc_macro", "max_roc_auc_macro_drop"))


def align(texts: Sequence[CapturedText], label_names: Sequence[str]) -> tuple[list[CapturedText], np.ndarray, list[str]]:
    """Texts whose probabilities cover every baseline label, as an (n, L) matrix; the rest by id."""
    kept, rows, mismatched = [], [], []
    for t in texts:
        try:
            rows.append([t.probabilities[name] for name in label_names])
        except KeyError:
            mismatched.append(t.inference_id)
            continue
        kept.append(t)
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(kept), len(label_names))
    return kept, matrix, mismatched


def window_bounds(times: Sequence[datetime], window: timedelta | None, since: datetime | None,
                  until: datetime | None) -> list[tuple[datetime, datetime]]:
    """Consecutive [start, end) windows covering the texts; aligned to `since` or to the epoch."""
    if not times:
        return []
    first, last = min(times), max(times)
    if window is None:
        return [(since or first, until or (last + timedelta(microseconds=1)))]
    start = since
    if start is None:
        step = window.total_seconds()
        start = datetime.fromtimestamp(math.floor(first.timestamp() / step) * step, timezone.utc)
    bounds = []
    while start <= last and (until is None or start < until):
        bounds.append((start, min(start + window, until) if until else start + window))
        start += window
    return bounds


def quality(y_true: np.ndarray, y_prob: np.ndarray, baseline: Baseline, config: MonitorConfig) -> dict:
    """mlcore.metrics.multilabel_report of the labelled texts (the one metrics implementation)."""
    from mlcore.metrics import multilabel_report

    return multilabel_report(y_true, y_prob, baseline.thresholds, baseline.label_names,
                             bootstrap=config.bootstrap, seed=config.seed)


def quality_checks(report: dict, baseline: Baseline, config: MonitorConfig) -> list[dict]:
    """One entry per configured metric: baseline, current, drop, limit and whether it is violated."""
    metrics = report.get("multilabel_classification_metrics", {})
    checks = []
    for name, limit_field in QUALITY_CHECKS:
        limit = getattr(config, limit_field)
        base = baseline.metric(name)
        current = (metrics.get(name) or {}).get("value")
        if base is None or current is None:
            checks.append({"metric": name, "baseline": base, "current": current, "limit": limit, "violated": False,
                           "note": "undefined (no positives or baseline lacks it): not judged"})
            continue
        drop = base - current
        checks.append({"metric": name, "baseline": base, "current": current, "drop": round(drop, 6),
                       "limit": limit, "violated": bool(drop > limit)})
    return checks


def drift_checks(probs: np.ndarray, predicted: np.ndarray, lengths: np.ndarray, baseline: Baseline,
                 config: MonitorConfig) -> dict:
    """Rate, score and length drift of one window; a check without a reference says why it was skipped."""
    out: dict[str, Any] = {}
    expected, source = baseline.expected_predicted_rates()
    if expected is None:
        out["predicted_rates"] = {"status": "skipped", "reason": source}
    else:
        out["predicted_rates"] = {**drift.rate_drift(predicted, expected, baseline.label_names, config), "reference": source}
    if baseline.reference_scores is None:
        out["scores"] = {"status": "skipped",
                         "reason": "no score_baseline.npz in the baseline (create one with `mlops monitor baseline`)"}
    else:
        out["scores"] = drift.score_drift(baseline.reference_scores, probs, baseline.label_names, config)
    reference = length_reference(baseline.statistics)
    if reference is None:
        out["input_length"] = {"status": "skipped",
                               "reason": "no statistics.json with character length stats (p50, p95) in the baseline"}
    else:
        out["input_length"] = drift.length_drift(lengths, reference, config)
    return out


def evaluate_window(texts, probs, predicted, labels: dict, baseline: Baseline, config: MonitorConfig,
                    start: datetime | None, end: datetime | None) -> dict:
    """Quality (when enough labels) and drift (when enough texts) of one window, plus its violations."""
    n = len(texts)
    lengths = np.asarray([len(t.text) for t in texts], dtype=np.float64)
    idx = np.asarray([i for i, t in enumerate(texts) if t.inference_id in labels], dtype=np.int64)
    result: dict[str, Any] = {"start": iso(start), "end": iso(end), "texts": n, "labelled": int(len(idx)),
                              "requests": len({t.event_id for t in texts}), "violations": []}
    if len(idx) >= config.min_labelled_samples:
        y_true = np.zeros((len(idx), len(baseline.label_names)), dtype=np.int8)
        position = {name: j for j, name in enumerate(baseline.label_names)}
        for row, i in enumerate(idx):
            for name in labels[texts[i].inference_id]:
                y_true[row, position[name]] = 1
        report = quality(y_true, probs[idx], baseline, config)
        checks = quality_checks(report, baseline, config)
        result["quality"] = {"status": "violation" if any(c["violated"] for c in checks) else "ok",
                             "report": report, "checks": checks}
        for c in checks:
            if c["violated"]:
                result["violations"].append({
                    "constraint_check_type": "baseline_drop_check", "metric_name": c["metric"],
                    "description": f"{c['metric']} {c['current']:.4f} is {c['drop']:.4f} below the baseline "
                                   f"{c['baseline']:.4f} (limit {c['limit']})",
                })
    else:
        result["quality"] = {"status": "insufficient_labels",
                             "reason": f"{len(idx)} labelled text(s), at least {config.min_labelled_samples} needed"}
    if n >= config.min_drift_samples:
        checks = drift_checks(probs, predicted, lengths, baseline, config)
        result["drift"] = checks
        for kind, check in checks.items():
            if check.get("status") == "drift":
                what = ", ".join(check.get("drifted_labels", [])) or f"PSI {check.get('psi')}"
                result["violations"].append({"constraint_check_type": f"{kind}_drift_check", "metric_name": kind,
                                             "description": f"{kind.replace('_', ' ')} drifted: {what}"})
    else:
        result["drift"] = {"status": "insufficient_data",
                           "reason": f"{n} text(s), at least {config.min_drift_samples} needed"}
    return result


def run_monitoring(
    capture: str | Path, ground_truth: str | Path | None, baseline_dir: str | Path, output_dir: str | Path,
    since: datetime | None = None, until: datetime | None = None, window: timedelta | None = None,
    config: MonitorConfig | None = None, progress: bool = False,
) -> dict:
    """Run the whole job and write its files into output_dir; returns the monitoring.json document."""
    config = config or MonitorConfig()
    baseline = load_baseline(baseline_dir)
    label_names = baseline.label_names
    texts, capture_stats, outside = read_capture(capture, since, until, progress=progress)
    records, gt_stats = load_ground_truth(ground_truth, label_names) if ground_truth else ([], None)
    merged = merge(texts, records, label_names, config, outside)
    kept, probs, mismatched = align(merged.texts, label_names)
    predicted = decide(probs, baseline.thresholds) if len(kept) else np.zeros((0, len(label_names)), np.int8)
    served_differs = _served_mismatches(kept, predicted, label_names)

    bounds = window_bounds([t.time for t in kept], window, since, until)
    windows = []
    iterator = bounds if window is not None else []
    if progress and len(bounds) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(bounds, desc="windows", unit="window")
    times = np.asarray([t.time.timestamp() for t in kept])
    for start, end in iterator:
        sel = np.nonzero((times >= start.timestamp()) & (times < end.timestamp()))[0]
        windows.append(evaluate_window([kept[i] for i in sel], probs[sel], predicted[sel], merged.labels,
                                       baseline, config, start, end))
    overall = evaluate_window(kept, probs, predicted, merged.labels, baseline, config,
                              since or (bounds[0][0] if bounds else None), until or (bounds[-1][1] if bounds else None))
    violations = [{**v, "window": "overall"} for v in overall["violations"]]
    if window is not None:
        for w in windows:
            violations.extend({**v, "window": f"{w['start']}/{w['end']}"} for v in w["violations"])

    document = {
        "generated_at": iso(datetime.now(timezone.utc)),
        "window": {"since": iso(since), "until": iso(until), "size_seconds": window.total_seconds() if window else None},
        "config": config.to_dict(),
        "baseline": {"labels": label_names, "thresholds": [float(x) for x in baseline.thresholds],
                     "sources": baseline.sources,
                     "metrics": {name: baseline.metric(name) for name, _ in QUALITY_CHECKS}},
        "capture": {**capture_stats.to_dict(), "label_mismatch": len(mismatched),
                    "label_mismatch_examples": mismatched[:20], "served_predictions_differ": served_differs},
        "ground_truth": {**(gt_stats.to_dict() if gt_stats else {"records": 0, "note": "no ground truth given"}),
                         "merge": merged.to_dict()},
        "overall": overall,
        "windows": windows if window is not None else [],
        "violations": violations,
        "status": "violations" if violations else "ok",
    }
    write_outputs(output_dir, document, kept, probs, predicted, merged.labels, label_names)
    return document


def _served_mismatches(texts: Sequence[CapturedText], predicted: np.ndarray, label_names: Sequence[str]) -> int:
    """Texts whose served labels differ from the baseline thresholds' decisions (a threshold mismatch)."""
    count = 0
    for t, row in zip(texts, predicted):
        if t.predicted is not None and set(t.predicted) != {n for n, v in zip(label_names, row) if v}:
            count += 1
    return count


def write_outputs(output_dir, document, texts, probs, predicted, labels, label_names) -> None:
    """monitoring.json, constraint_violations.json and merged.jsonl into output_dir."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RESULT_FILE).write_text(json.dumps(document, indent=2, default=_json_default))
    (output_dir / VIOLATIONS_FILE).write_text(json.dumps({"violations": document["violations"]}, indent=2))
    with open(output_dir / MERGED_FILE, "w", encoding="utf-8") as fh:
        for t, p, d in zip(texts, probs, predicted):
            fh.write(json.dumps({
                "inference_id": t.inference_id, "event_id": t.event_id, "time": iso(t.time), "length": len(t.text),
                "batch_size": t.batch_size, "probabilities": [round(float(x), 6) for x in p],
                "predicted": [n for n, v in zip(label_names, d) if v],
                "labels": list(labels[t.inference_id]) if t.inference_id in labels else None,
            }) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_merged(output_dir: str | Path) -> list[dict]:
    """The merged.jsonl rows a job wrote."""
    path = Path(output_dir) / MERGED_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_result(output_dir: str | Path) -> dict:
    return json.loads((Path(output_dir) / RESULT_FILE).read_text(encoding="utf-8"))


__all__ = ["run_monitoring", "load_result", "load_merged", "load_baseline"]
