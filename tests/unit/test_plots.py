"""mlcore.plots writes real, non-trivial PNGs (decoded and checked, not just present)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from mlcore.metrics import label_confusion, multilabel_report, roc_curves
from mlcore.plots import plot_confusion_matrices, plot_label_confusion, plot_roc_curves

LABELS = ["billing", "shipping", "refund", "urgent", "praise"]


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    y = (rng.random((120, len(LABELS))) < 0.3).astype(int)
    prob = np.clip(0.45 * y + 0.6 * rng.random(y.shape), 0, 1).astype(np.float32)
    return y, prob


def assert_real_png(path: Path, min_kb: float = 8) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > min_kb * 1024, f"{path.name} is only {path.stat().st_size} bytes"
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    rgb = image[..., :3]
    assert rgb.std() > 0.05  # not a blank canvas
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # many colours: text, cells, lines
    return image


def test_confusion_matrices_png(tmp_path, scored):
    y, prob = scored
    report = multilabel_report(y, prob, 0.5, LABELS, bootstrap=0)
    out = plot_confusion_matrices(report, tmp_path / "confusion_matrices.png")
    assert out == tmp_path / "confusion_matrices.png"
    image = assert_real_png(out)
    assert image.shape[1] > image.shape[0]  # one row of 5 matrices: wider than tall


def test_confusion_matrices_png_with_undefined_f1(tmp_path, scored):
    y, prob = scored
    y = y.copy()
    y[:, 0] = 0
    report = multilabel_report(y, prob, 1.01, LABELS, bootstrap=0)  # nothing predicted
    assert_real_png(plot_confusion_matrices(report, tmp_path / "cm.png"))


def test_roc_curves_png(tmp_path, scored):
    y, prob = scored
    image = assert_real_png(plot_roc_curves(roc_curves(y, prob, LABELS), tmp_path / "roc_curves.png"))
    assert image.shape[0] > 400


def test_label_confusion_png(tmp_path, scored):
    y, prob = scored
    confusion = label_confusion(y, (prob >= 0.5).astype(int), LABELS)
    assert_real_png(plot_label_confusion(confusion, tmp_path / "label_confusion.png"))


def test_plots_differ_with_the_data(tmp_path, scored):
    y, prob = scored
    a = plot_roc_curves(roc_curves(y, prob, LABELS), tmp_path / "a.png")
    b = plot_roc_curves(roc_curves(y, 1 - prob, LABELS), tmp_path / "b.png")
    ia, ib = mpimg.imread(a), mpimg.imread(b)
    assert ia.shape == ib.shape and np.abs(ia - ib).mean() > 1e-3


def test_plots_stay_readable_with_28_labels(tmp_path):
    names = [f"emotion_{i}" for i in range(28)]
    rng = np.random.default_rng(1)
    y = (rng.random((200, 28)) < 0.2).astype(int)
    prob = np.clip(0.4 * y + 0.6 * rng.random(y.shape), 0, 1).astype(np.float32)
    report = multilabel_report(y, prob, 0.5, names, bootstrap=0)
    grid = assert_real_png(plot_confusion_matrices(report, tmp_path / "cm.png"), min_kb=40)
    assert grid.shape[0] > 700  # 4 rows of 7 matrices, not squeezed into one
    heat = assert_real_png(plot_label_confusion(label_confusion(y, prob >= 0.5, names), tmp_path / "lc.png"))
    assert heat.shape[0] >= 800 and heat.shape[1] >= 800  # grows with the number of labels


def test_roc_plot_with_no_defined_curve_still_writes_a_png(tmp_path):
    path = plot_roc_curves(roc_curves(np.zeros((10, 2)), np.random.default_rng(0).random((10, 2)), ["x", "y"]),
                           tmp_path / "roc.png")
    image = mpimg.imread(path)
    assert image[..., :3].std() > 0.01  # axes and the chance diagonal
