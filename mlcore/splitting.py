"""Multi-label stratified splitting (iterative stratification, Sechidis et al., ECML 2011).

Rarest labels are placed first, each example going to the subset that most lacks that label,
so every split keeps the label proportions; a label with at least one example per subset is
then guaranteed to reach every subset when that can be done without emptying another label.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

SPLITS = ("train", "validation", "test")


def _check(y: np.ndarray, fractions: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"y must be an n x L 0/1 matrix, got shape {y.shape}")
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or f.size < 2 or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    return y > 0, f


def iterative_stratification(y: np.ndarray, fractions: Sequence[float], seed: int = 0,
                             min_per_subset: bool = True) -> np.ndarray:
    """Subset index (0..len(fractions)-1) for each row of the n x L 0/1 matrix `y`; deterministic per seed.

    With `min_per_subset`, each label with at least as many examples as non-empty subsets gets at
    least one example in each of them wherever the other labels allow it.
    """
    y, shares = _check(y, fractions)
    n, _ = y.shape
    rng = np.random.default_rng(seed)
    counts = y.sum(axis=0).astype(float)
    desired_rows = shares * n
    desired = np.outer(shares, counts)
    active = shares > 0
    if min_per_subset:  # a rare label asks for >= 1 example in every non-empty subset, taken from the largest
        for label in np.flatnonzero(counts >= active.sum()):
            short = active & (desired[:, label] < 1)
            if short.any():
                take = (1 - desired[short, label]).sum()
                desired[short, label] = 1
                big = int(np.argmax(desired[:, label] * ~short))
                desired[big, label] -= take
    assignment = np.full(n, -1, dtype=int)
    remaining = y.copy()
    while True:
        left = remaining.sum(axis=0)
        labels = np.flatnonzero(left)
        if labels.size == 0:
            break
        label = labels[np.argmin(left[labels])]
        rows = np.flatnonzero(remaining[:, label])
        rng.shuffle(rows)
        for row in rows:
            need = np.where(active, desired[:, label], -np.inf)
            best = np.flatnonzero(need == need.max())
            if best.size > 1:
                best = best[desired_rows[best] == desired_rows[best].max()]
            subset = int(rng.choice(best))
            assignment[row] = subset
            desired[subset] -= y[row]
            desired_rows[subset] -= 1
            remaining[row] = False
    for row in rng.permutation(np.flatnonzero(assignment < 0)):  # rows without labels: by remaining room
        subset = int(np.argmax(np.where(active, desired_rows, -np.inf)))
        assignment[row] = subset
        desired_rows[subset] -= 1
    if min_per_subset:
        _fill_missing(y, assignment, np.flatnonzero(active), rng)
    _fill_empty(y, assignment, np.flatnonzero(active), rng)
    return assignment


def _fill_empty(y: np.ndarray, assignment: np.ndarray, subsets: np.ndarray, rng: np.random.Generator) -> None:
    """Give every non-empty-fraction subset at least one row (when there are enough rows), from the largest."""
    if len(assignment) < len(subsets):
        return
    for target in subsets:
        if np.any(assignment == target):
            continue
        sizes = np.bincount(assignment, minlength=int(subsets.max()) + 1)
        source = int(np.argmax(sizes))
        rows = rng.permutation(np.flatnonzero(assignment == source))
        in_source = y[rows].sum(axis=0)
        # the row whose move takes the fewest labels out of the source subset
        lost = [int(np.sum(in_source[y[r]] < 2)) for r in rows]
        assignment[rows[int(np.argmin(lost))]] = target


def _fill_missing(y: np.ndarray, assignment: np.ndarray, subsets: np.ndarray, rng: np.random.Generator) -> None:
    """Move single examples so that every label with enough examples is present in every subset."""
    k = int(max(assignment.max(), subsets.max())) + 1
    per_subset = np.stack([y[assignment == s].sum(axis=0) for s in range(k)])  # k x L label counts
    for label in np.flatnonzero(y.sum(axis=0) >= len(subsets)):
        for target in subsets:
            if per_subset[target, label] > 0:
                continue
            for row in rng.permutation(np.flatnonzero(y[:, label])):
                source, others = assignment[row], np.flatnonzero(y[row])
                # the move must not take the last example of any of the row's labels out of `source`
                if np.all(per_subset[source, others] >= 2):
                    assignment[row] = target
                    per_subset[source, others] -= 1
                    per_subset[target, others] += 1
                    break


def stratified_split(y: np.ndarray, validation_fraction: float, test_fraction: float,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of train / validation / test, stratified over all labels, deterministic per seed."""
    for name, value in (("validation", validation_fraction), ("test", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"the {name} fraction must be in [0, 1), got {value}")
    train_fraction = 1.0 - validation_fraction - test_fraction
    if train_fraction <= 0:
        raise ValueError(f"validation ({validation_fraction}) and test ({test_fraction}) fractions leave nothing "
                         "to train on")
    assignment = iterative_stratification(y, [train_fraction, validation_fraction, test_fraction], seed)
    return {name: np.flatnonzero(assignment == i) for i, name in enumerate(SPLITS)}
