"""mlcore.splitting: iterative stratification keeps label proportions, covers rare labels, is deterministic."""
from __future__ import annotations

import numpy as np
import pytest

from mlcore.splitting import iterative_stratification, stratified_split


def imbalanced_labels(n=1500, n_labels=12, seed=0) -> np.ndarray:
    """Multi-label 0/1 matrix with prevalences from 30% down to ~0.3% and some all-zero rows."""
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.3, 0.003, n_labels)
    return (rng.random((n, n_labels)) < prevalence).astype(np.float32)


def proportion_error(y: np.ndarray, parts: dict[str, np.ndarray]) -> float:
    """Mean over labels and splits of |share of the label's examples in the split - share of rows in the split|."""
    counts = y.sum(axis=0)
    keep = counts > 0
    errors = [np.abs(y[idx].sum(axis=0)[keep] / counts[keep] - len(idx) / len(y)) for idx in parts.values()]
    return float(np.mean(errors))


def test_split_is_a_partition_with_the_requested_sizes():
    y = imbalanced_labels()
    parts = stratified_split(y, 0.1, 0.2, seed=3)
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(len(y)))
    assert abs(len(parts["validation"]) - 150) <= 8 and abs(len(parts["test"]) - 300) <= 8


def test_deterministic_per_seed_and_different_across_seeds():
    y = imbalanced_labels()
    a, b = stratified_split(y, 0.1, 0.1, seed=7), stratified_split(y, 0.1, 0.1, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = stratified_split(y, 0.1, 0.1, seed=8)
    assert not np.array_equal(a["test"], c["test"])


def test_keeps_label_proportions_better_than_a_random_split():
    y = imbalanced_labels()
    stratified = np.mean([proportion_error(y, stratified_split(y, 0.1, 0.1, seed=s)) for s in range(3)])
    random_errors = []
    for s in range(3):
        order = np.random.default_rng(s).permutation(len(y))
        random_errors.append(proportion_error(y, {"train": order[:1200], "validation": order[1200:1350],
                                                  "test": order[1350:]}))
    assert stratified < 0.5 * np.mean(random_errors), (stratified, np.mean(random_errors))


@pytest.mark.parametrize("seed", range(5))
def test_every_label_with_three_examples_reaches_every_split(seed):
    rng = np.random.default_rng(seed)
    y = np.zeros((300, 8), dtype=np.float32)
    y[:, :3] = rng.random((300, 3)) < 0.3  # common labels
    for label, count in zip(range(3, 8), (3, 3, 4, 5, 2)):  # rare labels, co-occurring with common ones
        y[rng.choice(300, count, replace=False), label] = 1
    parts = stratified_split(y, 0.1, 0.1, seed=seed)
    for label in range(7):
        assert all(y[idx, label].sum() >= 1 for idx in parts.values()), (label, {k: y[v, label].sum() for k, v in parts.items()})
    assert sum(y[idx, 7].sum() for idx in parts.values()) == 2  # two examples cannot cover three splits


def test_rows_without_labels_are_spread_and_tiny_inputs_fill_every_split():
    y = np.zeros((100, 2))
    y[:10, 0] = 1
    parts = stratified_split(y, 0.2, 0.2, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 60, "validation": 20, "test": 20}
    tiny = stratified_split(np.eye(3)[[0, 1, 2, 0]], 0.1, 0.1, seed=0)
    assert all(len(idx) >= 1 for idx in tiny.values())


def test_two_way_split_and_invalid_arguments():
    y = imbalanced_labels(400)
    assignment = iterative_stratification(y, [0.75, 0.25], seed=1)
    assert set(np.unique(assignment)) == {0, 1} and abs((assignment == 1).sum() - 100) <= 5
    with pytest.raises(ValueError, match="sum to 1"):
        iterative_stratification(y, [0.5, 0.4])
    with pytest.raises(ValueError, match="n x L"):
        iterative_stratification(np.zeros(5), [0.5, 0.5])
    with pytest.raises(ValueError, match="nothing to train on"):
        stratified_split(y, 0.5, 0.5)
    with pytest.raises(ValueError, match="test fraction"):
        stratified_split(y, 0.1, -0.1)
