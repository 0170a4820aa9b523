"""Column rules against the sentence-transformers oracle, and the per-value label/text checks."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pyarrow as pa
import pytest
import torch
from sentence_transformers.base.data_collator import DEFAULT_LABEL_COLUMNS, BaseDataCollator
from sentence_transformers.base.trainer import BaseTrainer

from raystx.data.columns import (
    LABEL_COLUMNS,
    RESERVED_COLUMNS,
    arrow_kind,
    columns_for,
    contracts_of,
    label_problems,
    resolve_columns,
    structural_problems,
    text_problems,
)
from raystx.data.errors import DatasetValidationError
from raystx.losses.base import ColumnContract, RaystxLoss


def _st_roles(columns: list[str]) -> tuple[list[str], str | None]:
    """What the sentence-transformers collator does with a row of ``columns``: (input order, label column)."""

    def preprocess(texts, prompt=None, task=None):
        return {"input_ids": torch.zeros(len(texts), 1)}

    row = {c: (0.5 if c in DEFAULT_LABEL_COLUMNS else f"text {c}") for c in columns}
    batch = BaseDataCollator(preprocess_fn=preprocess)([row, row])
    inputs = [k[: -len("_input_ids")] for k in batch if k.endswith("_input_ids")]
    label = next((c for c in DEFAULT_LABEL_COLUMNS if c in columns), None) if "label" in batch else None
    return inputs, label


def test_label_names_match_sentence_transformers():
    assert tuple(LABEL_COLUMNS) == tuple(DEFAULT_LABEL_COLUMNS)


@pytest.mark.parametrize(
    "columns",
    [
        ["anchor", "positive"],
        ["sentence1", "sentence2", "score"],
        ["premise", "label", "hypothesis"],
        ["labels", "q", "d1", "d2"],
        ["a", "b", "scores"],
        ["query", "answer", "negative_1", "negative_2", "negative_3"],
    ],
)
def test_roles_match_sentence_transformers_collator(columns):
    assert resolve_columns("ds", columns) == _st_roles(columns)


@pytest.mark.parametrize("column", ["return_loss", "dataset_name", "label", "anchor"])
def test_reserved_names_match_sentence_transformers(column):
    ds = datasets.Dataset.from_dict({"text": ["a"], column: ["b"]})
    try:
        BaseTrainer.validate_column_names(None, ds)
        st_refuses = False
    except ValueError:
        st_refuses = True
    assert st_refuses == (column in RESERVED_COLUMNS)
    if st_refuses:
        with pytest.raises(DatasetValidationError) as info:
            resolve_columns("nli", ["text", column])
        assert column in str(info.value) and "'nli'" in str(info.value)
    else:
        resolve_columns("nli", ["text", column])


def test_select_columns_keeps_and_orders():
    assert resolve_columns("d", ["a", "b", "c", "score"], ["c", "score", "a"]) == (["c", "a"], "score")
    # Dropping a reserved column through select_columns is the fix, so it is accepted.
    assert resolve_columns("d", ["a", "dataset_name", "b"], ["a", "b"]) == (["a", "b"], None)
    with pytest.raises(DatasetValidationError, match=r"select_columns names \['zz'\]"):
        resolve_columns("d", ["a", "b"], ["a", "zz"])
    with pytest.raises(DatasetValidationError, match="repeats"):
        resolve_columns("d", ["a", "b"], ["a", "a"])


def test_columns_for_list_dict_and_none():
    assert columns_for(None, "x") is None
    assert columns_for(["a", "b"], "x") == ["a", "b"]
    assert columns_for({"x": ["b"], "y": ["c"]}, "x") == ["b"]
    assert columns_for({"y": ["c"]}, "x") is None


def test_two_label_columns_refused():
    with pytest.raises(DatasetValidationError) as info:
        resolve_columns("sts", ["s1", "s2", "label", "score"])
    msg = str(info.value)
    assert "'sts'" in msg and "['label', 'score']" in msg and "select_columns=" in msg


def test_structural_problems_name_columns_and_fix():
    contract = ColumnContract(2, 2, "float")
    assert structural_problems("d", ["a", "b"], "score", contract, "CoSENTLoss") == []
    (too_many,) = structural_problems("d", ["a", "b", "c"], "score", contract, "CoSENTLoss")
    assert (
        "['c']" in too_many
        and "select_columns=['a', 'b', 'score']" in too_many
        and "columns: [a, b, score]" in too_many
    )
    (too_few,) = structural_problems("d", ["a"], "score", contract, "CoSENTLoss")
    assert "at least 2" in too_few and "['a']" in too_few
    (no_label,) = structural_problems("d", ["a", "b"], None, contract, "CoSENTLoss")
    assert "no label column" in no_label
    (extra_label,) = structural_problems("d", ["a", "b"], "label", ColumnContract(2, None, "none"), "MNRL")
    assert (
        "'label'" in extra_label
        and "takes no label" in extra_label
        and "select_columns=['a', 'b']" in extra_label
    )


def test_contracts_of_includes_alternatives():
    class TwoWays(RaystxLoss):
        contract = ColumnContract(2, 2, "int")
        alternative_contracts = (ColumnContract(2, 2, "vector"),)

    assert contracts_of(TwoWays) == [ColumnContract(2, 2, "int"), ColumnContract(2, 2, "vector")]
    assert contracts_of(RaystxLoss) == [RaystxLoss.contract]


@pytest.mark.parametrize(
    ("arrow_type", "kind"),
    [
        (pa.string(), "text"),
        (pa.large_string(), "text"),
        (pa.int64(), "int"),
        (pa.int8(), "int"),
        (pa.float32(), "float"),
        (pa.float64(), "float"),
        (pa.bool_(), "bool"),
        (pa.null(), "null"),
        (pa.list_(pa.float32()), "vector"),
        (pa.list_(pa.float64(), 3), "vector"),
        (pa.large_list(pa.int64()), "vector"),
        (pa.list_(pa.string()), "list"),
        (pa.struct([("a", pa.int64())]), "other"),
        (None, "unknown"),
    ],
)
def test_arrow_kind(arrow_type, kind):
    assert arrow_kind(arrow_type) == kind


def _rows(values):
    return list(enumerate(values))


def test_text_problems():
    assert text_problems("q", pa.string(), _rows(["a", "b"])) == ([], [])
    assert text_problems("q", pa.string(), _rows(["a", "", "c", ""])) == ([], [1, 3])
    (none,), _ = text_problems("q", pa.string(), _rows(["a", None]))
    assert "'q'" in none and "None" in none and "row 1" in none
    (typed,), _ = text_problems("q", pa.int64(), _rows([1, 2]))
    assert "int64" in typed and "'q'" in typed
    (value,), _ = text_problems("q", None, _rows(["a", 7]))
    assert "int 7" in value and "row 1" in value


def test_float_label_accepts_ints_and_refuses_nan_inf_text_vectors():
    assert label_problems("score", pa.float64(), _rows([0.5, 1.0]), "float", "L") == []
    # Integer labels are valid scores: sentence-transformers casts them with .float() (e.g. 0/1 pair labels).
    assert label_problems("score", pa.int64(), _rows([0, 1, 5]), "float", "L") == []
    for bad in (math.nan, math.inf, -math.inf):
        (msg,) = label_problems("score", pa.float64(), _rows([0.1, bad]), "float", "L")
        assert "'score'" in msg and "row 1" in msg and "finite" in msg
    (msg,) = label_problems("score", pa.string(), _rows(["0.5"]), "float", "CoSENTLoss")
    assert "string" in msg and "CoSENTLoss" in msg
    (msg,) = label_problems("score", pa.list_(pa.float32()), _rows([[0.1, 0.2]]), "float", "L")
    assert "vectors" in msg
    (msg,) = label_problems("score", pa.float64(), _rows([0.1, None]), "float", "L")
    assert "None" in msg and "row 1" in msg


def test_int_label_accepts_integral_floats_only():
    assert label_problems("label", pa.int64(), _rows([0, 2, 1]), "int", "L") == []
    # Arrow's safe cast (what datasets' cast_column applies) turns 1.0 into 1 but refuses 0.5.
    assert label_problems("label", pa.float64(), _rows([0.0, 2.0]), "int", "L") == []
    assert pa.array([0.0, 2.0]).cast(pa.int64()).to_pylist() == [0, 2]
    with pytest.raises(pa.ArrowInvalid):
        pa.array([0.5]).cast(pa.int64())
    (msg,) = label_problems("label", pa.float64(), _rows([1.0, 0.5]), "int", "SoftmaxLoss")
    assert "0.5" in msg and "row 1" in msg and "integer class id" in msg and "SoftmaxLoss" in msg


def test_vector_labels():
    ok = [np.array([0.1, 0.2], dtype=np.float32), [0.3, 0.4]]
    assert label_problems("label", pa.list_(pa.float32()), _rows(ok), "vector", "MSELoss") == []
    (msg,) = label_problems("label", pa.list_(pa.float32()), _rows([[0.1, 0.2], [0.3]]), "vector", "MSELoss")
    assert "different lengths" in msg and "row 1" in msg
    (msg,) = label_problems("label", pa.list_(pa.float32()), _rows([[0.1, math.nan]]), "vector", "MSELoss")
    assert "finite" in msg
    (msg,) = label_problems("label", pa.float64(), _rows([0.1]), "vector", "MSELoss")
    assert "vector" in msg and "double" in msg
    (msg,) = label_problems("label", pa.list_(pa.float32()), _rows([[]]), "vector", "MSELoss")
    assert "empty vector" in msg
    # float_or_vector follows the column's kind
    assert label_problems("label", pa.float64(), _rows([0.1]), "float_or_vector", "MarginMSELoss") == []
    assert label_problems("label", pa.list_(pa.float64()), _rows([[0.1, 0.2]]), "float_or_vector", "M") == []
