"""Drift without labels: predicted label rates, score distributions (PSI + KS) and input length.

A check is flagged only when the effect is large (PSI / rate delta over its limit) AND
statistically significant (KS / binomial p-value under alpha, Bonferroni over labels), so
small windows of unchanged traffic do not raise false alarms.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from monitoring.config import MonitorConfig

EPS = 1e-4


def psi(expected: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index of two proportion vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    o = np.clip(np.asarray(observed, dtype=np.float64), EPS, None)
    e, o = e / e.sum(), o / o.sum()
    return float(np.sum((o - e) * np.log(o / e)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (duplicates removed)."""
    qs = np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Proportion of values per bin; bins are (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(1, len(values))


def score_drift(reference: np.ndarray, window: np.ndarray, label_names: Sequence[str], config: MonitorConfig) -> dict:
    """Per label: PSI on reference-quantile bins and the two-sample KS test of probabilities."""
    alpha = config.drift_alpha / max(1, len(label_names))
    per_label = {}
    for j, name in enumerate(label_names):
        ref, cur = reference[:, j], window[:, j]
        edges = quantile_edges(ref, config.psi_bins)
        value = psi(binned(ref, edges), binned(cur, edges))
        ks = stats.ks_2samp(ref, cur)
        drifted = bool(value > config.psi_threshold and ks.pvalue < alpha)
        per_label[name] = {"psi": round(value, 6), "ks_statistic": round(float(ks.statistic), 6),
                           "ks_pvalue": float(ks.pvalue), "drifted": drifted}
    flagged = [n for n, r in per_label.items() if r["drifted"]]
    return {"status": "drift" if flagged else "ok", "drifted_labels": flagged, "per_label": per_label,
            "reference_rows": int(len(reference)), "rows": int(len(window))}


def rate_drift(predicted: np.ndarray, expected: dict[str, float], label_names: Sequence[str], config: MonitorConfig) -> dict:
    """Per label: observed predicted-positive rate vs the baseline's, with an exact binomial test."""
    n = int(len(predicted))
    alpha = config.drift_alpha / max(1, len(label_names))
    per_label = {}
    for j, name in enumerate(label_names):
        k = int(predicted[:, j].sum())
        p = float(min(1.0, max(0.0, expected[name])))
        pvalue = float(stats.binomtest(k, n, p).pvalue) if n else 1.0
        observed = k / n if n else 0.0
        drifted = bool(abs(observed - p) > config.max_rate_delta and pvalue < alpha)
        per_label[name] = {"expected": round(p, 6), "observed": round(observed, 6), "pvalue": pvalue, "drifted": drifted}
    flagged = [n_ for n_, r in per_label.items() if r["drifted"]]
    return {"status": "drift" if flagged else "ok", "drifted_labels": flagged, "per_label": per_label, "rows": n}


def length_drift(lengths: np.ndarray, reference: dict, config: MonitorConfig) -> dict:
    """Text length (chars) vs training: PSI over bins [0, p50], (p50, p95], (p95, inf) expected 50/45/5%."""
    lengths = np.asarray(lengths, dtype=np.float64)
    p50, p95 = float(reference["p50"]), float(reference["p95"])
    observed = np.array([(lengths <= p50).mean(), ((lengths > p50) & (lengths <= p95)).mean(), (lengths > p95).mean()])
    expected = np.array([0.5, 0.45, 0.05])
    value = psi(expected, observed)
    # Chi-square goodness of fit on the same bins decides significance.
    counts = observed * len(lengths)
    pvalue = float(stats.chisquare(counts, expected * len(lengths)).pvalue) if len(lengths) else 1.0
    drifted = bool(value > config.psi_threshold and pvalue < config.drift_alpha)
    return {
        "status": "drift" if drifted else "ok", "psi": round(value, 6), "pvalue": pvalue,
        "observed": {"mean": round(float(lengths.mean()), 3) if len(lengths) else None,
                     "p50": float(np.percentile(lengths, 50)) if len(lengths) else None,
                     "p95": float(np.percentile(lengths, 95)) if len(lengths) else None,
                     "share_over_train_p95": round(float(observed[2]), 6)},
        "expected": {k: reference.get(k) for k in ("mean", "p50", "p95", "max")},
        "rows": int(len(lengths)),
    }
