"""The step schedule and row plan are pure functions with sentence-transformers' multi-dataset semantics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from raystx.data.schedule import EpochPlan, build_schedule, compose_batches, dataset_order

SIZES = {"a": 100, "b": 37, "c": 64}


def test_round_robin_cycles_in_order_until_smallest_runs_out():
    schedule = build_schedule(SIZES, 8, seed=1, epoch=0, sampler="round_robin")
    # b has 37 // 8 = 4 full batches: 4 rounds of a, b, c.
    assert schedule == ["a", "b", "c"] * 4


def test_proportional_uses_every_full_batch_once():
    schedule = build_schedule(SIZES, 8, seed=1, epoch=0, sampler="proportional")
    assert Counter(schedule) == {"a": 12, "b": 4, "c": 8}
    assert schedule != sorted(schedule)  # shuffled, not grouped


def test_schedule_is_a_pure_function_of_seed_and_epoch():
    one = build_schedule(SIZES, 8, seed=3, epoch=2)
    assert one == build_schedule(dict(SIZES), 8, seed=3, epoch=2)
    assert one != build_schedule(SIZES, 8, seed=4, epoch=2)
    assert one != build_schedule(SIZES, 8, seed=3, epoch=3)


def test_weights_draw_in_proportion_and_stop_before_any_dataset_runs_out():
    schedule = build_schedule(SIZES, 8, seed=0, epoch=0, weights={"a": 1.0, "b": 1.0, "c": 2.0})
    counts = Counter(schedule)
    assert counts["a"] == counts["b"] == 4 and counts["c"] == 8
    with pytest.raises(ValueError, match="unknown datasets"):
        build_schedule(SIZES, 8, seed=0, epoch=0, weights={"zzz": 1.0})


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_take_disjoint_slices_covering_every_full_batch_once(world):
    plan = EpochPlan(SIZES, per_device_batch_size=4, world_size=world, seed=7, epoch=0)
    used = {n: [] for n in SIZES}
    for step in range(len(plan)):
        name = plan.schedule[step]
        per_rank = [plan.rows(step, r) for r in range(world)]
        assert all(n == name for n, _ in per_rank)
        rows = np.concatenate([idx for _, idx in per_rank])
        assert len(rows) == 4 * world
        np.testing.assert_array_equal(rows, plan.global_rows(step)[1])
        used[name].extend(rows.tolist())
    for name, size in SIZES.items():
        assert len(used[name]) == len(set(used[name]))  # no row twice
        full = (size // (4 * world)) * 4 * world
        assert len(used[name]) == full  # only the last partial global batch is dropped
        assert set(used[name]) <= set(range(size))


def test_dataset_order_is_a_seeded_permutation():
    order = dataset_order(50, seed=1, epoch=0, name="a")
    assert sorted(order.tolist()) == list(range(50))
    assert not np.array_equal(order, dataset_order(50, seed=1, epoch=1, name="a"))
    np.testing.assert_array_equal(dataset_order(5, 1, 0, "a", shuffle=False), np.arange(5))


def test_no_duplicates_batches_hold_each_text_once_and_are_identical_for_every_rank():
    rng = np.random.default_rng(0)
    vocab = [f"t{i}" for i in range(40)]
    texts = [(vocab[rng.integers(40)], vocab[rng.integers(40)]) for _ in range(120)]
    order = dataset_order(120, seed=1, epoch=0, name="d")
    batches = compose_batches(order, 8, "no_duplicates", texts=texts)
    assert len(batches) >= 5
    used = np.concatenate(batches).tolist()
    assert len(used) == len(set(used))  # a row is used at most once
    for batch in batches:
        values = [v for row in batch.tolist() for v in texts[row]]
        assert len(values) == len(set(values)), "a text repeats within a global batch"
    again = compose_batches(order, 8, "no_duplicates", texts=list(texts))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))


def test_group_by_label_puts_every_label_at_least_twice_in_a_batch():
    labels = [i % 7 for i in range(90)]
    order = dataset_order(90, seed=2, epoch=0, name="d")
    batches = compose_batches(order, 8, "group_by_label", labels=labels)
    assert len(batches) == 10  # 6 labels x 13 rows + 1 x 12 -> 42 pairs -> 84 rows -> 10 full batches
    for batch in batches:
        counts = Counter(labels[r] for r in batch.tolist())
        assert min(counts.values()) >= 2
    with pytest.raises(ValueError, match="even"):
        compose_batches(order, 7, "group_by_label", labels=labels)


def test_epoch_plan_counts_steps_from_the_composed_batches():
    texts = [("same",)] * 10 + [(f"u{i}",) for i in range(30)]
    plan = EpochPlan(
        {"d": 40},
        per_device_batch_size=4,
        world_size=2,
        seed=0,
        epoch=0,
        batch_sampler="no_duplicates",
        columns=lambda name: (texts, None),
    )
    # each batch: one 'same' row + 7 unique ones; 30 unique rows -> 4 full duplicate-free batches
    assert len(plan) == 4
    for step in range(len(plan)):
        _, rows = plan.global_rows(step)
        assert len({texts[r] for r in rows.tolist()}) == 8
