"""``RowGroupReader``: rows by index from Parquet row groups, a size-capped LRU cache, background prefetch and
byte accounting, on local files and on ``s3://`` (a moto S3 server on localhost); and Parquet inputs read in place
by ``prepare_sources`` (footers only on the driver, no staged copy)."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raystx.data.readers import conform, parquet_layout, parquet_schema
from raystx.data.shard_reader import RowGroupReader
from raystx.data.sources import prepare_sources
from raystx.testing import make_sentences

ROWS_PER_GROUP = 10


def _rows(n: int, start: int = 0) -> list[dict]:
    texts = make_sentences(n + start, seed=3)
    return [{"q": texts[i], "d": f"doc {i}", "label": float(i)} for i in range(start, start + n)]


def _write(path, rows, group=ROWS_PER_GROUP, filesystem=None) -> str:
    pq.write_table(pa.Table.from_pylist(rows), str(path), row_group_size=group, filesystem=filesystem)
    return str(path)


def _reader(files, tmp_path, columns=("q", "label"), cap=None) -> RowGroupReader:
    schema = parquet_schema(files)
    shard_rows, groups = parquet_layout(files)
    return RowGroupReader(files, schema, list(columns), shard_rows, groups, str(tmp_path / "cache"), cap)


def _group_bytes(files, g_file, g, columns) -> int:
    meta = pq.ParquetFile(files[g_file]).metadata.row_group(g)
    return sum(
        meta.column(i).total_compressed_size
        for i in range(meta.num_columns)
        if meta.column(i).path_in_schema in columns
    )


def test_rows_in_the_order_asked_across_files_and_mixed_schemas(tmp_path):
    rows = _rows(45)
    # the second file has no "d" column and stores the label as an int: unified to the first file's schema
    second = [{"q": r["q"], "label": int(r["label"])} for r in rows[25:]]
    files = [_write(tmp_path / "a.parquet", rows[:25]), _write(tmp_path / "b.parquet", second)]
    reader = _reader(files, tmp_path, columns=("q", "d", "label"))
    assert len(reader) == 45 and reader.num_row_groups == 3 + 2
    order = [44, 0, 26, 24, 25, 9, 10, 44]
    got = reader[order]
    assert got == {
        "q": [rows[i]["q"] for i in order],
        "d": [rows[i]["d"] if i < 25 else None for i in order],
        "label": [float(i) for i in order],
    }
    assert reader["label"] == [float(i) for i in range(45)]  # a whole column, file by file
    assert reader[[]] == {"q": [], "d": [], "label": []}
    with pytest.raises(IndexError, match="45"):
        reader[[45]]


def test_only_the_row_groups_asked_for_are_read_and_counted(tmp_path):
    files = [_write(tmp_path / "a.parquet", _rows(50))]
    reader = _reader(files, tmp_path, columns=("q",))
    reader[[3, 7, 41]]  # row groups 0 and 4
    stats = reader.stats()
    assert stats["row_groups_read"] == 2 and stats["row_group_ids"] == [0, 4]
    # bytes read: the compressed chunks of the one column read, in those two row groups, and nothing else
    assert stats["bytes_read"] == _group_bytes(files, 0, 0, {"q"}) + _group_bytes(files, 0, 4, {"q"})
    assert stats["bytes_written"] == 0  # a local file is read in place: nothing copied
    reader[[5, 45]]
    assert reader.stats()["row_groups_read"] == 2 and reader.stats()["cache_hits"] == 2
    assert not (tmp_path / "cache").exists()


def test_the_cache_is_capped_and_evicts_the_least_recently_used(tmp_path):
    files = [_write(tmp_path / "a.parquet", _rows(60))]
    probe = _reader(files, tmp_path)
    one = probe.row_group(0).nbytes
    reader = _reader(files, tmp_path, cap=int(2.5 * one))  # room for two row groups
    for g in (0, 1, 0, 2):  # 0 used again before 2 arrives: 1 is the least recently used
        reader[[g * ROWS_PER_GROUP]]
    assert reader.cached_groups() == [0, 2]
    assert reader.cache_bytes <= 2.5 * one
    stats = reader.stats()
    assert stats["evictions"] == 1 and stats["row_groups_read"] == 3 and stats["cache_hits"] == 1
    assert stats["peak_cache_bytes"] <= 2.5 * one
    reader[[ROWS_PER_GROUP + 1]]  # evicted, so read again
    assert reader.stats()["row_groups_read"] == 4
    # a cap below one row group still serves rows (the group being read is never evicted)
    tiny = _reader(files, tmp_path, cap=1)
    assert tiny[[59, 0]]["label"] == [59.0, 0.0]
    assert tiny.cached_groups() == [5]  # the last row group read (groups are read in order)


def test_prefetch_reads_upcoming_row_groups_in_the_background(tmp_path):
    files = [_write(tmp_path / "a.parquet", _rows(60))]
    reader = _reader(files, tmp_path)
    reader.prefetch(np.array([12, 35, 38]))  # row groups 1 and 3
    deadline = time.monotonic() + 10
    while reader.stats()["row_groups_read"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(reader.cached_groups()) == [1, 3]
    assert reader[[35, 12]]["label"] == [35.0, 12.0]
    stats = reader.stats()
    assert stats["row_groups_read"] == 2 and stats["cache_hits"] == 2  # served from what was prefetched
    reader.prefetch([12])  # held already: nothing more read
    reader.close()
    assert reader.stats()["row_groups_read"] == 2 and reader.cache_bytes == 0


def test_training_source_opens_a_row_group_reader_and_pickles_small(tmp_path):
    import pickle

    rows = _rows(30)
    files = [_write(tmp_path / "a.parquet", rows)]
    (src,) = prepare_sources(files[0], staging_dir=str(tmp_path / "stage")).values()
    # read in place: the user's file, no staged copy, the layout from the footer
    assert src.staged_files == files and not (tmp_path / "stage").exists()
    assert src.shard_rows == [10, 10, 10] and src.groups_per_file == [3]
    assert "read in place" in src.origin
    opened = src.open()
    assert isinstance(opened, RowGroupReader) and opened.column_names == ["q", "d", "label"]
    assert src.take([29, 3]) == {c: [rows[29][c], rows[3][c]] for c in ["q", "d", "label"]}
    assert src.peek([29, 3]) == src.take([29, 3])
    back = pickle.loads(pickle.dumps(src))
    assert back._opened is None and back.take([7]) == src.take([7])
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(opened)


def test_a_prepared_source_passes_through_prepare_sources(tmp_path):
    files = [_write(tmp_path / "a.parquet", _rows(30))]
    (src,) = prepare_sources(files[0], staging_dir=str(tmp_path / "stage")).values()
    (again,) = prepare_sources({"other": src}, staging_dir=str(tmp_path / "stage")).values()
    assert again.name == "other" and again.staged_files == src.staged_files and src.name == "train"
    (picked,) = prepare_sources(src, staging_dir=str(tmp_path), select_columns=["d", "q"]).values()
    assert picked.columns == ["d", "q"] and picked.take([1]) == {"d": ["doc 1"], "q": [src.take([1])["q"][0]]}


def test_an_unreadable_parquet_input_is_named_on_the_driver(tmp_path):
    from raystx.data.errors import DatasetReadError

    good = _write(tmp_path / "a.parquet", _rows(5))
    bad = tmp_path / "b.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DatasetReadError, match="b.parquet") as info:
        prepare_sources([good, str(bad)], staging_dir=str(tmp_path / "stage"), name="pairs")
    assert info.value.dataset == "pairs"


# ------------------------------------------------------------------------------------------- s3 (moto)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_bucket():
    """A moto S3 server on localhost with one bucket; the endpoint and fake credentials in the environment."""
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "FAKEaccess",
        "AWS_SECRET_ACCESS_KEY": "FAKEsecret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket="shards")
        yield "shards"
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_remote_row_groups_go_through_the_local_disk_cache(s3_bucket, tmp_path):
    from pyarrow import fs as pafs

    s3fs, _ = pafs.FileSystem.from_uri(f"s3://{s3_bucket}/")
    rows = _rows(40)
    _write(f"{s3_bucket}/data/a.parquet", rows, filesystem=s3fs)
    uri = f"s3://{s3_bucket}/data/a.parquet"
    (src,) = prepare_sources(uri, staging_dir=str(tmp_path / "stage")).values()
    assert src.staged_files == [uri] and src.shard_rows == [10] * 4  # read in place, footer only
    schema = parquet_schema([uri])
    reader = RowGroupReader(
        [uri],
        schema,
        ["q", "label"],
        src.shard_rows,
        src.groups_per_file,
        str(tmp_path / "cache"),
        max_cache_bytes=10**9,
    )
    assert reader[[31, 2, 35]] == {"q": [rows[i]["q"] for i in (31, 2, 35)], "label": [31.0, 2.0, 35.0]}
    files = sorted(os.listdir(tmp_path / "cache"))
    assert len(files) == 2 and all(f.endswith(".arrow") for f in files)  # row groups 0 and 3 only
    stats = reader.stats()
    on_disk = sum(os.path.getsize(tmp_path / "cache" / f) for f in files)
    assert stats["row_groups_read"] == 2 and stats["bytes_written"] == on_disk == reader.cache_bytes
    local = _write(tmp_path / "copy.parquet", rows)
    assert stats["bytes_read"] == _group_bytes([local], 0, 0, {"q", "label"}) + _group_bytes(
        [local], 0, 3, {"q", "label"}
    )
    expected = conform(
        pa.Table.from_pylist(rows[30:40]), pa.schema([schema.field("q"), schema.field("label")])
    )
    assert reader.row_group(3).equals(expected)
    reader.close()
    assert os.listdir(tmp_path / "cache") == []  # the reader's files are gone


def test_concurrent_reads_and_prefetches_give_the_right_rows(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    rows = _rows(200)
    files = [_write(tmp_path / "a.parquet", rows[:120]), _write(tmp_path / "b.parquet", rows[120:])]
    reader = _reader(files, tmp_path, cap=3 * _reader(files, tmp_path).row_group(0).nbytes)  # evicting a lot
    rng = np.random.default_rng(0)
    picks = [rng.integers(0, 200, size=16).tolist() for _ in range(60)]

    def read(k: int) -> dict:
        reader.prefetch(picks[(k + 1) % len(picks)])
        return reader[picks[k]]

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(read, range(len(picks))))
    for pick, out in zip(picks, got):
        assert out == {"q": [rows[i]["q"] for i in pick], "label": [float(i) for i in pick]}
    assert reader.cache_bytes <= reader.max_cache_bytes + reader.row_group(0).nbytes
    reader.close()
