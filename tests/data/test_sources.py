"""TrainingSource from datasets.Dataset (no Ray), opening staged Parquet, and validate_sources on good data."""

from __future__ import annotations

import pickle

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_sentences
from torch import nn

from raystx.data import readers
from raystx.data.errors import DatasetValidationError
from raystx.data.shard_reader import RowGroupReader
from raystx.data.sources import TrainingSource, prepare_sources, sample_indices, validate_sources
from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss, SoftmaxLoss
from raystx.losses.base import ColumnContract, RaystxLoss


class PairScoreLoss(RaystxLoss):
    contract = ColumnContract(2, 2, "float")


class AnyTextsLoss(RaystxLoss):
    contract = ColumnContract(1, None, "none")


def _pairs(n: int, seed: int = 0) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "sentence1": make_sentences(n, seed),
            "sentence2": make_sentences(n, seed + 1),
            "score": [i / n for i in range(n)],
        }
    )


def test_dataset_is_kept_as_is(tmp_path):
    ds = _pairs(10)
    sources = prepare_sources(ds, staging_dir=str(tmp_path / "stage"))
    (src,) = sources.values()
    assert list(sources) == ["train"]
    assert src.dataset is ds
    assert (src.input_columns, src.label_column, src.num_rows) == (["sentence1", "sentence2"], "score", 10)
    assert src.take([3, 0]) == {c: [ds[3][c], ds[0][c]] for c in ["sentence1", "sentence2", "score"]}
    assert src.open() is ds
    assert not (tmp_path / "stage").exists()  # nothing written for an in-memory/mapped Dataset


def test_select_columns_list_and_dict(tmp_path):
    ds = _pairs(6).add_column("extra", ["x"] * 6)
    (src,) = prepare_sources(
        ds, staging_dir=str(tmp_path), select_columns=["sentence2", "sentence1"]
    ).values()
    assert src.input_columns == ["sentence2", "sentence1"] and src.label_column is None
    assert src.open().column_names == ["sentence2", "sentence1"]
    assert src.take([1]) == {"sentence2": [ds[1]["sentence2"]], "sentence1": [ds[1]["sentence1"]]}
    both = prepare_sources(
        datasets.DatasetDict({"a": ds, "b": ds}),
        staging_dir=str(tmp_path),
        select_columns={"a": ["sentence1", "score"]},
    )
    assert both["a"].columns == ["sentence1", "score"]
    assert both["b"].columns == ["sentence1", "sentence2", "extra", "score"]
    with pytest.raises(DatasetValidationError, match=r"\['c'\]"):
        prepare_sources({"a": ds}, staging_dir=str(tmp_path), select_columns={"c": ["x"]})


def test_dataset_dict_and_plain_dict(tmp_path):
    dd = datasets.DatasetDict({"sts": _pairs(8), "nli": _pairs(5, seed=3)})
    sources = prepare_sources(dd, staging_dir=str(tmp_path))
    assert list(sources) == ["sts", "nli"]
    assert [s.name for s in sources.values()] == ["sts", "nli"]
    assert sources["nli"].num_rows == 5
    plain = prepare_sources({"x": _pairs(3)}, staging_dir=str(tmp_path), name="ignored")
    assert list(plain) == ["x"]


def test_pickle_of_memory_mapped_dataset_is_small(tmp_path):
    ds = _pairs(2000)
    ds.save_to_disk(str(tmp_path / "saved"))
    mapped = datasets.load_from_disk(str(tmp_path / "saved"))
    (src,) = prepare_sources(mapped, staging_dir=str(tmp_path / "stage")).values()
    src.open()
    blob = pickle.dumps(src)
    assert len(blob) < 20_000 < mapped.data.nbytes
    back = pickle.loads(blob)
    assert back._opened is None
    assert back.take([1999]) == src.take([1999])


def _write_parquet_files(tmp_path, parts):
    files = []
    for i, rows in enumerate(parts):
        path = tmp_path / f"part-{i:02d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3)
        files.append(str(path))
    return files


def test_open_parquet_reads_row_groups_unified(tmp_path, monkeypatch):
    monkeypatch.setattr(readers.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    texts = make_sentences(12, seed=5)
    rows = [{"q": texts[i], "d": texts[-i - 1], "label": i} for i in range(12)]
    # The second file stores the label as float and the first as int: the schema is unified (promoted).
    second = [dict(r, label=float(r["label"])) for r in rows[7:]]
    files = _write_parquet_files(tmp_path, [rows[:7], second])
    schema = readers.parquet_schema(files)
    assert schema.field("label").type == pa.float64()
    src = TrainingSource(
        "t", ["q", "d"], "label", readers.parquet_num_rows(files), staged_files=files, schema=schema
    )
    table = src.open()
    assert isinstance(table, RowGroupReader) and len(table) == 12
    assert src.shard_rows == [3, 3, 1, 3, 2] and src.groups_per_file == [3, 2]  # from the footers on open
    assert src.take(list(range(12))) == {
        c: [float(r[c]) if c == "label" else r[c] for r in rows] for c in ["q", "d", "label"]
    }
    # The driver-side peek reads row groups only and gives the same rows, in the order asked.
    order = [11, 0, 6, 7, 3]
    assert src.peek(order) == src.take(order)
    # Local files are read in place: nothing was written to the node's cache folder.
    assert table.stats()["bytes_written"] == 0 and not (tmp_path / "tmp").exists()
    again = TrainingSource("t", ["q"], None, 12, staged_files=files, schema=schema).open()
    assert again.column_names == ["q"] and again[[8]] == {"q": [texts[8]]}


def test_sample_indices_head_plus_random():
    assert sample_indices(10, 256) == list(range(10))
    picked = sample_indices(100_000, 256, seed=0)
    assert len(picked) == 256 == len(set(picked))
    assert picked[:192] == list(range(192)) and all(192 <= i < 100_000 for i in picked[192:])
    assert picked == sample_indices(100_000, 256, seed=0)


def test_validate_sources_returns_matched_contracts():
    model = nn.Identity()
    sources = prepare_sources(
        {
            "sts": _pairs(16),
            "pairs": _pairs(16).remove_columns("score"),
            "nli": datasets.Dataset.from_dict(
                {
                    "premise": make_sentences(16),
                    "hypothesis": make_sentences(16, 2),
                    "label": [i % 3 for i in range(16)],
                }
            ),
            "distill": datasets.Dataset.from_dict(
                {"a": make_sentences(16), "b": make_sentences(16, 4), "label": [[0.1, 0.2, 0.7]] * 16}
            ),
        },
        staging_dir="/nonexistent-never-written",
    )
    losses = {"sts": CoSENTLoss, "pairs": AnyTextsLoss(model), "nli": SoftmaxLoss, "distill": SoftmaxLoss}
    matched = validate_sources(sources, losses, global_batch_size=16)
    assert matched == {
        "sts": CoSENTLoss.contract,
        "pairs": AnyTextsLoss.contract,
        "nli": ColumnContract(2, 2, "int"),
        "distill": ColumnContract(2, 2, "vector"),
    }
    # One loss for every dataset
    one = {"a": sources["pairs"], "b": sources["pairs"]}
    assert validate_sources(one, MultipleNegativesRankingLoss, global_batch_size=4) == {
        "a": MultipleNegativesRankingLoss.contract,
        "b": MultipleNegativesRankingLoss.contract,
    }
    # A single source is accepted too
    assert validate_sources(sources["sts"], PairScoreLoss, global_batch_size=8) == {
        "sts": PairScoreLoss.contract
    }


def test_validate_reads_only_a_sample(monkeypatch):
    ds = _pairs(5000)
    (src,) = prepare_sources(ds, staging_dir="/nonexistent").values()
    asked = []
    original = TrainingSource.peek

    def spy(self, indices):
        asked.append(list(indices))
        return original(self, indices)

    monkeypatch.setattr(TrainingSource, "peek", spy)
    validate_sources(src, PairScoreLoss, global_batch_size=32, sample_rows=64)
    assert len(asked) == 1 and len(asked[0]) == 64
    assert asked[0][:48] == list(range(48))
