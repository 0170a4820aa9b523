"""The shard-windowed epoch order (``shuffle_window``): every row once, deterministic, local, and resumable.

References are direct: the set of row ids, the shard of each row (``row // shard_size``), and, for a window
covering every shard, the full permutation ``dataset_order`` gives without a window.
"""

from __future__ import annotations

import numpy as np
import pytest

from raystx.data.schedule import EpochPlan, dataset_order
from raystx.data.window_shuffle import block_rows, rank_striped_batches, shard_of_rows, window_order

SHARD = 50
SHARDS = 40
ROWS = SHARD * SHARDS


def _order(window, seed=1, epoch=0, shard_rows=None, name="d", rows=ROWS):
    return dataset_order(
        rows, seed, epoch, name, shuffle_window=window, shard_rows=shard_rows, shuffle_block_size=SHARD
    )


@pytest.mark.parametrize("window", [1, 3, 8, 39])
def test_every_row_exactly_once(window):
    order = _order(window)
    assert order.dtype == np.int64
    np.testing.assert_array_equal(np.sort(order), np.arange(ROWS))


def test_uneven_row_groups_every_row_exactly_once():
    groups = [7, 0, 130, 1, 64, 64, 3, 500, 12]
    order = _order(2, shard_rows=groups, rows=sum(groups))
    np.testing.assert_array_equal(np.sort(order), np.arange(sum(groups)))


def test_deterministic_per_seed_epoch_and_name():
    one = _order(4, seed=3, epoch=2)
    np.testing.assert_array_equal(one, _order(4, seed=3, epoch=2))
    assert not np.array_equal(one, _order(4, seed=3, epoch=3))  # another epoch, another order
    assert not np.array_equal(one, _order(4, seed=4, epoch=2))
    assert not np.array_equal(one, _order(4, seed=3, epoch=2, name="e"))
    # the shard order itself changes between epochs, not only the rows inside a window
    first_shards = [set(shard_of_rows([SHARD] * SHARDS)[_order(4, epoch=e)[: 4 * SHARD]]) for e in (0, 1)]
    assert first_shards[0] != first_shards[1]


def test_default_is_the_unchanged_full_permutation():
    full = dataset_order(ROWS, 1, 0, "d")
    np.testing.assert_array_equal(_order(None), full)
    np.testing.assert_array_equal(_order(0), full)
    # the full permutation has no locality: the first window's worth of rows touches nearly every shard
    assert len(set((full[: 4 * SHARD] // SHARD).tolist())) > SHARDS * 0.9


@pytest.mark.parametrize("window", [1, 2, 5, 8])
def test_locality_any_span_of_window_shards_touches_at_most_two_windows(window):
    order = _order(window)
    shard = order // SHARD
    span = window * SHARD
    worst = max(len(set(shard[i : i + span].tolist())) for i in range(0, ROWS - span + 1, 7))
    assert worst <= 2 * window
    # a span that starts at a window boundary touches exactly that window's shards
    for start in range(0, ROWS - span + 1, span):
        assert len(set(shard[start : start + span].tolist())) == window
    # and inside a window the rows are mixed, not left in shard order
    if window > 1:
        assert len(set(shard[:SHARD].tolist())) == window


def test_window_covering_every_shard_is_the_full_permutation():
    full = dataset_order(ROWS, 1, 0, "d")
    np.testing.assert_array_equal(_order(SHARDS), full)
    np.testing.assert_array_equal(_order(10 * SHARDS), full)
    empty_groups = [SHARD] * SHARDS + [0, 0]  # empty row groups do not count as shards
    np.testing.assert_array_equal(_order(SHARDS, shard_rows=empty_groups), full)


def test_row_groups_are_the_shards_when_known():
    groups = [100, 300, 100, 500, 1000]
    order = _order(2, shard_rows=groups, rows=sum(groups))
    shard = shard_of_rows(groups)[order]
    # windows follow the given groups: the first window is exactly two whole groups, mixed
    first = int(shard[0])
    second = next(s for s in shard.tolist() if s != first)
    size = groups[first] + groups[second]
    assert set(shard[:size].tolist()) == {first, second}
    assert not {first, second} & set(shard[size:].tolist())


def test_shard_sizes_must_partition_the_dataset():
    with pytest.raises(ValueError, match=r"dataset 'd'.*add up to 99 rows.*has 100 rows"):
        dataset_order(100, 0, 0, "d", shuffle_window=2, shard_rows=[50, 49])
    with pytest.raises(ValueError, match="shuffle_block_size must be >= 1"):
        block_rows(10, 0)
    with pytest.raises(ValueError, match="shuffle_window must be >= 1"):
        window_order([5, 5], 0, 0, "d", -1)


def test_blocks_cover_the_rows():
    assert block_rows(10, 4) == [4, 4, 2]
    assert block_rows(8, 4) == [4, 4]
    assert block_rows(0, 4) == []


@pytest.mark.parametrize("after_world", [1, 3, 4])
def test_resume_on_another_world_size_continues_the_windowed_order_exactly(after_world):
    per_device, window = 5, 3
    kwargs = dict(shuffle_window=window, shuffle_block_size=SHARD)
    before = EpochPlan({"d": ROWS}, per_device, 2, seed=3, epoch=1, **kwargs)
    trained = [before.global_rows(s)[1] for s in range(17)]
    consumed = before.consumed_through(17)
    assert len(consumed["d"]) == 17 * 10 and not isinstance(consumed["d"], int)  # row ids: rank stripes
    after = EpochPlan({"d": ROWS}, per_device, after_world, seed=3, epoch=1, consumed=consumed, **kwargs)
    rest = [np.concatenate([after.rows(s, r)[1] for r in range(after_world)]) for s in range(len(after))]
    used = np.concatenate(trained + rest)
    order = _order(window, seed=3, epoch=1)
    assert len(set(used.tolist())) == len(used)  # no row twice
    # the rest of the windowed order, each new rank walking its own stretch of it; nothing skipped
    left = order[~np.isin(order, np.concatenate(trained))]
    np.testing.assert_array_equal(
        np.concatenate(rest), np.concatenate(rank_striped_batches(left, per_device, after_world))
    )
    assert ROWS - len(used) < per_device * after_world  # only the last partial batch is dropped


def test_plan_uses_the_sources_row_groups():
    groups = {"a": [64, 64, 64, 64], "b": [30, 30, 30, 30, 30, 30]}
    sizes = {n: sum(g) for n, g in groups.items()}
    plan = EpochPlan(sizes, 8, 2, seed=0, epoch=0, shuffle_window=2, shard_rows=groups)
    for name, shards in groups.items():
        expected = dataset_order(sizes[name], 0, 0, name, shuffle_window=2, shard_rows=shards)
        expected = np.concatenate(rank_striped_batches(expected, 8, 2))  # rank stripes of the order
        rows = np.concatenate([plan.global_rows(s)[1] for s in range(len(plan)) if plan.schedule[s] == name])
        np.testing.assert_array_equal(rows, expected[: len(rows)])


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [True, False])
def test_rank_stripes_give_each_rank_its_own_stretch_and_every_row_once(world, drop_last):
    groups = [50] * 40  # 2000 rows, 40 shards
    rows, per_device, window = sum(groups), 8, 4
    plan = EpochPlan(
        {"d": rows},
        per_device,
        world,
        3,
        0,
        shuffle_window=window,
        shard_rows={"d": groups},
        drop_last=drop_last,
    )
    order = dataset_order(rows, 3, 0, "d", shuffle_window=window, shard_rows=groups)
    full = len(order) // (per_device * world)
    per_rank = [np.concatenate([plan.rows(s, r)[1] for s in range(full)]) for r in range(world)]
    for r, got in enumerate(per_rank):  # rank r walks the r-th stretch of the windowed order, in order
        np.testing.assert_array_equal(got, order[r * full * per_device : (r + 1) * full * per_device])
    trained = np.concatenate([plan.global_rows(s)[1] for s in range(len(plan))])
    assert len(set(trained.tolist())) == len(trained)  # no row twice
    assert len(trained) == (rows if not drop_last else full * per_device * world)
    # locality: a rank's rows of the whole epoch come from about its share of the shards (+ the window edges)
    shard = shard_of_rows(groups)
    for got in per_rank:
        assert len(set(shard[got].tolist())) <= len(groups) // world + 2 * window
    # what a checkpoint records is row ids (not a prefix of the order), and they plan the rest exactly
    done = plan.consumed_through(5)
    assert not isinstance(done["d"], int) and len(done["d"]) == 5 * per_device * world
    rest = EpochPlan(
        {"d": rows},
        per_device,
        world + 1,
        3,
        0,
        shuffle_window=window,
        shard_rows={"d": groups},
        consumed=done,
    )
    again = np.concatenate([rest.global_rows(s)[1] for s in range(len(rest))])
    assert not set(again.tolist()) & set(done["d"].tolist())
    assert rows - len(again) - len(done["d"]) < per_device * (world + 1)
