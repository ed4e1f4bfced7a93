"""Training losses: BCE, the asymmetric loss against its formula and its limits, class-balanced label weights,
R-drop's consistency term."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlcore.losses import asymmetric, bce, class_balanced_weights, get_loss, rdrop, symmetric_bernoulli_kl


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


def _bernoulli_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_symmetric_kl_is_both_directions_of_the_bernoulli_kl_averaged_over_labels():
    import torch

    a, b = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, -3.0]])
    p = [1 / (1 + math.exp(-x)) for x in (2.0, -1.0)]
    q = [1 / (1 + math.exp(-x)) for x in (0.5, -3.0)]
    expected = sum(_bernoulli_kl(pi, qi) + _bernoulli_kl(qi, pi) for pi, qi in zip(p, q)) / 2
    assert symmetric_bernoulli_kl(a, b).item() == pytest.approx(expected, rel=1e-5)
    assert symmetric_bernoulli_kl(a, a).item() == 0.0


def test_rdrop_is_the_mean_of_both_passes_plus_the_weighted_disagreement():
    import torch

    torch.manual_seed(0)
    first, second, targets = torch.randn(4, 3), torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    both = torch.cat([first, second])
    expected = (bce(first, targets) + bce(second, targets)) / 2 + 0.5 / 4 * symmetric_bernoulli_kl(first, second)
    torch.testing.assert_close(rdrop(bce, 0.5)(both, targets), expected)
    # two identical passes (no dropout): the plain loss, whatever alpha
    torch.testing.assert_close(rdrop(asymmetric, 3.0)(torch.cat([first, first]), targets), asymmetric(first, targets))


def test_class_balanced_weights_follow_the_effective_number_and_average_one():
    weights = class_balanced_weights(np.array([1000, 100, 10, 0]), beta=0.99)
    inverse = [(1 - 0.99) / (1 - 0.99 ** n) for n in (1000, 100, 10, 1)]  # no positives counts as one
    np.testing.assert_allclose(weights, np.array(inverse) / np.mean(inverse), rtol=1e-5)
    assert weights.mean() == pytest.approx(1.0) and list(weights) == sorted(weights)  # rarer labels weigh more
    assert class_balanced_weights(np.array([5000, 300]), beta=0.5) == pytest.approx([1.0, 1.0])  # small beta: alike


def test_label_weights_scale_each_labels_column_in_both_losses():
    import torch

    torch.manual_seed(0)
    logits, targets = torch.randn(6, 2) * 2, (torch.rand(6, 2) > 0.5).float()
    weight = torch.tensor([1.5, 0.5])
    for loss in (bce, asymmetric):
        columns = [loss(logits[:, i:i + 1], targets[:, i:i + 1]) for i in range(2)]
        torch.testing.assert_close(loss(logits, targets, weight=weight), (1.5 * columns[0] + 0.5 * columns[1]) / 2)
