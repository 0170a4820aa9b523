"""The driver's side of staging while the workers start, without Ray: reading the first rows (``raystx.data.head``),
deferring large inputs in ``prepare_sources(defer=True)``, checking a pending source on its first rows, the
switch back to the sequential path, and the workers' wait as a no-op without pending sources. The Ray side
(the background pass, the wait, exact weights, failures after the sample) is in
``tests/train/test_staging_overlap_ray.py``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pytest

from raystx.data import background
from raystx.data.errors import DatasetReadError, DatasetValidationError
from raystx.data.head import head_of_files, head_of_iterable, total_bytes
from raystx.data.sources import prepare_sources, validate_sources

ROWS = 50


def _csv(path: Path, rows: int = ROWS, sep: str = ",") -> Path:
    lines = [sep.join(["anchor", "positive", "score"])]
    lines += [sep.join([f"q {i}", str(1000 + i), f"{(i % 5) / 4:.2f}"]) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _ray_data_read(path: Path, fmt: str) -> pa.Table:
    """What Ray Data's CSV reader (``readers.read_files``' options) makes of the whole file, with pyarrow."""
    parse = (
        pacsv.ParseOptions(delimiter="\t", quote_char=False)
        if fmt == "tsv"
        else pacsv.ParseOptions(delimiter=",", newlines_in_values=True)
    )
    text = {"anchor": pa.string(), "positive": pa.string()}
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=parse,
        convert_options=pacsv.ConvertOptions(column_types=text),
    )


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_the_head_of_a_csv_is_its_first_rows_as_the_full_read_types_them(tmp_path, fmt):
    path = _csv(tmp_path / f"pairs.{fmt}", sep="\t" if fmt == "tsv" else ",")
    head = head_of_files("train", [str(path)], fmt, 7)
    full = _ray_data_read(path, fmt)
    assert head.schema == full.schema  # the digits-only column stays text, the score is a float
    assert head.to_pydict() == full.slice(0, 7).to_pydict()
    assert head_of_files("train", [str(path)], fmt, 10 * ROWS).num_rows == ROWS  # a short file: all of it


def test_the_head_of_json_lines_and_none_for_a_json_array(tmp_path):
    rows = [{"anchor": f"q {i}", "positive": f"a {i}", "label": i % 3} for i in range(ROWS)]
    lines = tmp_path / "pairs.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    head = head_of_files("train", [str(lines)], "json", 5)
    assert head.to_pylist() == rows[:5]
    assert head.schema == pajson.read_json(lines).schema
    array = tmp_path / "pairs.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    assert head_of_files("train", [str(array)], "json", 5) is None  # no cheap head: staged up front


def test_the_head_of_an_arrow_file(tmp_path):
    table = pa.table({"anchor": [f"q {i}" for i in range(ROWS)], "positive": [f"a {i}" for i in range(ROWS)]})
    path = tmp_path / "pairs.arrow"
    with pa.ipc.new_file(str(path), table.schema) as writer:
        for start in range(0, ROWS, 8):  # several record batches
            writer.write_table(table.slice(start, 8))
    head = head_of_files("train", [str(path)], "arrow", 20)
    assert head.equals(table.slice(0, 20))


def test_a_malformed_row_inside_the_head_is_named_by_file_and_line(tmp_path):
    path = _csv(tmp_path / "pairs.csv")
    lines = path.read_text().splitlines()
    lines[4] = "q,1,0.5,extra"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetReadError) as info:
        head_of_files("train", [str(path)], "csv", 10)
    assert info.value.file == str(path) and info.value.line == 5
    assert "dataset 'train'" in str(info.value) and "expected 3 fields" in str(info.value)


def test_a_second_csv_with_another_header_fails_on_the_driver(tmp_path):
    first = _csv(tmp_path / "a.csv")
    second = tmp_path / "b.csv"
    second.write_text("anchor,answer,score\nq,a,0.5\n")
    with pytest.raises(DatasetReadError, match="all files of a dataset need the same header") as info:
        head_of_files("train", [str(first), str(second)], "csv", 10)
    assert info.value.file == str(second)


def test_the_head_of_an_iterable_dataset():
    rows = [{"anchor": f"q {i}", "positive": f"a {i}"} for i in range(ROWS)]
    iterable = datasets.Dataset.from_list(rows).to_iterable_dataset(num_shards=3)
    assert head_of_iterable("train", iterable, 9).to_pylist() == rows[:9]
    assert head_of_iterable("train", iterable, 10 * ROWS).num_rows == ROWS


def test_total_bytes(tmp_path):
    a, b = _csv(tmp_path / "a.csv"), _csv(tmp_path / "b.csv", 3)
    assert total_bytes([str(a), str(b)]) == a.stat().st_size + b.stat().st_size


@pytest.fixture
def large(monkeypatch):
    """Every file counts as large; the driver's sample is 16 rows."""
    monkeypatch.setattr(background, "OVERLAP_MIN_BYTES", 0)
    monkeypatch.setattr(background, "SAMPLE_ROWS", 16)


def test_a_large_csv_comes_back_pending_over_its_first_rows(tmp_path, large):
    path = _csv(tmp_path / "pairs.csv")
    (source,) = prepare_sources(str(path), staging_dir=str(tmp_path / "stage"), defer=True).values()
    assert source.pending is not None and source.pending.ref is None  # started later, by start_staging
    plan = source.pending.plan
    assert (
        plan.files == [str(path)] and plan.fmt == "csv" and plan.out_dir == str(tmp_path / "stage" / "train")
    )
    assert source.num_rows == 16 and source.staged_files is None
    assert (source.input_columns, source.label_column) == (["anchor", "positive"], "score")
    assert source.peek([0, 3, 15]) == {
        "anchor": ["q 0", "q 3", "q 15"],
        "positive": ["1000", "1003", "1015"],
        "score": [0.0, 0.75, 0.0],
    }
    with pytest.raises(RuntimeError, match="still being staged"):
        source.open()
    assert not (tmp_path / "stage").exists()  # nothing written on the driver
    shipped = pickle.loads(pickle.dumps(source))
    assert shipped.pending.plan is None and shipped.num_rows == 16  # workers get the reference, not the plan


def test_select_columns_apply_to_the_first_rows(tmp_path, large):
    path = _csv(tmp_path / "pairs.csv")
    (source,) = prepare_sources(
        str(path), staging_dir=str(tmp_path / "stage"), defer=True, select_columns=["positive", "anchor"]
    ).values()
    assert source.pending.plan.select == ["positive", "anchor"]
    assert source.columns == ["positive", "anchor"]
    with pytest.raises(DatasetValidationError, match=r"select_columns names \['answer'\]"):
        prepare_sources(str(path), staging_dir=str(tmp_path / "s2"), defer=True, select_columns=["answer"])


def test_small_inputs_and_the_switch_stage_up_front(tmp_path, monkeypatch):
    """Below the size threshold, with no more rows than the sample, or with defer=False the input is staged
    on the driver as before (``stage`` is replaced here: no Ray)."""
    import raystx.data.sources as sources

    staged: list[str] = []

    def fake_stage(name, ray_dataset, out_dir, **kwargs):
        staged.append(name)
        return []

    monkeypatch.setattr(sources, "stage", fake_stage)
    monkeypatch.setattr(
        sources, "read_files", lambda name, files, fmt: (None, ["anchor", "positive", "score"])
    )
    path = _csv(tmp_path / "pairs.csv")
    monkeypatch.setattr(background, "OVERLAP_MIN_BYTES", path.stat().st_size + 1)
    assert prepare_sources(str(path), staging_dir=str(tmp_path), defer=True)["train"].pending is None
    monkeypatch.setattr(background, "OVERLAP_MIN_BYTES", 0)
    monkeypatch.setattr(background, "SAMPLE_ROWS", ROWS)  # the head holds every row: small
    assert prepare_sources(str(path), staging_dir=str(tmp_path), defer=True)["train"].pending is None
    monkeypatch.setattr(background, "SAMPLE_ROWS", 16)
    assert prepare_sources(str(path), staging_dir=str(tmp_path), defer=False)["train"].pending is None
    assert staged == ["train"] * 3


def test_the_environment_switch(monkeypatch):
    monkeypatch.delenv(background.STAGE_BEFORE_START_ENV, raising=False)
    assert background.overlap_enabled()
    for value, enabled in [("1", False), ("true", False), ("0", True), ("", True)]:
        monkeypatch.setenv(background.STAGE_BEFORE_START_ENV, value)
        assert background.overlap_enabled() is enabled


def test_a_pending_source_is_checked_on_its_first_rows_but_not_for_its_size(tmp_path, large):
    from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss

    path = _csv(tmp_path / "pairs.csv")
    sources = prepare_sources(str(path), staging_dir=str(tmp_path / "stage"), defer=True)
    # 16 sampled rows < a global batch of 64 with drop_last: the size is the workers' check (all rows)
    matched = validate_sources(sources, CoSENTLoss, global_batch_size=64, drop_last=True)
    assert matched["train"].label == "float"
    # a column the loss cannot use is found on the driver, naming dataset, column and loss
    with pytest.raises(DatasetValidationError) as info:
        validate_sources(sources, MultipleNegativesRankingLoss, global_batch_size=64)
    assert "dataset 'train'" in str(info.value) and "MultipleNegativesRankingLoss" in str(info.value)


def test_validate_sources_uses_a_scan_made_already(tmp_path, large):
    """The workers pass the background pass's every-row scan: its findings decide, nothing is re-read."""
    from raystx.data.scan import ColumnStats
    from raystx.losses import CoSENTLoss

    path = _csv(tmp_path / "pairs.csv")
    sources = prepare_sources(str(path), staging_dir=str(tmp_path / "stage"), defer=True)
    scans = {
        "train": {
            "anchor": ColumnStats("anchor", rows=90_000),
            "positive": ColumnStats("positive", rows=90_000),
            "score": ColumnStats(
                "score", rows=90_000, nonfinite=1, first_nonfinite=89_999, nonfinite_value=1e999
            ),
        }
    }
    with pytest.raises(DatasetValidationError, match=r"'score' holds inf at row 89999 .*of 90000"):
        validate_sources(sources, CoSENTLoss, global_batch_size=4, scans=scans)


def test_the_workers_wait_is_a_no_op_without_pending_sources():
    from types import SimpleNamespace

    from raystx.train.staged_wait import await_staged_data

    data = datasets.Dataset.from_dict({"anchor": ["a"], "positive": ["b"]})
    sources = prepare_sources(data, staging_dir="/nonexistent")
    payload = SimpleNamespace(sources=sources, label_kinds={"train": "none"}, losses={}, args=None)
    await_staged_data(payload, rank=0)
    assert payload.sources is sources and payload.label_kinds == {"train": "none"}


def test_spare_cpus_are_the_cluster_cpus_the_workers_do_not_reserve(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "memory": 1e9})
    assert background.spare_cpus(2.0) == 2.0
    assert background.spare_cpus(4.0) == 0.0  # a saturated cluster: the trainer stages before the start
