"""Training losses for multi-label classification, by name (`TrainingConfig.loss`): one dispatch table.

- `bce`: binary cross-entropy on each label, the mean over labels and rows.
- `asl`: asymmetric loss (Ridnik et al., "Asymmetric Loss for Multi-Label Classification", ICCV 2021):
  negatives, which outnumber positives ~25:1 on GoEmotions, are down-weighted by `p_m ** gamma_neg` with the
  probability shifted by `margin` (`p_m = max(p - margin, 0)`), so easy negatives stop dominating the gradient;
  positives keep `(1 - p) ** gamma_pos`. With gamma_neg = gamma_pos = 0 and margin 0 it is BCE.

`class_balanced_weights` (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019)
weighs each label's column by `(1 - beta) / (1 - beta ** positives)`, scaled to a mean of 1 over labels, so
rare labels count for more; both losses take such a `weight` per label.

`rdrop` (Liang et al., "R-Drop: Regularized Dropout for Neural Networks", NeurIPS 2021) wraps either: each
row is run twice (two dropout masks) and the loss is the mean of the two passes' losses plus `alpha / 4` times
their symmetric KL divergence, per label as two Bernoulli distributions: the paper's
`NLL1 + NLL2 + alpha/2 (KL(P1||P2) + KL(P2||P1))`, halved to keep the scale of one pass's mean loss.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

ASL_GAMMA_NEG = 4.0  # the paper's defaults for multi-label sets (MS-COCO, NUS-WIDE)
ASL_GAMMA_POS = 0.0
ASL_MARGIN = 0.05
_EPS = 1e-8


def bce(logits, targets, weight=None):
    """Mean binary cross-entropy over labels and rows; `weight` (one per label) scales each label's column."""
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, weight=weight)


def asymmetric(logits, targets, weight=None, gamma_neg: float = ASL_GAMMA_NEG, gamma_pos: float = ASL_GAMMA_POS,
               margin: float = ASL_MARGIN):
    """Mean asymmetric loss over labels and rows (float32 logits and 0/1 targets of one shape); `weight` as bce's."""
    import torch

    p = torch.sigmoid(logits)
    p_neg = (p - margin).clamp(min=0) if margin > 0 else p
    positive = targets * torch.log(p.clamp(min=_EPS))
    negative = (1 - targets) * torch.log((1 - p_neg).clamp(min=_EPS))
    if gamma_pos:
        positive = positive * (1 - p) ** gamma_pos
    if gamma_neg:
        negative = negative * p_neg ** gamma_neg
    loss = positive + negative
    return -(loss * weight if weight is not None else loss).mean()


def class_balanced_weights(positives: np.ndarray, beta: float) -> np.ndarray:
    """Per-label weights from the training positives: inverse effective numbers (1 - beta) / (1 - beta**n), mean 1.

    A label without positives gets the weight of a label with one."""
    effective = (1.0 - np.power(beta, np.maximum(np.asarray(positives, dtype=np.float64), 1.0))) / (1.0 - beta)
    weights = 1.0 / effective
    return (weights / weights.mean()).astype(np.float32)


def symmetric_bernoulli_kl(logits_a, logits_b):
    """Mean over labels and rows of KL(p||q) + KL(q||p) for p = sigmoid(a), q = sigmoid(b): (p - q)(a - b)."""
    import torch

    return ((torch.sigmoid(logits_a) - torch.sigmoid(logits_b)) * (logits_a - logits_b)).mean()


def rdrop(loss: Callable, alpha: float) -> Callable:
    """A loss over logits of the rows twice (first copy, then second) against the rows' targets once."""

    def wrapped(logits, targets):
        first, second = logits.chunk(2)
        return (loss(first, targets) + loss(second, targets)) / 2 + alpha / 4 * symmetric_bernoulli_kl(first, second)

    return wrapped


LOSSES: dict[str, Callable] = {"bce": bce, "asl": asymmetric}


def get_loss(name: str) -> Callable:
    """The loss function called `name`; ValueError listing the known names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(sorted(LOSSES))}, not {name!r}") from None
