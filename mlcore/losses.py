"""Training losses for multi-label classification, by name (`TrainingConfig.loss`): one dispatch table.

- `bce`: binary cross-entropy on each label, the mean over labels and rows.
- `asl`: asymmetric loss (Ridnik et al., "Asymmetric Loss for Multi-Label Classification", ICCV 2021):
  negatives, which outnumber positives ~25:1 on GoEmotions, are down-weighted by `p_m ** gamma_neg` with the
  probability shifted by `margin` (`p_m = max(p - margin, 0)`), so easy negatives stop dominating the gradient;
  positives keep `(1 - p) ** gamma_pos`. With gamma_neg = gamma_pos = 0 and margin 0 it is BCE.
"""
from __future__ import annotations

from typing import Callable

ASL_GAMMA_NEG = 4.0  # the paper's defaults for multi-label sets (MS-COCO, NUS-WIDE)
ASL_GAMMA_POS = 0.0
ASL_MARGIN = 0.05
_EPS = 1e-8


def bce(logits, targets):
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)


def asymmetric(logits, targets, gamma_neg: float = ASL_GAMMA_NEG, gamma_pos: float = ASL_GAMMA_POS,
               margin: float = ASL_MARGIN):
    """Mean asymmetric loss over labels and rows (float32 logits and 0/1 targets of one shape)."""
    import torch

    p = torch.sigmoid(logits)
    p_neg = (p - margin).clamp(min=0) if margin > 0 else p
    positive = targets * torch.log(p.clamp(min=_EPS))
    negative = (1 - targets) * torch.log((1 - p_neg).clamp(min=_EPS))
    if gamma_pos:
        positive = positive * (1 - p) ** gamma_pos
    if gamma_neg:
        negative = negative * p_neg ** gamma_neg
    return -(positive + negative).mean()


LOSSES: dict[str, Callable] = {"bce": bce, "asl": asymmetric}


def get_loss(name: str) -> Callable:
    """The loss function called `name`; ValueError listing the known names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(sorted(LOSSES))}, not {name!r}") from None
