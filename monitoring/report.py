"""Render a monitoring job's output as report.html + report.json with PNG charts beside them.

Reads monitoring.json + merged.jsonl (written by monitoring.job) and, optionally, the
operational snapshots scraped from the model server's /metrics.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from monitoring import plots
from monitoring.config import iso
from monitoring.job import load_merged, load_result
from monitoring.operational import capture_throughput, load_series, load_snapshots, nice_bucket, period_latency

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
HEADLINE = ("f1_macro", "f1_micro", "roc_auc_macro", "roc_auc_micro", "precision_macro", "recall_macro",
            "subset_accuracy", "hamming_loss")


def _arrays(rows: list[dict], label_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y_true, y_prob, y_pred of the labelled merged rows."""
    labelled = [r for r in rows if r.get("labels") is not None]
    index = {n: j for j, n in enumerate(label_names)}
    y_true = np.zeros((len(labelled), len(label_names)), dtype=np.int8)
    y_pred = np.zeros_like(y_true)
    for i, r in enumerate(labelled):
        for n in r["labels"]:
            y_true[i, index[n]] = 1
        for n in r["predicted"]:
            y_pred[i, index[n]] = 1
    y_prob = np.asarray([r["probabilities"] for r in labelled], dtype=np.float32).reshape(len(labelled), len(label_names))
    return y_true, y_prob, y_pred


def _quality_plots(rows, label_names, out: Path, made: dict) -> None:
    """Per-label confusion matrices and ROC curves through mlcore.metrics + mlcore.plots (shared code)."""
    from mlcore import plots as core_plots
    from mlcore.metrics import roc_curves
    from monitoring.job import load_result

    result = load_result(out)
    quality = result["overall"].get("quality", {})
    if quality.get("status") not in ("ok", "violation"):
        return
    made["confusion_matrices"] = core_plots.plot_confusion_matrices(quality["report"], out / "confusion_matrices.png")
    y_true, y_prob, _ = _arrays(rows, label_names)
    curves = roc_curves(y_true, y_prob, label_names)
    if curves:
        made["roc_curves"] = core_plots.plot_roc_curves(curves, out / "roc_curves.png")


def _capture_series(rows: list[dict], bucket: timedelta | None) -> tuple[list[dict], timedelta]:
    """Requests and texts per second from the capture (each request counted once, at its first text)."""
    first_of_request: dict[str, tuple[datetime, int]] = {}
    for r in rows:
        first_of_request.setdefault(r["event_id"], (datetime.fromisoformat(r["time"].replace("Z", "+00:00")),
                                                    r["batch_size"]))
    times = [t for t, _ in first_of_request.values()]
    bucket = bucket or nice_bucket(times)
    return capture_throughput(times, [b for _, b in first_of_request.values()], bucket), bucket


def _rates(series: list[dict]) -> list[tuple[str, str]]:
    """The per-second lines worth drawing: texts/s only when some request carried more than one text."""
    if all(r.get("TextsPerSecond") == r.get("Throughput") for r in series):
        return [("Throughput", "requests/s (one text each)")]
    return [("Throughput", "requests/s"), ("TextsPerSecond", "texts/s")]


def _operational_tasks(out: Path, op_series: list[dict], op_period: dict, made: dict) -> list:
    """Charts of the scraped server metrics: latency histogram and percentiles, throughput, CPU, memory."""
    def chart(key: str, panels, title: str):
        return (key, lambda: made.__setitem__(key, plots.plot_panels(op_series, panels, title, out / f"{key}.png")))

    return [
        ("latency_histogram", lambda: made.__setitem__("latency_histogram", plots.plot_latency_histogram(
            op_period["buckets"], out / "latency_histogram.png"))),
        chart("latency_over_time", [("latency (ms)", [("LatencyP50", "p50"), ("LatencyP90", "p90"),
                                                      ("LatencyP99", "p99")])], "Latency (server metrics)"),
        chart("throughput_over_time", [("per second", _rates(op_series))], "Throughput (server metrics)"),
        chart("resources_over_time", [("CPU (% of one core)", [("CPUUtilization", "CPU")]),
                                       ("memory RSS (MB)", [("MemoryRSS", "RSS")])],
              "CPU and memory of the model server"),
    ]


def build_report(output_dir: str | Path, operational: str | Path | None = None,
                 throughput_bucket: timedelta | None = None, progress: bool = False) -> dict:
    """Write report.html, report.json and PNGs into output_dir (where the job's files are); returns report.json.

    `throughput_bucket` None picks a bucket that fits the traffic's span (`nice_bucket`)."""
    out = Path(output_dir)
    if not (out / "monitoring.json").is_file():
        raise FileNotFoundError(f"{out / 'monitoring.json'} not found: run `mlops monitor run` first (same --output-dir)")
    result = load_result(out)
    rows = load_merged(out)
    label_names = result["baseline"]["labels"]
    made: dict[str, Path | None] = {}
    tasks: list[tuple[str, Callable[[], Any]]] = [
        ("quality plots", lambda: _quality_plots(rows, label_names, out, made)),
        ("quality over time", lambda: made.__setitem__(
            "quality_over_time", plots.plot_quality_over_time(result["windows"], result["baseline"]["metrics"], out / "quality_over_time.png"))),
    ]
    drift = result["overall"].get("drift", {})
    if isinstance(drift.get("predicted_rates"), dict):
        tasks.append(("rates", lambda: made.__setitem__("predicted_rates", plots.plot_rates(drift["predicted_rates"], out / "predicted_rates.png"))))
    if isinstance(drift.get("scores"), dict):
        tasks.append(("score psi", lambda: made.__setitem__(
            "score_psi", plots.plot_score_psi(drift["scores"], result["config"]["psi_threshold"], out / "score_psi.png"))))
    capture_series, bucket = _capture_series(rows, throughput_bucket)
    tasks.append(("capture throughput", lambda: made.__setitem__("capture_throughput", plots.plot_panels(
        capture_series, [("per second", _rates(capture_series))],
        f"Throughput from capture ({int(bucket.total_seconds())} s buckets)", out / "capture_throughput.png"))))
    op_series, op_period = [], None
    if operational and Path(operational).is_file():
        op_series = load_series(operational)
        op_period = period_latency(load_snapshots(operational))
        tasks += _operational_tasks(out, op_series, op_period, made)
    iterator = tasks
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(tasks, desc="report", unit="chart")
    for _, task in iterator:
        task()
    images = {k: v.name for k, v in made.items() if v is not None}
    doc = {
        "generated_at": iso(datetime.now(timezone.utc)),
        "status": result["status"],
        "window": result["window"],
        "violations": result["violations"],
        "baseline": result["baseline"],
        "overall": _summary(result["overall"]),
        "windows": [_summary(w) for w in result["windows"]],
        "data": {"capture": result["capture"], "ground_truth": result["ground_truth"]},
        "drift": drift,
        "operational": {
            "capture_throughput": capture_series,
            "server": {"period": _server_period(op_period, op_series), "series": op_series},
        },
        "images": images,
    }
    doc["health"] = health(doc, result)
    (out / REPORT_JSON).write_text(json.dumps(doc, indent=2, default=str))
    (out / REPORT_HTML).write_text(render_html(doc, result), encoding="utf-8")
    return doc


def _server_period(period: dict | None, series: list[dict]) -> dict | None:
    """Latency percentiles over the whole scraped period, with errors, mean CPU and peak memory of its intervals."""
    if not period or not period.get("requests"):
        return None
    summary = {k: v for k, v in period.items() if k != "buckets"}
    cpu = [r["CPUUtilization"] for r in series if r.get("CPUUtilization") is not None]
    rss = [r["MemoryRSS"] for r in series if r.get("MemoryRSS") is not None]
    summary.update(Errors=sum(r.get("Errors") or 0 for r in series),
                   CPUUtilizationMean=round(sum(cpu) / len(cpu), 2) if cpu else None,
                   MemoryRSSMax=max(rss) if rss else None)
    return summary


def health(doc: dict, result: dict) -> dict:
    """One verdict per question (quality, drift, errors) and the operational numbers: "is the model healthy?"."""
    quality = result["overall"].get("quality", {})
    checks = {c["metric"]: c for c in quality.get("checks", [])}
    f1 = checks.get("f1_macro", {})
    if quality.get("status") in ("ok", "violation"):
        q = {"status": "attention" if quality["status"] == "violation" else "ok",
             "detail": f"macro F1 {_num(f1.get('current'))} on {result['overall']['labelled']} labelled text(s) "
                       f"(baseline {_num(f1.get('baseline'))})"}
    else:
        q = {"status": "unknown", "detail": quality.get("reason", "no labelled texts")}
    drift = doc["drift"]
    if isinstance(drift.get("status"), str):
        d = {"status": "unknown", "detail": drift.get("reason", "")}
    else:
        drifted = [k.replace("_", " ") for k, v in drift.items() if v.get("status") == "drift"]
        skipped = [k.replace("_", " ") for k, v in drift.items() if v.get("status") == "skipped"]
        d = {"status": "attention" if drifted else "ok",
             "detail": (f"drifted: {', '.join(drifted)}" if drifted else "no drift")
             + (f"; not checked: {', '.join(skipped)}" if skipped else "")}
    period = doc["operational"]["server"]["period"]
    if period:
        errors = int(period.get("Errors") or 0)
        ops = {"status": "attention" if errors else "ok",
               "detail": f"{int(period['requests'])} requests, {errors} errors; latency p50 {_num(period.get('LatencyP50'), 1)} / "
                         f"p90 {_num(period.get('LatencyP90'), 1)} / p99 {_num(period.get('LatencyP99'), 1)} ms; "
                         f"CPU {_num(period.get('CPUUtilizationMean'), 1)} % of one core (mean), memory "
                         f"{_num(period.get('MemoryRSSMax'), 0)} MB (peak)"}
    else:
        ops = {"status": "unknown", "detail": "no server metrics scraped (`mlops monitor scrape` while traffic runs)"}
    verdicts = [q["status"], d["status"], ops["status"]]
    overall = "attention" if "attention" in verdicts or doc["violations"] else "ok" if "unknown" not in verdicts else "partial"
    return {"status": overall, "quality": q, "drift": d, "operations": ops}


def _num(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _summary(window: dict) -> dict:
    """A window's counts, headline metrics, statuses and violations (no per-label detail)."""
    q = window.get("quality", {})
    metrics = q.get("report", {}).get("multilabel_classification_metrics", {})
    return {
        "start": window.get("start"), "end": window.get("end"), "texts": window.get("texts"),
        "labelled": window.get("labelled"), "quality_status": q.get("status"),
        "metrics": {k: metrics[k]["value"] for k in HEADLINE if k in metrics},
        "drift_status": {k: v.get("status") for k, v in window.get("drift", {}).items() if isinstance(v, dict)}
        if "status" not in window.get("drift", {}) else window["drift"]["status"],
        "violations": window.get("violations", []),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(images: dict, key: str, alt: str) -> str:
    if key not in images:
        return f'<p class="muted">No chart of {html.escape(alt.lower())}: no data for it (see the tables above).</p>'
    return f'<figure><img src="{html.escape(images[key])}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _quality_html(doc: dict, result: dict) -> list[str]:
    overall = result["overall"]
    labelled = overall.get("labelled", 0)
    parts = [f"<h2>Model quality ({labelled} labelled text{'' if labelled == 1 else 's'})</h2>"]
    quality = overall.get("quality", {})
    if quality.get("status") in ("ok", "violation"):
        metrics = quality["report"]["multilabel_classification_metrics"]
        base = result["baseline"]["metrics"]
        checks = {c["metric"]: c for c in quality["checks"]}
        parts.append(_table(["metric", "current", "± std", "baseline", "drop", "limit", "status"], [
            [m, metrics[m]["value"], metrics[m].get("standard_deviation"), base.get(m),
             checks.get(m, {}).get("drop"), checks.get(m, {}).get("limit"),
             ("VIOLATION" if checks[m]["violated"] else "ok") if m in checks else ""]
            for m in HEADLINE if m in metrics], "metrics"))
        per_label = metrics.get("per_label", {})
        parts.append("<h3>Per label</h3>" + _table(
            ["label", "precision", "recall", "f1", "roc_auc", "support", "tp", "fp", "fn", "threshold"],
            [[n, p.get("precision"), p.get("recall"), p.get("f1"), p.get("roc_auc"), p.get("support"), p.get("tp"),
              p.get("fp"), p.get("fn"), p.get("threshold")] for n, p in per_label.items()], "per-label"))
    else:
        parts.append(f"<p>Not judged: {html.escape(quality.get('reason', ''))}</p>")
    parts.append(_img(doc["images"], "confusion_matrices", "Per-label confusion matrices"))
    parts.append(_img(doc["images"], "roc_curves", "ROC curves"))
    if doc["windows"]:
        parts.append("<h2>Windows</h2>" + _table(
            ["start", "end", "texts", "labelled", "f1_macro", "roc_auc_macro", "quality", "drift", "violations"],
            [[w["start"], w["end"], w["texts"], w["labelled"], w["metrics"].get("f1_macro"),
              w["metrics"].get("roc_auc_macro"), w["quality_status"],
              w["drift_status"] if isinstance(w["drift_status"], str) else
              ", ".join(f"{k}: {v}" for k, v in w["drift_status"].items()), len(w["violations"])]
             for w in doc["windows"]], "windows"))
        parts.append(_img(doc["images"], "quality_over_time", "Model quality per window"))
    return parts


def _drift_html(doc: dict) -> list[str]:
    parts = ["<h2>Drift (no labels needed)</h2>"]
    drift = doc["drift"]
    if "status" in drift and isinstance(drift.get("status"), str):
        parts.append(f"<p>Not judged: {html.escape(drift.get('reason', ''))}</p>")
    else:
        parts.append(_table(["check", "status", "detail"], [
            [k, v.get("status"), v.get("reason") or ", ".join(v.get("drifted_labels", []))
             or (f"PSI {v['psi']}" if "psi" in v else "")] for k, v in drift.items()], "drift"))
        length = drift.get("input_length", {})
        if "observed" in length:
            parts.append(_table(["text length (chars)", "mean", "p50", "p95"], [
                ["training", length["expected"].get("mean"), length["expected"].get("p50"), length["expected"].get("p95")],
                ["observed", length["observed"]["mean"], length["observed"]["p50"], length["observed"]["p95"]]], "length"))
    parts.append(_img(doc["images"], "predicted_rates", "Predicted label rates"))
    parts.append(_img(doc["images"], "score_psi", "Score distribution drift"))
    return parts


def _operations_html(doc: dict) -> list[str]:
    parts = ["<h2>Operations</h2>"]
    period = doc["operational"]["server"]["period"]
    if period:
        parts.append(_table(["requests", "errors", "p50 ms", "p90 ms", "p99 ms", "CPU % (mean)", "RSS MB (peak)"],
                            [[int(period.get("requests") or 0), int(period.get("Errors") or 0), period.get("LatencyP50"),
                              period.get("LatencyP90"), period.get("LatencyP99"), period.get("CPUUtilizationMean"),
                              period.get("MemoryRSSMax")]], "latency"))
    else:
        parts.append('<p class="muted">No server metrics scraped (run <code>mlops monitor scrape</code> while the server runs).</p>')
    for key, alt in (("latency_over_time", "Latency over time"), ("latency_histogram", "Latency histogram"),
                     ("throughput_over_time", "Throughput (server metrics)"), ("resources_over_time", "CPU and memory"),
                     ("capture_throughput", "Throughput from capture")):
        if key in doc["images"] or key == "capture_throughput":
            parts.append(_img(doc["images"], key, alt))
    return parts


def _data_html(doc: dict) -> list[str]:
    parts = ["<h2>Data accounting</h2>" + _table(["what", "count"], _accounting(doc["data"]), "accounting")]
    cap, gt = doc["data"]["capture"], doc["data"]["ground_truth"]
    examples = cap.get("malformed_examples", []) + gt.get("rejected_examples", []) + [
        f"{kind}: {e}" for kind, items in gt.get("merge", {}).get("examples", {}).items() for e in items]
    if examples:
        parts.append("<details><summary>Examples of left-out records</summary><pre>"
                     + html.escape("\n".join(examples)) + "</pre></details>")
    return parts


def render_html(doc: dict, result: dict) -> str:
    """The report as one self-contained HTML page (images referenced beside it): the verdict first."""
    status = doc["status"]
    parts = [f"<h1>Model monitoring report</h1><p>Generated {doc['generated_at']} · window "
             f"{_fmt(doc['window']['since'] or doc['overall']['start'])} → {_fmt(doc['window']['until'] or doc['overall']['end'])} · status "
             f'<span class="status {status}">{html.escape(status)}</span></p>']
    parts.append(_health_html(doc["health"]))
    parts.append("<h2>Violations</h2>")
    if doc["violations"]:
        parts.append(_table(["window", "check", "metric", "description"],
                            [[v.get("window"), v["constraint_check_type"], v["metric_name"], v["description"]] for v in doc["violations"]], "violations"))
    else:
        parts.append("<p>No violations.</p>")
    parts += _quality_html(doc, result) + _drift_html(doc) + _operations_html(doc) + _data_html(doc)
    style = (".health{border:2px solid #ccc;border-radius:6px;padding:.4em 1em;margin:1em 0}.health.ok{border-color:#070}"
             ".health.attention{border-color:#b00}.health td:first-child{font-weight:bold}.health td{text-align:left}"
             ".verdict.ok{color:#070}.verdict.attention{color:#b00;font-weight:bold}.verdict.unknown{color:#888}"
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;"
             "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
             "th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}"
             ".status.ok{color:#070}.status.violations{color:#b00;font-weight:bold}.muted{color:#888}")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Model monitoring report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


HEALTH_WORDS = {"ok": "Healthy", "attention": "Needs attention", "partial": "Healthy as far as measured",
                "unknown": "not measured"}


def _health_html(health_doc: dict) -> str:
    """The answer to "is the model healthy?" first: one verdict and one line per question."""
    rows = "".join(
        f'<tr><td>{name}</td><td class="verdict {health_doc[key]["status"]}">'
        f'{html.escape({"ok": "ok", "attention": "attention"}.get(health_doc[key]["status"], "not measured"))}</td>'
        f"<td>{html.escape(health_doc[key]['detail'])}</td></tr>"
        for name, key in (("Quality", "quality"), ("Drift", "drift"), ("Operations", "operations")))
    status = health_doc["status"]
    return (f'<section class="health {status}"><h2>Is the model healthy? <span class="verdict {status}">'
            f"{HEALTH_WORDS[status]}</span></h2><table>{rows}</table></section>")


def _accounting(data: dict) -> list[list[Any]]:
    """Where every captured text and ground-truth line went, each count once."""
    cap, gt = data["capture"], data["ground_truth"]
    merge_counts = dict(gt.get("merge", {}).get("counts", {}))
    for shown in ("captured_texts", "ground_truth_records"):  # = texts in window - duplicates, = records
        merge_counts.pop(shown, None)
    return [
        ["capture files", cap["files"]], ["capture lines", cap["lines"]], ["malformed capture lines", cap["malformed_lines"]],
        ["texts in window", cap["texts"]], ["texts outside window", cap["outside_window"]],
        ["texts whose labels differ from the baseline", cap["label_mismatch"]],
        ["served labels differing from baseline thresholds", cap["served_predictions_differ"]],
        ["ground-truth records", gt.get("records")], ["rejected ground-truth lines", gt.get("rejected_lines", 0)],
        *[[k.replace("_", " "), v] for k, v in sorted(merge_counts.items())],
    ]
