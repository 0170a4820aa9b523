"""Every bad input fails on the driver with an error that names the dataset, column, loss, file and line."""

from __future__ import annotations

import math

import datasets
import pytest
from conftest import make_sentences

from raystx.data.errors import (
    DatasetFileNotFoundError,
    DatasetReadError,
    DatasetValidationError,
    DatasetWarning,
)
from raystx.data.sources import prepare_sources, validate_sources
from raystx.losses import SoftmaxLoss
from raystx.losses.base import ColumnContract, RaystxLoss


class PairScoreLoss(RaystxLoss):
    contract = ColumnContract(2, 2, "float")


class ClassLoss(RaystxLoss):
    contract = ColumnContract(2, 2, "int")


class InBatchLoss(RaystxLoss):
    contract = ColumnContract(2, None, "none")


class TripletLikeLoss(RaystxLoss):
    contract = ColumnContract(3, 3, "none")


class TeacherLoss(RaystxLoss):
    contract = ColumnContract(1, None, "vector")


def _source(name="sts", n=8, **columns):
    data = {"s1": make_sentences(n, 1), "s2": make_sentences(n, 2)}
    data.update(columns)
    data = {k: v for k, v in data.items() if v is not None}
    return prepare_sources({name: datasets.Dataset.from_dict(data)}, staging_dir="/nonexistent")


def _fails(sources, loss, *, batch=4, drop_last=True, **kw) -> str:
    with pytest.raises(DatasetValidationError) as info:
        validate_sources(sources, loss, global_batch_size=batch, drop_last=drop_last, **kw)
    return str(info.value)


def _names(msg: str, *parts: str) -> None:
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


# ------------------------------------------------------------------------------------- loss contracts


def test_missing_label_column():
    msg = _fails(_source(), PairScoreLoss)
    _names(
        msg,
        "'sts'",
        "['s1', 's2']",
        "PairScoreLoss",
        "no label column",
        ColumnContract(2, 2, "float").describe(),
    )


def test_label_present_for_loss_without_label():
    msg = _fails(_source(label=[0.5] * 8), InBatchLoss)
    _names(
        msg,
        "'sts'",
        "'label'",
        "InBatchLoss",
        "takes no label",
        "select_columns=['s1', 's2']",
        "columns: [s1, s2]",
    )


def test_too_few_input_columns():
    msg = _fails(_source(label=None, s2=None), TripletLikeLoss)
    _names(msg, "'sts'", "['s1']", "TripletLikeLoss", "at least 3", "exactly 3 input columns")


def test_extraneous_columns_say_how_to_drop_them():
    msg = _fails(_source(note=["x"] * 8, score=[0.1] * 8), PairScoreLoss)
    _names(
        msg,
        "'sts'",
        "['note']",
        "PairScoreLoss",
        "at most 2",
        "select_columns=['s1', 's2', 'score']",
        "select_columns={'sts': ['s1', 's2', 'score']}",
        "columns: [s1, s2, score]",
    )


def test_float_label_where_int_class_needed():
    msg = _fails(_source(label=[0.0, 1.0, 0.5, 2.0, 1.0, 0.0, 1.0, 2.0]), ClassLoss)
    _names(msg, "'sts'", "'label'", "ClassLoss", "0.5", "row 2", "integer class")
    # Integral floats are accepted (Arrow safe cast); so are real int ids.
    assert validate_sources(_source(label=[0.0, 1.0] * 4), ClassLoss, global_batch_size=4)
    assert validate_sources(_source(label=[0, 1] * 4), ClassLoss, global_batch_size=4)


def test_int_label_where_float_needed_is_accepted_but_text_is_not():
    # sentence-transformers casts score labels with .float(): integer scores (0/1, 0..5) are valid.
    assert validate_sources(_source(score=[0, 1] * 4), PairScoreLoss, global_batch_size=4)
    msg = _fails(_source(score=["0.5"] * 8), PairScoreLoss)
    _names(msg, "'sts'", "'score'", "PairScoreLoss", "string", "float score")
    msg = _fails(_source(label=["entailment"] * 8), ClassLoss)
    _names(msg, "'label'", "ClassLoss", "integer class ids")


def test_vector_labels_where_scalar_needed_and_vice_versa():
    msg = _fails(_source(score=[[0.1, 0.2]] * 8), PairScoreLoss)
    _names(msg, "'sts'", "'score'", "PairScoreLoss", "vectors", "float score")
    msg = _fails(_source(label=[0.3] * 8), TeacherLoss)
    _names(msg, "'sts'", "'label'", "TeacherLoss", "vector (list of floats)")
    msg = _fails(_source(label=[[0.1, 0.2]] * 7 + [[0.1]]), TeacherLoss)
    _names(msg, "'label'", "different lengths", "row 7")


def test_softmax_alternatives_are_reported_together():
    msg = _fails(_source(label=["x"] * 8), SoftmaxLoss)
    _names(msg, "'sts'", "SoftmaxLoss", "integer class label column", " or ", "embedding vectors")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_inf_scores(bad):
    scores = [0.1] * 8
    scores[5] = bad
    msg = _fails(_source(score=scores), PairScoreLoss)
    _names(msg, "'sts'", "'score'", "row 5", "finite", "PairScoreLoss")


def test_none_label():
    msg = _fails(_source(score=[0.1, None] + [0.2] * 6), PairScoreLoss)
    _names(msg, "'score'", "None", "row 1", "PairScoreLoss")


def test_none_or_non_string_text():
    texts = make_sentences(8, 3)
    texts[4] = None
    msg = _fails(_source(s2=texts, score=[0.1] * 8), PairScoreLoss)
    _names(msg, "'sts'", "'s2'", "None", "row 4", "PairScoreLoss")
    msg = _fails(_source(s2=list(range(8)), score=[0.1] * 8), PairScoreLoss)
    _names(msg, "'s2'", "int64", "text")


def test_empty_strings_warn_and_are_kept():
    texts = make_sentences(8, 3)
    texts[6] = ""
    sources = _source(s2=texts, score=[0.1] * 8)
    with pytest.warns(DatasetWarning, match=r"'sts'.*'s2'.*empty strings.*\[6\]"):
        assert validate_sources(sources, PairScoreLoss, global_batch_size=4)
    assert sources["sts"].take([6])["s2"] == [""]


def test_id_like_columns_warn():
    sources = _source(query_id=[str(i) for i in range(8)])
    with pytest.warns(DatasetWarning, match=r"'query_id'.*select_columns="):
        validate_sources(sources, InBatchLoss, global_batch_size=4)


def test_empty_dataset():
    sources = prepare_sources(
        {"sts": datasets.Dataset.from_dict({"s1": [], "s2": [], "score": []})}, staging_dir="/nonexistent"
    )
    msg = _fails(sources, PairScoreLoss)
    _names(msg, "'sts'", "empty (0 rows)", "PairScoreLoss")


def test_smaller_than_one_global_batch():
    sources = _source(score=[0.5] * 8)
    msg = _fails(sources, PairScoreLoss, batch=16)
    _names(msg, "'sts'", "8 rows", "global batch of 16", "drop_last")
    assert validate_sources(sources, PairScoreLoss, global_batch_size=16, drop_last=False)


def test_unknown_dataset_in_loss_dict_and_dataset_without_loss():
    sources = {**_source("a", score=[0.1] * 8), **_source("b", score=[0.1] * 8)}
    with pytest.raises(DatasetValidationError) as info:
        validate_sources(
            sources, {"a": PairScoreLoss, "b": PairScoreLoss, "c": PairScoreLoss}, global_batch_size=4
        )
    _names(str(info.value), "['c']", "['a', 'b']")
    with pytest.raises(DatasetValidationError) as info:
        validate_sources(sources, {"a": PairScoreLoss}, global_batch_size=4)
    _names(str(info.value), "'b'", "has no loss", "['a']")


def test_all_problems_are_listed_in_one_error():
    sources = {**_source("a"), **_source("b", n=2, score=[0.1, 0.2])}
    with pytest.raises(DatasetValidationError) as info:
        validate_sources(sources, PairScoreLoss, global_batch_size=4)
    assert len(info.value.problems) == 2
    _names(str(info.value), "'a'", "no label column", "'b'", "2 rows")
    assert info.value.dataset == "a" and info.value.loss == "PairScoreLoss"


def test_reserved_and_duplicate_label_columns():
    with pytest.raises(DatasetValidationError) as info:
        _source(dataset_name=["x"] * 8)
    _names(str(info.value), "'sts'", "'dataset_name'", "reserved")
    with pytest.raises(DatasetValidationError) as info:
        _source(return_loss=[True] * 8)
    _names(str(info.value), "'return_loss'")
    with pytest.raises(DatasetValidationError) as info:
        _source(label=[1] * 8, scores=[0.1] * 8)
    _names(str(info.value), "'sts'", "['label', 'scores']")


def test_unsupported_input_type():
    with pytest.raises(DatasetValidationError) as info:
        prepare_sources([{"a": "x"}], staging_dir="/nonexistent", name="weird")
    _names(str(info.value), "'weird'", "builtins.list", "datasets.Dataset")


# --------------------------------------------------------------------------------------- reading files


def test_missing_file_glob_and_directory(tmp_path):
    for spec in (tmp_path / "nope.csv", str(tmp_path / "*.jsonl")):
        with pytest.raises(DatasetFileNotFoundError) as info:
            prepare_sources({"nli": str(spec)}, staging_dir=str(tmp_path / "s"))
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
        _names(str(info.value), "'nli'", str(spec))
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty_dir" / "README.md").write_text("hi")
    with pytest.raises(DatasetFileNotFoundError, match="holds no data file"):
        prepare_sources(str(tmp_path / "empty_dir"), staging_dir=str(tmp_path / "s"))


def test_unsupported_extension_and_mixed_formats(tmp_path):
    (tmp_path / "data.txt").write_text("a,b\n")
    with pytest.raises(DatasetReadError) as info:
        prepare_sources({"nli": str(tmp_path / "data.txt")}, staging_dir=str(tmp_path / "s"))
    _names(str(info.value), "'nli'", "data.txt", "'.txt'", ".csv", ".parquet")
    (tmp_path / "a.csv").write_text("a\nx\n")
    (tmp_path / "b.jsonl").write_text('{"a": "x"}\n')
    with pytest.raises(DatasetReadError, match=r"mixes file formats \['csv', 'json'\]"):
        prepare_sources([str(tmp_path / "a.csv"), str(tmp_path / "b.jsonl")], staging_dir=str(tmp_path / "s"))


def test_csv_header_problems(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DatasetReadError) as info:
        prepare_sources(str(tmp_path / "empty.csv"), staging_dir=str(tmp_path / "s"))
    _names(str(info.value), "empty.csv", "line 1", "header")
    (tmp_path / "dup.csv").write_text("a,b,a\nx,y,z\n")
    with pytest.raises(DatasetReadError) as info:
        prepare_sources(str(tmp_path / "dup.csv"), staging_dir=str(tmp_path / "s"))
    _names(str(info.value), "dup.csv", "line 1", "['a']")
    (tmp_path / "one.csv").write_text("a,b\nx,y\n")
    (tmp_path / "two.csv").write_text("a,c\nx,y\n")
    with pytest.raises(DatasetReadError) as info:
        prepare_sources(str(tmp_path / "*.csv").replace("*", "[ot]*"), staging_dir=str(tmp_path / "s"))
    _names(str(info.value), "two.csv", "['a', 'c']", "['a', 'b']")


MALFORMED = {
    "csv": ('s1,s2,score\nx,y,0.1\n"he said ""hi""",w,0.2\nu,v,w,0.3\nk,l,0.4\n', 4),
    "tsv": ('s1\ts2\nx\t"y\nu\tv\tw\nk\tl\n', 3),
    "jsonl": ('{"s1": "x", "s2": "y"}\n\n{"s1": "u", "s2": "v"}\n{"s1": "k", "s2": nope}\n', 4),
    "json": ('[\n  {"s1": "x", "s2": "y"},\n  {"s1": "u" "s2": "v"}\n]\n', 3),
}


@pytest.mark.ray
@pytest.mark.parametrize("fmt", sorted(MALFORMED))
def test_malformed_line_names_file_and_line(ray_session, tmp_path, fmt):
    text, line = MALFORMED[fmt]
    path = tmp_path / f"broken.{fmt}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetReadError) as info:
        prepare_sources({"pairs": str(path)}, staging_dir=str(tmp_path / "s"))
    _names(str(info.value), "'pairs'", str(path), f"line {line}")
    assert (info.value.file, info.value.line) == (str(path), line)


@pytest.mark.ray
@pytest.mark.parametrize(("fmt", "line"), [("csv", 3), ("tsv", 3), ("jsonl", 2)])
def test_non_utf8_file_is_named(ray_session, tmp_path, fmt, line):
    rows = {
        "csv": "s1,s2\nx,y\ncafé,z\n",
        "tsv": "s1\ts2\nx\ty\ncafé\tz\n",
        "jsonl": '{"s1": "x"}\n{"s1": "café"}\n',
    }[fmt]
    path = tmp_path / f"latin1.{fmt}"
    path.write_bytes(rows.encode("latin-1"))
    with pytest.raises(DatasetReadError) as info:
        prepare_sources({"pairs": str(path)}, staging_dir=str(tmp_path / "s"))
    _names(str(info.value), "'pairs'", str(path), "UTF-8", f"line {line}")


@pytest.mark.ray
def test_corrupt_parquet_is_named(ray_session, tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(DatasetReadError) as info:
        prepare_sources({"pairs": str(path)}, staging_dir=str(tmp_path / "s"))
    _names(str(info.value), "'pairs'", str(path), "parquet")


@pytest.mark.ray
def test_header_only_csv_is_an_empty_dataset(ray_session, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("s1,s2,score\n")
    sources = prepare_sources({"sts": str(path)}, staging_dir=str(tmp_path / "s"))
    assert sources["sts"].columns == ["s1", "s2", "score"] and sources["sts"].num_rows == 0
    msg = _fails(sources, PairScoreLoss)
    _names(msg, "'sts'", "['s1', 's2', 'score']", "empty (0 rows)")


@pytest.mark.ray
def test_bad_values_in_files_are_found_too(ray_session, tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text(
        "".join(f'{{"s1": "a{i}", "s2": "b{i}", "score": {"NaN" if i == 3 else 0.5}}}\n' for i in range(6))
    )
    sources = prepare_sources({"sts": str(path)}, staging_dir=str(tmp_path / "s"))
    msg = _fails(sources, PairScoreLoss)
    _names(msg, "'sts'", "'score'", "row 3", "finite")
