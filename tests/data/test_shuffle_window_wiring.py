"""``shuffle_window`` from the config / training arguments to the plan a worker trains on (no Ray).

References: ``dataset_order`` with the same window and shards, the Parquet footers the shards come from, and the
full permutation for the default.
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from raystx.config import load_config
from raystx.data.readers import parquet_row_groups
from raystx.data.schedule import dataset_order
from raystx.data.sources import TrainingSource
from raystx.data.window_shuffle import rank_striped_batches
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.cursor import DataCursor
from raystx.train.state import DATA_POSITION_FILE, CheckpointState

ROWS = 240


def _source(shard_rows=None) -> TrainingSource:
    ds = datasets.Dataset.from_dict(
        {"a": [f"a{i}" for i in range(ROWS)], "b": [f"b{i}" for i in range(ROWS)]}
    )
    return TrainingSource("d", ["a", "b"], None, ROWS, dataset=ds, shard_rows=shard_rows)


def _args(tmp_path, **kwargs) -> SentenceTransformerTrainingArguments:
    return SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, seed=5, **kwargs
    )


def _cursor_rows(cursor: DataCursor) -> np.ndarray:
    """The rows of every global step the cursor has left in epoch 0."""
    plan = cursor.plan(0)
    return np.concatenate([plan.global_rows(s)[1] for s in range(cursor.step_in_epoch, len(plan))])


def _striped(order: np.ndarray, world_size: int) -> np.ndarray:
    """A windowed order as the global batches take it: each rank walks its own stretch (rank stripes)."""
    return np.concatenate(rank_striped_batches(order, 4, world_size))


def test_the_cursor_plans_with_the_sources_row_groups_and_the_window(tmp_path):
    groups = [40, 20, 60, 40, 80]
    cursor = DataCursor({"d": _source(groups)}, _args(tmp_path, shuffle_window=2), rank=0, world_size=2)
    expected = dataset_order(ROWS, 5, 0, "d", shuffle_window=2, shard_rows=groups)
    assert not np.array_equal(expected, dataset_order(ROWS, 5, 0, "d"))
    np.testing.assert_array_equal(_cursor_rows(cursor), _striped(expected, 2))
    # rank r trains only rows of the r-th half of the windowed order
    plan = cursor.plan(0)
    for rank in (0, 1):
        rows = np.concatenate([plan.rows(s, rank)[1] for s in range(len(plan))])
        np.testing.assert_array_equal(np.sort(rows), np.sort(expected[rank * 120 : (rank + 1) * 120]))


def test_without_row_groups_the_shards_are_blocks_of_shuffle_block_size(tmp_path):
    args = _args(tmp_path, shuffle_window=3, shuffle_block_size=16)
    cursor = DataCursor({"d": _source(None)}, args, rank=1, world_size=2)
    expected = dataset_order(ROWS, 5, 0, "d", shuffle_window=3, shard_rows=[16] * 15)
    rows = _cursor_rows(cursor)
    np.testing.assert_array_equal(rows, _striped(expected, 2))
    assert len(set((expected[: 3 * 16] // 16).tolist())) == 3  # the first window: three blocks


def test_the_default_is_the_full_permutation(tmp_path):
    cursor = DataCursor({"d": _source([40] * 6)}, _args(tmp_path), rank=0, world_size=2)
    rows = _cursor_rows(cursor)
    np.testing.assert_array_equal(rows, dataset_order(ROWS, 5, 0, "d")[: len(rows)])


def test_row_groups_come_from_the_parquet_footers(tmp_path):
    files = []
    for k, (n, group) in enumerate([(10, 3), (7, 7), (5, 2)]):
        path = tmp_path / f"part-{k}.parquet"
        pq.write_table(pa.table({"a": [str(i) for i in range(n)]}), path, row_group_size=group)
        files.append(str(path))
    assert parquet_row_groups(files) == [3, 3, 3, 1, 7, 2, 2, 1]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"shuffle_window": -1}, "shuffle_window must be a number of shards >= 1, or None"),
        ({"shuffle_block_size": 0}, "shuffle_block_size must be >= 1 rows"),
    ],
)
def test_bad_values_fail_validation_naming_the_field(tmp_path, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        _args(tmp_path, **kwargs).validate()
    _args(tmp_path, shuffle_window=0).validate()  # 0 is the documented full permutation
    _args(tmp_path, shuffle_window=8, shuffle_block_size=1).validate()


def test_a_yaml_window_reaches_the_training_arguments(tmp_path):
    raw = {
        "model": {"name_or_path": "m"},
        "train_data": {"pairs": {"path": str(tmp_path / "p.csv")}},
        "loss": {"type": "CoSENTLoss"},
        "args": {"output_dir": str(tmp_path / "out"), "shuffle_window": 8, "shuffle_block_size": 4096},
    }
    (tmp_path / "p.csv").write_text("s1,s2,score\na,b,1\n", encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    cfg = load_config(path)
    args = SentenceTransformerTrainingArguments(**cfg.args)
    assert (args.shuffle_window, args.shuffle_block_size) == (8, 4096)


def _checkpoint(cursor: DataCursor, steps: int, tmp_path) -> tuple[CheckpointState, np.ndarray]:
    """A checkpoint after ``steps`` more steps of ``cursor`` (through JSON and the .npz, as on disk), and the
    rows those steps trained."""
    plan, begin = cursor.plan(0), cursor.step_in_epoch
    trained = np.concatenate([plan.global_rows(s)[1] for s in range(begin, begin + steps)])
    cursor.step_in_epoch = begin + steps
    position, arrays = cursor.position()
    if arrays:
        np.savez(tmp_path / DATA_POSITION_FILE, **arrays)
    state = CheckpointState(steps, 0, steps, world_size=cursor.world_size, data_position=position)
    return CheckpointState.from_json(json.loads(json.dumps(state.to_json()))), trained


@pytest.mark.parametrize(("before", "after"), [(None, 3), (3, None), (2, 5)])
@pytest.mark.parametrize("after_world", [2, 3])
def test_resume_with_another_window_trains_every_row_at_most_once(tmp_path, before, after, after_world):
    groups = [40] * 6
    first = DataCursor({"d": _source(groups)}, _args(tmp_path, shuffle_window=before), rank=0, world_size=2)
    state, trained = _checkpoint(first, 7, tmp_path)
    assert state.data_position.shuffle_window == before
    second = DataCursor(
        {"d": _source(groups)}, _args(tmp_path, shuffle_window=after), rank=0, world_size=after_world
    )
    assert second.restore(state, tmp_path) is True  # re-planned, not replayed in another order
    rest = _cursor_rows(second)
    used = np.concatenate([trained, rest])
    assert len(set(used.tolist())) == len(used)  # no row twice
    assert ROWS - len(used) < 4 * after_world  # only a last partial global batch is left out
    # the rest follows the new order, without the trained rows
    new_order = dataset_order(ROWS, 5, 0, "d", shuffle_window=after, shard_rows=groups)
    expected = new_order[~np.isin(new_order, trained)]
    if after:  # a window: each rank walks its own stretch of what is left
        expected = _striped(expected, after_world)
    np.testing.assert_array_equal(rest, expected[: len(rest)])
    # and a checkpoint of the re-planned epoch resumes again without repeats
    second_state, second_trained = _checkpoint(second, 3, tmp_path)
    third = DataCursor({"d": _source(groups)}, _args(tmp_path, shuffle_window=after), rank=0, world_size=2)
    third.restore(second_state, tmp_path)
    used = np.concatenate([trained, second_trained, _cursor_rows(third)])
    assert len(set(used.tolist())) == len(used)


def test_resume_with_the_same_window_replays_the_same_plan(tmp_path):
    groups = [40] * 6
    first = DataCursor({"d": _source(groups)}, _args(tmp_path, shuffle_window=2), rank=0, world_size=2)
    state, _ = _checkpoint(first, 7, tmp_path)
    second = DataCursor({"d": _source(groups)}, _args(tmp_path, shuffle_window=2), rank=0, world_size=2)
    assert second.restore(state, tmp_path) is False
    assert second.step_in_epoch == first.step_in_epoch == 7
    np.testing.assert_array_equal(_cursor_rows(second), _cursor_rows(first))


def test_an_older_windowed_checkpoint_is_read_as_the_prefix_it_trained(tmp_path):
    """Before rank stripes a windowed run trained a prefix of the order and recorded a count: resuming it now
    continues without exactly those rows (each new rank on its stretch of the rest)."""
    from raystx.train.state import DataPosition

    groups = [40] * 6
    order = dataset_order(ROWS, 5, 0, "d", shuffle_window=2, shard_rows=groups)
    position = DataPosition(
        epoch=0,
        global_batch_size=8,
        datasets=["d"],
        rows_consumed={"d": 56},
        shuffle_window=2,
        shuffle_block_size=8192,
    )
    state = CheckpointState(7, 0, 7, world_size=2, global_batch_size=8, data_position=position)
    cursor = DataCursor({"d": _source(groups)}, _args(tmp_path, shuffle_window=2), rank=0, world_size=2)
    assert cursor.restore(state, tmp_path) is True  # re-planned (the old plan was not striped)
    rest = _cursor_rows(cursor)
    np.testing.assert_array_equal(rest, _striped(order[56:], 2))
