"""Length-grouped batches and their split between data-parallel processes."""
from __future__ import annotations

import numpy as np
import pytest

from mlcore.batching import TokenEncoder, length_grouped_batches, pad_batch, plan_batches, scoring_batches, shard


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


def padded_cost(plan, lengths, call_cost):
    return sum(len(idx) * max(lengths[i] for i in idx) + call_cost for idx in plan)


def best_cost_by_brute_force(lengths, max_batch, call_cost):
    """Every way to cut the sorted lengths into consecutive calls (2^(n-1) of them)."""
    sizes, n, best = sorted(lengths), len(lengths), float("inf")
    for mask in range(2 ** (n - 1)):
        cuts = [0, *(i + 1 for i in range(n - 1) if mask >> i & 1), n]
        parts = [sizes[a:b] for a, b in zip(cuts, cuts[1:])]
        if all(len(p) <= max_batch for p in parts):
            best = min(best, sum(len(p) * p[-1] + call_cost for p in parts))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_plan_batches_is_the_cheapest_plan_and_covers_every_row_once(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 60, size=int(rng.integers(1, 11))).tolist()
    max_batch, call_cost = int(rng.integers(1, 6)), float(rng.choice([0, 4, 16, 64]))
    plan = plan_batches(lengths, max_batch, call_cost)
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(lengths)))
    assert all(1 <= len(idx) <= max_batch for idx in plan)
    assert padded_cost(plan, lengths, call_cost) == best_cost_by_brute_force(lengths, max_batch, call_cost)


def test_plan_batches_cuts_a_mixed_batch_where_padding_costs_more_than_a_call():
    lengths = [5, 60] * 16  # a server's batch of one-text requests: short and long interleaved
    plan = plan_batches(lengths, max_batch=32, call_cost_tokens=16)
    assert [sorted({lengths[i] for i in idx}) for idx in plan] == [[5], [60]]
    assert sorted(len(idx) for idx in plan_batches([20] * 70, 32, 16)) == [6, 32, 32]  # equal lengths: full calls
    assert len(plan_batches([5, 60] * 16, max_batch=32, call_cost_tokens=10_000)) == 1  # calls dear: one call


def test_token_encoder_gives_the_tokenizers_ids_and_pad_batch_pads_them():
    from transformers import AutoTokenizer

    from tests.helpers.models import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    texts = ["I love this!", "", "naïve café 🎉 ok", "word " * 100, "  spaced\tout\n text  "]
    expected = tokenizer(texts, truncation=True, max_length=16)["input_ids"]
    assert TokenEncoder(tokenizer, 16)(texts) == expected
    slow = AutoTokenizer.from_pretrained(minilm_path(), use_fast=False)  # no Rust core: the tokenizer's own call
    assert TokenEncoder(slow, 16)(texts) == expected
    assert TokenEncoder(tokenizer, 16)(["word " * 100]) == [expected[3]]  # the HF call did not change its copy
    batch = pad_batch(expected, pad_id=tokenizer.pad_token_id)
    reference = tokenizer(texts, truncation=True, max_length=16, padding=True, return_tensors="np")
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[name].dtype == np.int64
        np.testing.assert_array_equal(batch[name], reference[name])
