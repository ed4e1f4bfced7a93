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


def _time_axis(ax, times: Sequence[datetime], pad: timedelta) -> None:
    """Dates that fit the span (ConciseDateFormatter), and the data's span padded by `pad` on both sides: one
    point gets an axis of about 2 x `pad` around it instead of matplotlib's default of years."""
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if times:
        ax.set_xlim(min(times) - pad, max(times) + pad)


def _step(times: Sequence[datetime]) -> timedelta:
    """The typical spacing of the points (their median gap), one minute for a single point."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    return gaps[len(gaps) // 2] if gaps else timedelta(minutes=1)


def with_gaps(times: Sequence[datetime], values: Sequence[float], gap_before: Sequence[bool]) -> tuple[list, list]:
    """The points with a NaN inserted before each point that follows a time without data: a line is not drawn
    across it (an idle endpoint is a gap, not a straight line between two busy minutes)."""
    out_t: list[datetime] = []
    out_v: list[float] = []
    for i, (t, v) in enumerate(zip(times, values)):
        if i and gap_before[i]:
            out_t.append(times[i - 1] + (t - times[i - 1]) / 2)
            out_v.append(math.nan)
        out_t.append(t)
        out_v.append(v)
    return out_t, out_v


def gaps(rows: Sequence[dict], times: Sequence[datetime], step: timedelta) -> list[bool]:
    """Where data is missing before each row: a scraped interval (its `seconds`) that does not start where the
    previous one ended, else more than 1.5 x `step` since the previous point (capture buckets, windows)."""
    out = [False]
    for row, t_prev, t in zip(rows[1:], times, times[1:]):
        if row.get("seconds") is not None:
            out.append((t - timedelta(seconds=row["seconds"]) - t_prev).total_seconds() > 1.0)
        else:
            out.append(t - t_prev > step * 1.5)
    return out


def _finish(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_quality_over_time(windows: Sequence[dict], baseline: dict, path: Path) -> Path | None:
    """Macro F1 and ROC AUC per window (at the window's middle), with the baseline values as dashed lines."""
    rows = [w for w in windows if w.get("quality", {}).get("status") in ("ok", "violation")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    starts, ends = _times(rows, "start"), _times(rows, "end")
    middles = [a + (b - a) / 2 for a, b in zip(starts, ends)]
    breaks = [False] + [a > b for a, b in zip(starts[1:], ends)]  # a window without enough labels between
    for name, color in (("f1_macro", "tab:blue"), ("roc_auc_macro", "tab:orange")):
        values = [w["quality"]["report"]["multilabel_classification_metrics"][name]["value"] for w in rows]
        ax.plot(*with_gaps(middles, [math.nan if v is None else v for v in values], breaks), "o-",
                color=color, label=name)
        if baseline.get(name) is not None:
            ax.axhline(baseline[name], color=color, linestyle="--", alpha=0.6, label=f"baseline {name}")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("score")
    ax.set_title("Model quality per window")
    ax.legend(fontsize=8, loc="lower left")
    _time_axis(ax, middles, ends[0] - starts[0])
    return _finish(fig, path)


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
    return _finish(fig, path)


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
    return _finish(fig, path)


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
    return _finish(fig, path)


def plot_panels(rows: Sequence[dict], panels: Sequence[tuple[str, Sequence[tuple[str, str]]]], title: str,
                path: Path) -> Path | None:
    """Series over time, one panel per unit: `panels` is [(y-axis label, [(field, line label), ...]), ...];
    lines of one unit share their panel's axis (p50/p90/p99 on one scale), panels share the time axis,
    and lines break where the data stops (`with_gaps`)."""
    panels = [(unit, [k for k in keys if any(r.get(k[0]) is not None for r in rows)]) for unit, keys in panels]
    panels = [(unit, keys) for unit, keys in panels if keys]
    if not rows or not panels:
        return None
    times = _times(rows)
    step = _step(times)
    breaks = gaps(rows, times, step)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.2 + 2.3 * len(panels)), sharex=True, squeeze=False)
    for ax, (unit, keys) in zip(axes[:, 0], panels):
        top = 0.0
        for (key, label), color in zip(keys, ("tab:blue", "tab:orange", "tab:red", "tab:green")):
            values = [math.nan if r.get(key) is None else r[key] for r in rows]
            ax.plot(*with_gaps(times, values, breaks), "o-" if len(rows) < 40 else "-", color=color, label=label,
                    markersize=3)
            top = max([top, *(v for v in values if not math.isnan(v))])
        ax.set_ylabel(unit)
        ax.set_ylim(0, top * 1.15 or 1.0)  # from zero, with room above the highest point
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_title(title)
    _time_axis(axes[-1, 0], times, step)
    return _finish(fig, path)
