"""PNG charts of the monitoring report that mlcore.plots does not cover: metrics, drift and
operational series over time, and the latency histogram."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def _times(rows: Sequence[dict], key: str = "time") -> list[datetime]:
    return [datetime.fromisoformat(r[key].replace("Z", "+00:00")) for r in rows]


def _finish(fig, ax, path: Path) -> Path:
    if hasattr(ax, "xaxis") and isinstance(ax.xaxis.get_major_formatter(), mdates.AutoDateFormatter):
        fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_quality_over_time(windows: Sequence[dict], baseline: dict, path: Path) -> Path | None:
    """Macro F1 and ROC AUC per window, with the baseline values as dashed lines."""
    rows = [w for w in windows if w.get("quality", {}).get("status") in ("ok", "violation")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    starts = _times(rows, "start")
    for name, color in (("f1_macro", "tab:blue"), ("roc_auc_macro", "tab:orange")):
        values = [w["quality"]["report"]["multilabel_classification_metrics"][name]["value"] for w in rows]
        ax.plot(starts, [math.nan if v is None else v for v in values], "o-", color=color, label=name)
        if baseline.get(name) is not None:
            ax.axhline(baseline[name], color=color, linestyle="--", alpha=0.6, label=f"baseline {name}")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("score")
    ax.set_title("Model quality per window")
    ax.legend(fontsize=8, loc="lower left")
    return _finish(fig, ax, path)


def plot_rates(rate_check: dict, path: Path) -> Path | None:
    """Predicted label rates: baseline vs observed, drifted labels in red."""
    per_label = rate_check.get("per_label")
    if not per_label:
        return None
    names = list(per_label)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 3.5))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [per_label[n]["expected"] for n in names], 0.4, label="baseline", color="tab:gray")
    ax.bar([i + 0.2 for i in x], [per_label[n]["observed"] for n in names], 0.4, label="observed",
           color=["tab:red" if per_label[n]["drifted"] else "tab:blue" for n in names])
    ax.set_xticks(list(x), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("share of texts predicted")
    ax.set_title("Predicted label rates (red: drifted)")
    ax.legend(fontsize=8)
    return _finish(fig, ax, path)


def plot_score_psi(score_check: dict, threshold: float, path: Path) -> Path | None:
    """PSI of each label's probability distribution against the reference, with the alarm level."""
    per_label = score_check.get("per_label")
    if not per_label:
        return None
    names = list(per_label)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 3.5))
    ax.bar(names, [per_label[n]["psi"] for n in names],
           color=["tab:red" if per_label[n]["drifted"] else "tab:blue" for n in names])
    ax.axhline(threshold, color="black", linestyle="--", label=f"PSI limit {threshold}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("PSI")
    ax.set_title("Score distribution drift per label")
    ax.legend(fontsize=8)
    return _finish(fig, ax, path)


def plot_latency_histogram(buckets: dict[float, float], path: Path) -> Path | None:
    """Requests per latency bucket (from the cumulative Prometheus histogram)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    counts, prev = [], 0.0
    for b in bounds:
        counts.append(buckets[b] - prev)
        prev = buckets[b]
    labels = [f"<={b * 1000:g}ms" if not math.isinf(b) else "more" for b in bounds]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(bounds)), 3.5))
    ax.bar(labels, counts, color="tab:purple")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("requests")
    ax.set_title("Request latency histogram")
    return _finish(fig, ax, path)


def plot_series(rows: Sequence[dict], keys: Sequence[tuple[str, str]], title: str, path: Path) -> Path | None:
    """Lines of `keys` ((field, axis label) pairs; up to two axes) over time."""
    rows = [r for r in rows if any(r.get(k) is not None for k, _ in keys)]
    if not rows:
        return None
    times = _times(rows)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    axes = [ax, ax.twinx()] if len(keys) > 1 else [ax]
    colors = ("tab:blue", "tab:red", "tab:green")
    for (key, label), axis, color in zip(keys, axes, colors):
        values = [math.nan if r.get(key) is None else r[key] for r in rows]
        axis.plot(times, values, "o-" if len(rows) < 30 else "-", color=color, label=label, markersize=3)
        axis.set_ylabel(label, color=color)
    if len(times) == 1:  # one point: a short span around it instead of years of empty axis
        ax.set_xlim(times[0] - timedelta(minutes=1), times[0] + timedelta(minutes=1))
    ax.set_title(title)
    return _finish(fig, ax, path)
