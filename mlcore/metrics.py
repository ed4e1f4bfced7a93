"""Multi-label metrics in one place: evaluation, threshold tuning during training, the monitor.

scikit-learn computes every number; this module chooses which, shapes them as the model-quality
report (evaluation.json), and reports undefined values (ROC AUC of a label without positives)
as None rather than 0.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm

# Precision of a label that is never predicted (and recall of one never true) is undefined;
# like scikit-learn's zero_division=0 we count it as 0 in averages, and flag it per label.
ZERO_DIVISION = 0.0


def _clean(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def _binary(y) -> np.ndarray:
    return (np.asarray(y) > 0).astype(np.int8)


def roc_auc_per_label(y_true: np.ndarray, y_prob: np.ndarray) -> list[float | None]:
    """ROC AUC of each label; None where the label has only positives or only negatives."""
    y_true = _binary(y_true)
    out = []
    for j in range(y_true.shape[1]):
        column = y_true[:, j]
        out.append(_clean(skm.roc_auc_score(column, y_prob[:, j])) if 0 < column.sum() < len(column) else None)
    return out


def _point_metrics(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """Headline metrics for one sample (used for the value and for each bootstrap replicate)."""
    out: dict[str, float | None] = {}
    for avg in ("macro", "micro", "weighted", "samples"):
        out[f"f1_{avg}"] = skm.f1_score(y_true, y_pred, average=avg, zero_division=ZERO_DIVISION)
    for avg in ("macro", "micro"):
        out[f"precision_{avg}"] = skm.precision_score(y_true, y_pred, average=avg, zero_division=ZERO_DIVISION)
        out[f"recall_{avg}"] = skm.recall_score(y_true, y_pred, average=avg, zero_division=ZERO_DIVISION)
    aucs = [a for a in roc_auc_per_label(y_true, y_prob) if a is not None]
    out["roc_auc_macro"] = float(np.mean(aucs)) if aucs else None
    flat = y_true.ravel()
    out["roc_auc_micro"] = skm.roc_auc_score(flat, y_prob.ravel()) if 0 < flat.sum() < len(flat) else None
    out["subset_accuracy"] = skm.accuracy_score(y_true, y_pred)
    out["hamming_loss"] = skm.hamming_loss(y_true, y_pred)
    out["label_accuracy"] = float((y_true == y_pred).mean())
    return {k: _clean(v) for k, v in out.items()}


def quick_scores(y_true, y_prob, thresholds) -> dict[str, float | None]:
    """Flat headline metrics at `thresholds` (per label array or one float), for training logs."""
    y_true, y_prob = _binary(y_true), np.asarray(y_prob, dtype=np.float32)
    y_pred = (y_prob >= np.asarray(thresholds, dtype=np.float32)).astype(np.int8)
    scores = _point_metrics(y_true, y_prob, y_pred)
    return {k: scores[k] for k in ("f1_macro", "f1_micro", "roc_auc_macro", "roc_auc_micro", "precision_macro",
                                   "recall_macro", "subset_accuracy", "hamming_loss")}


# Shrinks tried by choose_threshold_shrink (0: each label its own threshold)
SHRINK_CANDIDATES = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


def _f1_grid(y_true: np.ndarray, y_prob: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """F1 of each label at each candidate threshold (G x L), vectorised over the grid."""
    pred = y_prob[None, :, :] >= candidates[:, None, None]               # G x n x L
    tp = (pred & y_true[None]).sum(axis=1).astype(np.float64)           # G x L
    fp = (pred & ~y_true[None]).sum(axis=1)
    fn = y_true.sum(axis=0)[None, :] - tp
    return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)


def tune_thresholds(y_true, y_prob, grid: Sequence[float] | np.ndarray | None = None,
                    default: float = 0.5, shrink: float = 0.0) -> np.ndarray:
    """Per-label threshold that maximises that label's F1 on validation (vectorised over the grid).

    With `shrink` = k > 0 each label's threshold moves toward the one threshold that maximises macro-F1 over all
    labels, by the weight k / (positives + k): a label with 6 validation positives (GoEmotions' grief) keeps
    little of its own, noisy optimum, one with 1,000 keeps nearly all of it. Labels without a positive example
    keep `default`; ties go to the threshold closest to 0.5.
    """
    y_true, y_prob = _binary(y_true).astype(bool), np.asarray(y_prob, dtype=np.float32)
    candidates = np.asarray(grid if grid is not None else np.linspace(0.05, 0.95, 37), dtype=np.float32)
    f1 = _f1_grid(y_true, y_prob, candidates)
    closeness = -np.abs(candidates - 0.5) * 1e-9                        # tie-break towards 0.5
    thresholds = candidates[np.argmax(f1 + closeness[:, None], axis=0)].astype(np.float32)
    positives = y_true.sum(axis=0)
    if shrink > 0 and positives.any():
        shared = candidates[np.argmax(f1[:, positives > 0].mean(axis=1) + closeness)]
        weight = positives / (positives + shrink)
        thresholds = (weight * thresholds + (1 - weight) * shared).astype(np.float32)
    thresholds[positives == 0] = default
    return thresholds


def _macro_f1(y_true: np.ndarray, y_prob: np.ndarray, thresholds: np.ndarray) -> float:
    """Macro-F1 (an undefined label F1 counts 0, as in quick_scores) without scikit-learn's per-call overhead."""
    return float(_f1_grid(y_true, y_prob - thresholds[None, :], np.zeros(1, dtype=np.float32)).mean())


def choose_threshold_shrink(y_true, y_prob, grid: Sequence[float] | np.ndarray | None = None,
                            candidates: Sequence[float] = SHRINK_CANDIDATES, repeats: int = 5,
                            seed: int = 0) -> float:
    """The shrink (of `candidates`, see tune_thresholds) whose thresholds, tuned on one half of the validation rows,
    score the best macro-F1 on the other half: 2-fold cross-validation, repeated `repeats` times with other halves.

    Validation alone decides, so the test split is still scored once. On GoEmotions (MiniLM, 3 epochs, five
    models; benchmarks/bench_thresholds.py) the shrink it chose moved test macro-F1 by +0.0013, +0.0075,
    -0.0025, +0.0041 and -0.0054 against per-label thresholds: not a reliable gain, so
    TrainingConfig.threshold_shrink defaults to 0.
    """
    y_true, y_prob = _binary(y_true).astype(bool), np.asarray(y_prob, dtype=np.float32)
    if len(y_true) < 4:
        return 0.0
    rng = np.random.default_rng(seed)
    scores = np.zeros(len(candidates))
    for _ in range(repeats):
        order = rng.permutation(len(y_true))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for fit, held in (halves, halves[::-1]):
            for i, k in enumerate(candidates):
                thresholds = tune_thresholds(y_true[fit], y_prob[fit], grid, shrink=k)
                scores[i] += _macro_f1(y_true[held], y_prob[held], thresholds)
    return float(candidates[int(np.argmax(scores))])


def fit_thresholds(y_true, y_prob, grid: Sequence[float] | np.ndarray | None = None,
                   shrink: float = -1.0) -> tuple[np.ndarray, float]:
    """Thresholds tuned on validation and the shrink used: `shrink` < 0 chooses it by cross-validation
    (choose_threshold_shrink), else that fixed shrink (0 = each label its own threshold)."""
    k = choose_threshold_shrink(y_true, y_prob, grid) if shrink < 0 else float(shrink)
    return tune_thresholds(y_true, y_prob, grid, shrink=k), k


def _bootstrap(y_true, y_prob, y_pred, n: int, seed: int) -> dict[str, float | None]:
    """Standard deviation of each headline metric over `n` resamples of the rows."""
    if n <= 1 or len(y_true) < 2:
        return {}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        for key, value in _point_metrics(y_true[idx], y_prob[idx], y_pred[idx]).items():
            if value is not None:
                samples.setdefault(key, []).append(value)
    return {k: _clean(np.std(v, ddof=1)) if len(v) > 1 else None for k, v in samples.items()}


def confusion_counts(y_true, y_pred) -> np.ndarray:
    """Per-label confusion counts, shape L x 2 x 2 ([[tn, fp], [fn, tp]], scikit-learn's layout)."""
    return skm.multilabel_confusion_matrix(_binary(y_true), _binary(y_pred))


def multilabel_report(y_true, y_prob, thresholds, label_names: Sequence[str], bootstrap: int = 200,
                      seed: int = 0) -> dict:
    """The model-quality report (evaluation.json shape): headline metrics with bootstrap std, per label."""
    y_true, y_prob = _binary(y_true), np.asarray(y_prob, dtype=np.float32)
    if y_true.shape != y_prob.shape or y_true.shape[1] != len(label_names):
        raise ValueError(f"shapes differ: y_true {y_true.shape}, y_prob {y_prob.shape}, {len(label_names)} labels")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (len(label_names),))
    y_pred = (y_prob >= thresholds).astype(np.int8)
    values = _point_metrics(y_true, y_prob, y_pred)
    stds = _bootstrap(y_true, y_prob, y_pred, bootstrap, seed)
    headline: dict[str, Any] = {k: {"value": v, "standard_deviation": stds.get(k)} for k, v in values.items()}
    aucs = roc_auc_per_label(y_true, y_prob)
    headline["roc_auc_macro"]["labels_excluded"] = [n for n, a in zip(label_names, aucs) if a is None]
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=ZERO_DIVISION)
    per_label = {}
    for j, (name, (tn_fp, fn_tp)) in enumerate(zip(label_names, confusion_counts(y_true, y_pred))):
        tn, fp = (int(x) for x in tn_fp)
        fn, tp = (int(x) for x in fn_tp)
        per_label[name] = {
            "precision": _clean(precision[j]), "recall": _clean(recall[j]), "f1": _clean(f1[j]),
            "roc_auc": aucs[j], "support": int(support[j]), "accuracy": _clean((tp + tn) / len(y_true)),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "threshold": _clean(thresholds[j]),
            "precision_undefined": tp + fp == 0, "recall_undefined": tp + fn == 0,
        }
    headline["per_label"] = per_label
    return {"multilabel_classification_metrics": headline, "n_samples": int(len(y_true)), "labels": list(label_names)}


def label_confusion(y_true, y_pred, label_names: Sequence[str]) -> dict:
    """Which true labels get predicted as which: counts[i][j] = samples with true i and predicted j."""
    y_true, y_pred = _binary(y_true), _binary(y_pred)
    counts = y_true.T.astype(np.int64) @ y_pred.astype(np.int64)
    return {"labels": list(label_names), "counts": counts.tolist()}


def roc_curves(y_true, y_prob, label_names: Sequence[str], max_points: int = 200) -> dict:
    """Per-label (and micro) ROC curves as fpr/tpr lists; labels with undefined AUC are omitted."""
    y_true, y_prob = _binary(y_true), np.asarray(y_prob, dtype=np.float32)
    curves = {}
    columns = [(name, y_true[:, j], y_prob[:, j]) for j, name in enumerate(label_names)]
    columns.append(("micro", y_true.ravel(), y_prob.ravel()))
    for name, truth, score in columns:
        if not 0 < truth.sum() < len(truth):
            continue
        fpr, tpr, _ = skm.roc_curve(truth, score)
        if len(fpr) > max_points:
            keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).astype(int))
            fpr, tpr = fpr[keep], tpr[keep]
        curves[name] = {"fpr": [round(float(x), 5) for x in fpr], "tpr": [round(float(x), 5) for x in tpr],
                        "auc": _clean(skm.roc_auc_score(truth, score))}
    return curves
