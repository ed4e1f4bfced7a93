"""PNG plots people would rather see than read: confusion matrices, ROC curves, label confusion."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrices(report: dict, path: str | Path) -> Path:
    """A grid of per-label 2x2 confusion matrices (counts) from a `multilabel_report`."""
    per_label = report["multilabel_classification_metrics"]["per_label"]
    names = list(per_label)
    cols = min(7, len(names))
    rows = math.ceil(len(names) / cols)
    # readable at the size a report shows it: counts at 13 pt, names at 10 pt, 110 dpi
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax, name in zip(axes.flat, names):
        m = per_label[name]
        counts = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
        ax.imshow(counts / max(1, counts.sum()), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(counts):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=13, fontweight="bold",
                    color="white" if v / max(1, counts.sum()) > 0.5 else "black")
        ax.set_title(f"{name}\nF1 {m['f1']:.2f}" if m["f1"] is not None else name, fontsize=10)
        ax.set_xticks([0, 1], ["pred 0", "pred 1"], fontsize=8)
        ax.set_yticks([0, 1], ["true 0", "true 1"], fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("Per-label confusion matrices (counts)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_roc_curves(curves: dict, path: str | Path) -> Path:
    """ROC curve of every label (thin) and the micro average (thick), AUC in the legend."""
    fig, ax = plt.subplots(figsize=(7, 6))
    for name, c in curves.items():
        micro = name == "micro"
        ax.plot(c["fpr"], c["tpr"], lw=2.5 if micro else 0.9, color="black" if micro else None,
                label=f"{name} ({c['auc']:.3f})" if c["auc"] is not None else name)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curves (AUC)")
    if curves:
        ax.legend(fontsize=6, ncol=2, loc="lower right")
    else:  # every label had only positives or only negatives: say why the plot is empty
        ax.text(0.5, 0.6, "no label has both positive and negative examples:\nROC AUC undefined",
                ha="center", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_label_confusion(confusion: dict, path: str | Path) -> Path:
    """Heat map: rows are true labels, columns predicted labels, cells count samples (row-normalised)."""
    names, counts = confusion["labels"], np.asarray(confusion["counts"], dtype=float)
    norm = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    size = max(5, 0.32 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="predicted label", ylabel="true label", title="Which true labels get predicted as which")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
