"""Every supported input reaches a TrainingSource with the right columns, row count and values (Ray Data)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import datasets
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from conftest import make_sentences

from raystx.data.sources import prepare_sources, validate_sources
from raystx.losses.base import ColumnContract, RaystxLoss

pytestmark = pytest.mark.ray


class PairScoreLoss(RaystxLoss):
    contract = ColumnContract(2, 2, "float")


def _rows(n: int = 9, seed: int = 0) -> list[dict]:
    """Rows whose texts hold quotes, commas and digits-only strings (which must stay text)."""
    a, b = make_sentences(n, seed), make_sentences(n, seed + 1)
    out = []
    for i in range(n):
        first = a[i]
        if i % 3 == 0:
            first = f'he said "{first}", then left'
        elif i % 3 == 1:
            first = str(1000 + i)
        out.append({"anchor": first, "positive": b[i], "score": round(i / n, 4)})
    return out


def _columns(rows: list[dict]) -> dict[str, list]:
    return {c: [r[c] for r in rows] for c in rows[0]}


def _write(path, rows, fmt):
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "tsv":
        with open(path, "w", encoding="utf-8") as f:
            f.write("\t".join(rows[0]) + "\n")
            for r in rows:
                f.write("\t".join(str(v) for v in r.values()) + "\n")
    elif fmt == "json":
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "feather":
        feather.write_feather(pa.Table.from_pylist(rows), path)
    elif fmt == "arrow":  # the Hugging Face cache format (an Arrow IPC stream)
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet", "feather", "arrow"])
def test_each_format_round_trips(ray_session, tmp_path, fmt):
    rows = _rows()
    path = _write(tmp_path / f"pairs.{fmt}", rows, fmt)
    sources = prepare_sources(path, staging_dir=str(tmp_path / "stage"), name="sts")
    src = sources["sts"]
    assert (src.input_columns, src.label_column, src.num_rows) == (["anchor", "positive"], "score", len(rows))
    assert src.take(range(len(rows))) == _columns(rows)
    assert src.column_type("anchor") in (pa.string(), pa.large_string())
    if fmt == "parquet":  # read in place: the workers read the user's file, nothing is staged
        assert src.staged_files == [path] and not (tmp_path / "stage").exists()
    else:
        assert all(f.startswith(str(tmp_path / "stage" / "sts")) for f in src.staged_files)
    footers = [pq.ParquetFile(f).metadata for f in src.staged_files]
    # the shards of a windowed shuffle: every staged row group, in file order
    assert src.shard_rows == [m.row_group(g).num_rows for m in footers for g in range(m.num_row_groups)]
    assert sum(src.shard_rows) == len(rows)
    assert validate_sources(sources, PairScoreLoss, global_batch_size=4) == {"sts": PairScoreLoss.contract}


def test_csv_quoted_newlines_and_integer_labels(ray_session, tmp_path):
    rows = [
        {"premise": "line one\nline two", "hypothesis": 'a "quoted" text', "label": i % 3} for i in range(6)
    ]
    path = _write(tmp_path / "nli.csv", rows, "csv")
    (src,) = prepare_sources(path, staging_dir=str(tmp_path / "stage")).values()
    assert src.column_type("label") == pa.int64()
    assert src.take(range(6)) == _columns(rows)


def test_hf_saved_arrow_file(ray_session, tmp_path):
    rows = _rows(12)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    (arrow_file,) = [p for p in os.listdir(tmp_path / "saved") if p.endswith(".arrow")]
    (src,) = prepare_sources(str(tmp_path / "saved" / arrow_file), staging_dir=str(tmp_path / "st")).values()
    assert src.take(range(12)) == _columns(rows)


def test_glob_list_and_directory_keep_file_order(ray_session, tmp_path):
    rows = _rows(12)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        _write(data / f"part-{i}.jsonl", rows[4 * i : 4 * i + 4], "jsonl")
    (data / "_SUCCESS").write_text("")
    (data / ".hidden.jsonl").write_text("not json")
    expected = _columns(rows)
    by_glob = prepare_sources(str(data / "part-*.jsonl"), staging_dir=str(tmp_path / "s1"))["train"]
    assert by_glob.take(range(12)) == expected
    by_dir = prepare_sources(str(data), staging_dir=str(tmp_path / "s2"))["train"]
    assert by_dir.take(range(12)) == expected
    by_list = prepare_sources(
        [str(data / "part-2.jsonl"), str(data / "part-0.jsonl")], staging_dir=str(tmp_path / "s3")
    )["train"]
    assert by_list.take(range(8)) == _columns(rows[8:] + rows[:4])


def test_dict_of_iterable_datasets(ray_session, tmp_path):
    rows_a, rows_b = _rows(10, seed=1), _rows(7, seed=2)

    def gen():
        yield from rows_b

    iterables = {
        "a": datasets.Dataset.from_list(rows_a).to_iterable_dataset(num_shards=3),
        "b": datasets.IterableDataset.from_generator(gen),  # no features known up front
    }
    sources = prepare_sources(iterables, staging_dir=str(tmp_path / "stage"))
    assert list(sources) == ["a", "b"]
    assert sources["a"].num_rows == 10 and sources["b"].num_rows == 7
    assert sources["a"].take(range(10)) == _columns(rows_a)
    assert sources["b"].take(range(7)) == _columns(rows_b)
    assert sorted(os.listdir(tmp_path / "stage")) == ["a", "b"]
    dd = datasets.IterableDatasetDict({"x": datasets.Dataset.from_list(rows_a).to_iterable_dataset()})
    assert prepare_sources(dd, staging_dir=str(tmp_path / "stage2"))["x"].take([9]) == _columns(rows_a[9:])


def test_ray_dataset_and_restaging(ray_session, tmp_path):
    import ray

    rows = _rows(20)
    staging = str(tmp_path / "stage")
    for _ in range(2):  # staging twice replaces the first copy instead of adding to it
        (src,) = prepare_sources({"r": ray.data.from_items(rows)}, staging_dir=staging).values()
    assert src.num_rows == 20
    got = src.take(range(20))
    assert sorted(zip(*got.values())) == sorted(zip(*_columns(rows).values()))
    assert os.listdir(tmp_path / "stage") == ["r"]


def test_source_opens_on_a_ray_worker(ray_session, tmp_path):
    import ray

    rows = _rows(8)
    (src,) = prepare_sources(
        _write(tmp_path / "x.parquet", rows, "parquet"), staging_dir=str(tmp_path / "s")
    ).values()

    @ray.remote
    def read_on_worker(source, indices):
        return source.take(indices), type(source.open()).__name__, source.open().stats()["row_groups_read"]

    taken, table_kind, groups_read = ray.get(read_on_worker.remote(src, [7, 2]))
    assert taken == _columns([rows[7], rows[2]])
    assert table_kind == "RowGroupReader" and groups_read == 1


_MAKE_BIG = """
import sys, pyarrow as pa, pyarrow.parquet as pq
n, path = int(sys.argv[1]), sys.argv[2]
schema = pa.schema([("anchor", pa.string()), ("positive", pa.string()), ("score", pa.float64())])
with pq.ParquetWriter(path, schema) as w:
    for start in range(0, n, 100_000):
        ids = range(start, min(n, start + 100_000))
        w.write_table(pa.table({"anchor": [f"query number {i} about cats and dogs" for i in ids],
                                "positive": [f"a document that answers query {i} in some detail" for i in ids],
                                "score": [(i % 100) / 100 for i in ids]}, schema=schema))
"""


@pytest.mark.slow
def test_driver_memory_stays_flat_for_a_million_rows(ray_session, tmp_path):
    """Staging and validating a 1M-row Parquet file keeps the driver's Arrow memory and RSS flat."""
    import resource

    path = str(tmp_path / "big.parquet")
    subprocess.run([sys.executable, "-c", _MAKE_BIG, "1000000", path], check=True)
    data_bytes = pq.read_metadata(path).row_group(0).total_byte_size * pq.read_metadata(path).num_row_groups
    # Warm up: the first Ray Data run imports and starts its executor on the driver.
    small = _write(tmp_path / "small.parquet", _rows(8), "parquet")
    validate_sources(
        prepare_sources(small, staging_dir=str(tmp_path / "warm")), PairScoreLoss, global_batch_size=4
    )
    pool = pa.default_memory_pool()
    before_arrow = pool.max_memory()
    before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sources = prepare_sources(path, staging_dir=str(tmp_path / "stage"))
    validate_sources(sources, PairScoreLoss, global_batch_size=64)
    assert sources["train"].num_rows == 1_000_000
    grown_arrow = pool.max_memory() - before_arrow
    grown_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before_rss
    assert data_bytes > 50_000_000
    assert grown_arrow < data_bytes / 5, (grown_arrow, data_bytes)
    assert grown_rss < data_bytes / 2, (grown_rss, data_bytes)
