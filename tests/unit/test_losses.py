"""Training losses: BCE, and the asymmetric loss against its formula and its limits."""
from __future__ import annotations

import math

import pytest

from mlcore.losses import asymmetric, bce, get_loss


def test_asl_without_focusing_or_margin_is_bce():
    import torch

    torch.manual_seed(0)
    logits, targets = torch.randn(8, 5) * 3, (torch.rand(8, 5) > 0.7).float()
    torch.testing.assert_close(asymmetric(logits, targets, gamma_neg=0, gamma_pos=0, margin=0), bce(logits, targets))


def test_asl_matches_its_formula_on_one_positive_and_one_negative():
    import torch

    logits, targets = torch.tensor([[2.0, 0.5]]), torch.tensor([[1.0, 0.0]])
    p_pos, p_neg = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-0.5))
    shifted = p_neg - 0.05
    expected = -(math.log(p_pos) * (1 - p_pos) ** 1 + shifted ** 4 * math.log(1 - shifted)) / 2
    got = asymmetric(logits, targets, gamma_neg=4, gamma_pos=1, margin=0.05)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_asl_ignores_negatives_below_the_margin_and_down_weights_easy_ones():
    import torch

    targets = torch.zeros(1, 3)
    confident = torch.tensor([[-5.0, -5.0, -5.0]])  # p = 0.0067 < margin: no loss, no gradient
    assert asymmetric(confident, targets).item() == 0.0
    easy, hard = torch.tensor([[-1.0]]), torch.tensor([[1.0]])  # p = 0.27 and 0.73 on a negative
    ratio_asl = asymmetric(easy, torch.zeros(1, 1)) / asymmetric(hard, torch.zeros(1, 1))
    ratio_bce = bce(easy, torch.zeros(1, 1)) / bce(hard, torch.zeros(1, 1))
    assert ratio_asl < ratio_bce / 10  # the easy negative weighs far less, relative to the hard one, than in BCE


def test_unknown_loss_names_the_known_ones():
    with pytest.raises(ValueError, match="loss must be one of asl, bce, not 'focal'"):
        get_loss("focal")
