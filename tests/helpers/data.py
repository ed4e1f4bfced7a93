"""Tiny, learnable multi-label data written in the inter-step format (data.jsonl + labels.json)."""
from __future__ import annotations

import json
import random
from pathlib import Path

KEYWORDS = {"a": ["apple", "apricot"], "b": ["banana", "blueberry"], "c": ["cherry", "coconut"]}
FILLER = "the a of to and in is it that was for on with as this by at from or but".split()


def keyword_rows(n: int, seed: int = 0) -> list[dict]:
    """Texts whose labels are given by fruit keywords among filler words (co-occurring labels)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = sorted(l for l in KEYWORDS if rng.random() < 0.4)
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 14))]
        for label in labels:
            words.insert(rng.randrange(len(words) + 1), rng.choice(KEYWORDS[label]))
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def write_split_dir(directory: Path, rows: list[dict], labels=("a", "b", "c")) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "data.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (directory / "labels.json").write_text(json.dumps({"labels": list(labels)}))
    return directory


def labeled(rows: list[dict], labels=("a", "b", "c")):
    """Rows as mlcore.datasets.LabeledTexts."""
    from mlcore.datasets import LabeledTexts

    return LabeledTexts([r["text"] for r in rows], [r["labels"] for r in rows], list(labels))
