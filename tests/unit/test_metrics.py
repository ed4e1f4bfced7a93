"""mlcore.metrics against scikit-learn computed directly, plus the undefined-value edge cases."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from mlcore.metrics import (
    choose_threshold_shrink,
    fit_thresholds,
    label_confusion,
    multilabel_report,
    quick_scores,
    roc_auc_per_label,
    roc_curves,
    tune_thresholds,
)

LABELS = ["a", "b", "c", "d"]


def noisy_scores(n: int = 80, n_labels: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels with different base rates and probabilities that are informative but imperfect."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.15, 0.6, n_labels)
    y = (rng.random((n, n_labels)) < rates).astype(int)
    prob = np.clip(0.5 * y + 0.6 * rng.random((n, n_labels)) - 0.05, 0, 1).astype(np.float32)
    return y, prob


def headline(report: dict, key: str):
    return report["multilabel_classification_metrics"][key]["value"]


def test_headline_metrics_equal_sklearn():
    y, prob = noisy_scores()
    thresholds = np.array([0.3, 0.4, 0.5, 0.6], dtype=np.float32)
    pred = (prob >= thresholds).astype(int)
    report = multilabel_report(y, prob, thresholds, LABELS, bootstrap=0)
    expected = {f"f1_{avg}": skm.f1_score(y, pred, average=avg, zero_division=0)
                for avg in ("macro", "micro", "weighted", "samples")}
    for avg in ("macro", "micro"):
        expected[f"precision_{avg}"] = skm.precision_score(y, pred, average=avg, zero_division=0)
        expected[f"recall_{avg}"] = skm.recall_score(y, pred, average=avg, zero_division=0)
    expected["roc_auc_macro"] = skm.roc_auc_score(y, prob, average="macro")
    expected["roc_auc_micro"] = skm.roc_auc_score(y, prob, average="micro")
    expected["subset_accuracy"] = skm.accuracy_score(y, pred)
    expected["hamming_loss"] = skm.hamming_loss(y, pred)
    for key, value in expected.items():
        assert headline(report, key) == pytest.approx(value, abs=2e-6), key
    assert report["n_samples"] == len(y) and report["labels"] == LABELS
    assert report["multilabel_classification_metrics"]["roc_auc_macro"]["labels_excluded"] == []
    # the values are not all alike: the fixture really exercises the averages
    assert headline(report, "f1_macro") != pytest.approx(headline(report, "f1_micro"), abs=1e-3)


def test_per_label_counts_and_scores_equal_sklearn():
    y, prob = noisy_scores(seed=1)
    report = multilabel_report(y, prob, 0.5, LABELS, bootstrap=0)
    pred = (prob >= 0.5).astype(int)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for j, name in enumerate(LABELS):
        m = report["multilabel_classification_metrics"]["per_label"][name]
        (tn, fp), (fn, tp) = skm.confusion_matrix(y[:, j], pred[:, j], labels=[0, 1])
        assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (tp, fp, fn, tn)
        assert m["support"] == s[j] == y[:, j].sum()
        assert m["precision"] == pytest.approx(p[j], abs=1e-6)
        assert m["recall"] == pytest.approx(r[j], abs=1e-6)
        assert m["f1"] == pytest.approx(f[j], abs=1e-6)
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, j], prob[:, j]), abs=1e-6)
        assert m["threshold"] == 0.5


def test_label_without_positives_has_null_auc_and_is_excluded_from_macro():
    y, prob = noisy_scores(seed=2)
    y[:, 2] = 0  # label "c" never occurs
    report = multilabel_report(y, prob, 0.5, LABELS, bootstrap=20)
    metrics = report["multilabel_classification_metrics"]
    assert metrics["per_label"]["c"]["roc_auc"] is None
    assert metrics["per_label"]["c"]["recall_undefined"] is True
    assert metrics["roc_auc_macro"]["labels_excluded"] == ["c"]
    kept = [0, 1, 3]
    assert metrics["roc_auc_macro"]["value"] == pytest.approx(
        skm.roc_auc_score(y[:, kept], prob[:, kept], average="macro"), abs=2e-6)
    assert roc_auc_per_label(y, prob)[2] is None
    text = json.dumps(report, allow_nan=False)  # null, never NaN
    assert '"roc_auc": null' in text


def test_label_with_only_positives_is_also_undefined():
    y, prob = noisy_scores(seed=3)
    y[:, 0] = 1
    report = multilabel_report(y, prob, 0.5, LABELS, bootstrap=0)
    assert report["multilabel_classification_metrics"]["per_label"]["a"]["roc_auc"] is None
    assert report["multilabel_classification_metrics"]["roc_auc_macro"]["labels_excluded"] == ["a"]


def test_sample_without_labels_counts_like_sklearn():
    y, prob = noisy_scores(seed=4)
    y[:5] = 0
    prob[:5] = 0.01  # correctly predicted as "nothing"
    pred = (prob >= 0.5).astype(int)
    report = multilabel_report(y, prob, 0.5, LABELS, bootstrap=0)
    assert headline(report, "f1_samples") == pytest.approx(
        skm.f1_score(y, pred, average="samples", zero_division=0), abs=1e-6)
    assert headline(report, "subset_accuracy") == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)


def test_all_zero_predictions_flag_undefined_precision():
    y, prob = noisy_scores(seed=5)
    report = multilabel_report(y, prob, 1.01, LABELS, bootstrap=10)
    metrics = report["multilabel_classification_metrics"]
    for name in LABELS:
        m = metrics["per_label"][name]
        assert m["precision_undefined"] is True and m["tp"] == m["fp"] == 0
        assert m["precision"] == 0.0 and m["recall"] == 0.0
        assert m["fn"] == y[:, LABELS.index(name)].sum()
    assert metrics["f1_macro"]["value"] == 0.0 and metrics["precision_micro"]["value"] == 0.0
    # ranking metrics do not depend on the threshold
    assert metrics["roc_auc_micro"]["value"] == pytest.approx(skm.roc_auc_score(y.ravel(), prob.ravel()), abs=1e-6)
    json.dumps(report, allow_nan=False)


def test_bootstrap_std_is_deterministic_per_seed_and_positive():
    y, prob = noisy_scores(n=60, seed=6)
    first = multilabel_report(y, prob, 0.5, LABELS, bootstrap=30, seed=7)
    again = multilabel_report(y, prob, 0.5, LABELS, bootstrap=30, seed=7)
    other = multilabel_report(y, prob, 0.5, LABELS, bootstrap=30, seed=8)
    assert first == again
    m, o = first["multilabel_classification_metrics"], other["multilabel_classification_metrics"]
    for key in ("f1_macro", "f1_micro", "roc_auc_macro", "roc_auc_micro", "hamming_loss", "subset_accuracy"):
        assert m[key]["standard_deviation"] > 0, key
        assert m[key]["standard_deviation"] < 0.5, key
    assert m["f1_macro"]["standard_deviation"] != o["f1_macro"]["standard_deviation"]
    none = multilabel_report(y, prob, 0.5, LABELS, bootstrap=0)
    assert none["multilabel_classification_metrics"]["f1_macro"]["standard_deviation"] is None


def test_report_rejects_mismatched_shapes():
    y, prob = noisy_scores()
    with pytest.raises(ValueError, match="shapes differ"):
        multilabel_report(y, prob[:, :3], 0.5, LABELS)
    with pytest.raises(ValueError, match="3 labels"):
        multilabel_report(y, prob, 0.5, LABELS[:3])


def test_report_is_strict_json_with_nulls_for_undefined_values():
    y = np.zeros((10, 2), dtype=int)  # no positives at all: every AUC undefined
    prob = np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2)
    report = multilabel_report(y, prob, 0.5, ["x", "y"], bootstrap=10)
    doc = json.loads(json.dumps(report, allow_nan=False))
    metrics = doc["multilabel_classification_metrics"]
    assert metrics["roc_auc_macro"]["value"] is None and metrics["roc_auc_micro"]["value"] is None
    assert metrics["roc_auc_macro"]["labels_excluded"] == ["x", "y"]
    assert all(metrics["per_label"][n]["roc_auc"] is None for n in ("x", "y"))


def test_tune_thresholds_beats_half_on_a_crafted_case():
    rng = np.random.default_rng(0)
    y = np.zeros((200, 2), dtype=int)
    y[:60, 0] = 1
    y[100:160, 1] = 1
    prob = rng.uniform(0.0, 0.2, size=(200, 2)).astype(np.float32)
    prob[:60, 0] = rng.uniform(0.3, 0.45, size=60)  # positives score below 0.5: 0.5 finds none
    prob[100:160, 1] = rng.uniform(0.55, 0.9, size=60)
    grid = np.linspace(0.05, 0.95, 19)
    thresholds = tune_thresholds(y, prob, grid=grid)
    assert 0.2 < thresholds[0] <= 0.3 + 1e-6
    tuned = skm.f1_score(y[:, 0], prob[:, 0] >= thresholds[0])
    assert tuned == pytest.approx(1.0) and skm.f1_score(y[:, 0], prob[:, 0] >= 0.5) == 0.0
    assert skm.f1_score(y[:, 1], prob[:, 1] >= thresholds[1]) == pytest.approx(1.0)
    before = quick_scores(y, prob, 0.5)["f1_macro"]
    after = quick_scores(y, prob, thresholds)["f1_macro"]
    assert after > before + 0.4


def test_tune_thresholds_keeps_default_for_a_label_without_positives():
    y, prob = noisy_scores(seed=9)
    y[:, 1] = 0
    thresholds = tune_thresholds(y, prob)
    assert thresholds[1] == pytest.approx(0.5)
    assert tune_thresholds(y, prob, default=0.7)[1] == pytest.approx(0.7)
    assert thresholds.shape == (len(LABELS),)


def test_label_confusion_counts_pairs_of_true_and_predicted_labels():
    y_true = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])
    y_pred = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]])
    out = label_confusion(y_true, y_pred, ["p", "q", "r"])
    expected = [[sum(int(t[i] and p[j]) for t, p in zip(y_true, y_pred)) for j in range(3)] for i in range(3)]
    assert out == {"labels": ["p", "q", "r"], "counts": expected}
    assert out["counts"][0] == [2, 2, 0]  # "p" true: twice predicted p, twice q
    json.dumps(out, allow_nan=False)


def test_roc_curves_match_sklearn_auc_and_skip_undefined_labels():
    y, prob = noisy_scores(n=300, seed=10)
    y[:, 3] = 0
    curves = roc_curves(y, prob, LABELS, max_points=50)
    assert set(curves) == {"a", "b", "c", "micro"}
    for j, name in enumerate(LABELS[:3]):
        c = curves[name]
        assert c["auc"] == pytest.approx(skm.roc_auc_score(y[:, j], prob[:, j]), abs=1e-6)
        assert len(c["fpr"]) == len(c["tpr"]) <= 50
        assert c["fpr"][0] == 0.0 and c["fpr"][-1] == 1.0 and c["tpr"][-1] == 1.0
        assert np.all(np.diff(c["fpr"]) >= 0)
        assert skm.auc(c["fpr"], c["tpr"]) == pytest.approx(c["auc"], abs=0.03)  # down-sampled curve
    assert curves["micro"]["auc"] == pytest.approx(skm.roc_auc_score(y.ravel(), prob.ravel()), abs=1e-6)
    full = roc_curves(y, prob, LABELS, max_points=10_000)
    fpr, tpr, _ = skm.roc_curve(y[:, 0], prob[:, 0])
    assert full["a"]["fpr"] == pytest.approx(fpr.tolist(), abs=1e-5)
    assert full["a"]["tpr"] == pytest.approx(tpr.tolist(), abs=1e-5)
    json.dumps(curves, allow_nan=False)


def shared_noise_scores(rows: int, positives: list[int], seed: int, shifts: list[float] | None = None):
    """Labels scored by one noise model (positives ~ N(0.6 + shift, 0.15), negatives ~ N(0.2, 0.15)): the best
    threshold of every label is the same unless `shifts` moves a label's positives."""
    rng = np.random.default_rng(seed)
    shifts = shifts or [0.0] * len(positives)
    y = np.zeros((rows, len(positives)), dtype=int)
    prob = rng.normal(0.2, 0.15, size=y.shape)
    for j, (n, shift) in enumerate(zip(positives, shifts)):
        hit = rng.choice(rows, n, replace=False)
        y[hit, j] = 1
        prob[hit, j] = rng.normal(0.6 + shift, 0.15, size=n)
    return y, np.clip(prob, 0, 1).astype(np.float32)


def test_shrink_pulls_a_rare_label_toward_the_shared_threshold_by_its_positives():
    y, prob = shared_noise_scores(4000, [800, 6], seed=1)
    grid = np.linspace(0.05, 0.95, 37)
    own = tune_thresholds(y, prob, grid)
    f1 = {t: np.mean([skm.f1_score(y[:, j], prob[:, j] >= t) for j in range(2)]) for t in grid}
    shared = max(f1, key=lambda t: (f1[t], -abs(t - 0.5)))
    shrunk = tune_thresholds(y, prob, grid, shrink=20)
    for j, positives in enumerate((800, 6)):
        weight = positives / (positives + 20)
        assert shrunk[j] == pytest.approx(weight * own[j] + (1 - weight) * shared, abs=1e-6)
    assert abs(shrunk[0] - own[0]) < 0.01  # 800 positives: its own threshold
    assert abs(shrunk[1] - shared) < abs(own[1] - shared) / 3 or own[1] == pytest.approx(shared)
    assert (tune_thresholds(y, prob, grid, shrink=0) == own).all()


def test_cross_validation_shrinks_noisy_rare_labels_and_keeps_well_supported_different_ones():
    grid = np.linspace(0.05, 0.95, 37)
    y, prob = shared_noise_scores(3000, [8] * 12, seed=2)  # one noise model, few positives per label
    k, own = choose_threshold_shrink(y, prob, grid), tune_thresholds(y, prob, grid)
    assert k > 0
    fresh_y, fresh_prob = shared_noise_scores(30000, [80] * 12, seed=3)  # the same labels, new data
    assert quick_scores(fresh_y, fresh_prob, tune_thresholds(y, prob, grid, shrink=k))["f1_macro"] > \
        quick_scores(fresh_y, fresh_prob, own)["f1_macro"]
    # many positives and truly different optima (positives shifted by -0.25 .. +0.25): each its own threshold
    y, prob = shared_noise_scores(6000, [1500] * 4, seed=4, shifts=[-0.25, -0.1, 0.1, 0.25])
    assert choose_threshold_shrink(y, prob, grid) <= 5


def test_fit_thresholds_uses_a_fixed_shrink_or_chooses_one():
    y, prob = shared_noise_scores(2000, [5, 300, 40], seed=5)
    grid = np.linspace(0.05, 0.95, 37)
    thresholds, k = fit_thresholds(y, prob, grid, shrink=-1)
    assert k == choose_threshold_shrink(y, prob, grid) and (thresholds == tune_thresholds(y, prob, grid, shrink=k)).all()
    assert fit_thresholds(y, prob, grid, shrink=0)[1] == 0.0
    assert (fit_thresholds(y, prob, grid, shrink=0)[0] == tune_thresholds(y, prob, grid)).all()
