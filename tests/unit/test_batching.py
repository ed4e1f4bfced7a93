"""Length-grouped batches and their split between data-parallel processes."""
from __future__ import annotations

import numpy as np
import pytest

from mlcore.batching import length_grouped_batches, scoring_batches, shard


def test_length_grouped_batches_cover_every_row_once_in_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000).tolist()
    batches = length_grouped_batches(lengths, batch_size=8, rng=np.random.default_rng(1), mega_batch_factor=10)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    spread = np.mean([np.ptp(np.asarray(lengths)[b]) for b in batches])
    shuffled = np.mean([np.ptp(np.asarray(lengths)[b]) for b in np.array_split(rng.permutation(1000), 125)])
    assert spread < shuffled / 3  # padding waste is a fraction of random batching's


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 16, 17])
def test_shards_partition_the_batch_and_weights_restore_its_mean(world, size):
    batch = np.arange(100, 100 + size)
    parts = [shard(batch, rank, world) for rank in range(world)]
    counted = [p.rows for p in parts if p.weight > 0]
    assert sorted(np.concatenate(counted).tolist()) == batch.tolist()  # disjoint, and together the whole batch
    losses = np.random.default_rng(size).random(200)  # a per-row loss
    # DDP averages the processes' gradients: mean over processes of weight x (mean loss of the part)
    averaged = np.mean([p.weight * losses[p.rows].mean() for p in parts])
    assert averaged == pytest.approx(losses[batch].mean(), rel=1e-12)


def test_a_process_with_no_rows_still_steps_with_weight_zero():
    part = shard(np.array([7]), rank=1, world=2)
    assert part.rows.tolist() == [7] and part.weight == 0.0


def test_scoring_batches_are_sorted_by_length_and_cover_every_row():
    encoded = [[0] * n for n in (5, 1, 9, 3, 3, 7)]
    batches = scoring_batches(encoded, batch_size=4)
    assert [b.tolist() for b in batches] == [[1, 3, 4, 0], [5, 2]]
