"""``shuffle_window`` from the config / training arguments to the plan a worker trains on (no Ray).

References: ``dataset_order`` with the same window and shards, the Parquet footers the shards come from, and the
full permutation for the default.
"""

from __future__ import annotations

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
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.cursor import DataCursor

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
    plan = cursor.plan(0)
    return np.concatenate([plan.global_rows(s)[1] for s in range(len(plan))])


def test_the_cursor_plans_with_the_sources_row_groups_and_the_window(tmp_path):
    groups = [40, 20, 60, 40, 80]
    cursor = DataCursor({"d": _source(groups)}, _args(tmp_path, shuffle_window=2), rank=0, world_size=2)
    expected = dataset_order(ROWS, 5, 0, "d", shuffle_window=2, shard_rows=groups)
    assert not np.array_equal(expected, dataset_order(ROWS, 5, 0, "d"))
    np.testing.assert_array_equal(_cursor_rows(cursor), expected[: len(_cursor_rows(cursor))])


def test_without_row_groups_the_shards_are_blocks_of_shuffle_block_size(tmp_path):
    args = _args(tmp_path, shuffle_window=3, shuffle_block_size=16)
    cursor = DataCursor({"d": _source(None)}, args, rank=1, world_size=2)
    expected = dataset_order(ROWS, 5, 0, "d", shuffle_window=3, shard_rows=[16] * 15)
    rows = _cursor_rows(cursor)
    np.testing.assert_array_equal(rows, expected[: len(rows)])
    assert len(set((rows[: 3 * 16] // 16).tolist())) == 3  # the first window: three blocks


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
