"""Batches for training and scoring: length-grouped, dynamically padded, split across processes.

Length grouping (similar lengths in one batch, padded to the batch's longest) makes short-text
training 2.5-5x faster than fixed padding. Under data parallelism every global batch is split
between the processes (`shard`), each part weighted by its share of the batch, so N processes
take the same optimizer steps, with the same gradients, as one process does.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                           mega_batch_factor: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples: shuffle, sort within mega-batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    sizes = np.asarray(lengths)
    batches: list[np.ndarray] = []
    mega = batch_size * mega_batch_factor
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-sizes[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


@dataclass(frozen=True)
class Shard:
    """One process's part of a global batch: its rows and the weight of its mean loss (its share x processes)."""

    rows: np.ndarray
    weight: float


def shard(batch: np.ndarray, rank: int, world: int) -> Shard:
    """Rows rank, rank+world, ... of `batch` (the parts are disjoint and cover the batch).

    DDP averages the processes' gradients, so a part's mean loss is weighted by len(part) * world /
    len(batch): the average is then the gradient of the whole batch's mean loss. A process whose
    part is empty (a batch smaller than `world`) runs the batch's first row with weight 0, since
    every process must take part in every step.
    """
    rows = batch[rank::world]
    if len(rows) == 0:
        return Shard(batch[:1], 0.0)
    return Shard(rows, len(rows) * world / len(batch))


def encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to `max_length`, unpadded (padding happens per batch)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]


def collate(ids: Sequence[list[int]], pad_id: int):
    """Pad a batch to its longest member: input_ids, attention_mask, token_type_ids tensors."""
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[row, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}


def scoring_batches(encoded: Sequence[list[int]], batch_size: int) -> list[np.ndarray]:
    """Row indices in batches of similar length (sorted by length: least padding when scoring)."""
    order = np.argsort([len(x) for x in encoded], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
