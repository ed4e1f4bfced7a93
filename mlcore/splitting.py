"""Multi-label stratified splitting (iterative stratification, Sechidis et al., ECML 2011).

Rare labels are placed first, each example going to the subset that most lacks its rarest
label, so every split keeps the label proportions even for labels with a handful of examples.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def iterative_stratification(y: np.ndarray, fractions: Sequence[float], seed: int = 0) -> np.ndarray:
    """Subset index (0..len(fractions)-1) for each row of the n x L 0/1 matrix `y`."""
    y = np.asarray(y) > 0
    n, n_labels = y.shape
    fractions = np.asarray(fractions, dtype=float)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    desired_rows = fractions * n
    desired_labels = np.outer(fractions, y.sum(axis=0)).astype(float)
    assignment = np.full(n, -1, dtype=int)
    remaining = y.copy()
    while True:
        counts = remaining.sum(axis=0)
        active = np.flatnonzero(counts)
        if active.size == 0:
            break
        label = active[np.argmin(counts[active])]
        rows = np.flatnonzero(remaining[:, label])
        rng.shuffle(rows)
        for row in rows:
            need = desired_labels[:, label]
            best = np.flatnonzero(need == need.max())
            if best.size > 1:
                best = best[desired_rows[best] == desired_rows[best].max()]
            subset = int(rng.choice(best))
            assignment[row] = subset
            desired_labels[subset] -= y[row]
            desired_rows[subset] -= 1
            remaining[row] = False
    for row in rng.permutation(np.flatnonzero(assignment < 0)):  # rows without labels
        subset = int(np.argmax(desired_rows))
        assignment[row] = subset
        desired_rows[subset] -= 1
    return assignment


def stratified_split(y: np.ndarray, validation_fraction: float, test_fraction: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of train / validation / test, stratified over all labels, deterministic per seed."""
    train_fraction = 1.0 - validation_fraction - test_fraction
    if train_fraction <= 0:
        raise ValueError("validation and test fractions leave nothing to train on")
    assignment = iterative_stratification(y, [train_fraction, validation_fraction, test_fraction], seed)
    return {name: np.flatnonzero(assignment == i) for i, name in enumerate(("train", "validation", "test"))}
