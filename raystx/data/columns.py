"""Column rules (as in sentence-transformers) and the checks of a dataset's columns against a loss contract.

Rules:

* A column named ``label``, ``labels``, ``score`` or ``scores`` is the label; every other column is an input
  (text) column, and their order is the order in which the loss receives them (anchor, positive, ...).
  A dataset with two label-named columns is refused (sentence-transformers would take the first one and
  tokenize the other as text).
* ``return_loss`` and ``dataset_name`` are reserved (the sentence-transformers trainer refuses them too).
* ``select_columns`` keeps and orders columns: a list for every dataset, or ``{dataset_name: [columns]}``.

Label kinds (``ColumnContract.label``) and the values they accept:

* ``float`` (a score): real numbers; integer and boolean columns are accepted too, since the losses cast
  labels with ``.float()`` (0/1 pair labels and integer ratings are common). NaN and inf are refused.
* ``int`` (a class id): integer (or boolean) columns, and float columns whose values are all integral
  (``1.0``): this is the Arrow "safe cast" rule that ``datasets`` applies for ``cast_column(..., Value("int64"))``;
  collation turns them into ``int64``. Floats with a fraction (``0.5``) are refused: sentence-transformers'
  ``SoftmaxLoss`` would fail on them in ``CrossEntropyLoss``.
* ``vector``: non-empty lists of finite numbers, all of the same length.
* ``float_or_vector``: either of the two above.

Checks on values run on a sample of rows (see ``raystx.data.sources.validate_sources``); type checks use the
Arrow schema when it is known.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from raystx.data.errors import DatasetValidationError, dataset_label
from raystx.data.names import LABEL_COLUMNS, RESERVED_COLUMNS, label_columns_in, split_label_column

if TYPE_CHECKING:  # a type only: the staging task imports this module without torch
    from raystx.losses.base import ColumnContract

ID_SUFFIXES: tuple[str, ...] = ("_id", "_ids", "_idx")

SelectColumns = Sequence[str] | Mapping[str, Sequence[str]] | None


# ------------------------------------------------------------------------------------------ column rules


def columns_for(select_columns: SelectColumns, name: str) -> list[str] | None:
    """The ``select_columns`` entry for dataset ``name`` (None: keep every column)."""
    if select_columns is None:
        return None
    if isinstance(select_columns, Mapping):
        chosen = select_columns.get(name)
        return None if chosen is None else ([chosen] if isinstance(chosen, str) else list(chosen))
    if isinstance(select_columns, str):
        return [select_columns]
    return list(select_columns)


def drop_hint(name: str, keep: Sequence[str]) -> str:
    """How a user keeps only ``keep`` of dataset ``name``, in Python and in the YAML config."""
    keep = list(keep)
    return (
        f"keep only the columns you need with select_columns={keep!r} (Python; "
        f"select_columns={{{name!r}: {keep!r}}} for one of several datasets) or `columns: [{', '.join(keep)}]` "
        f"in the dataset's YAML entry"
    )


def resolve_columns(
    name: str, column_names: Sequence[str], select: Sequence[str] | None = None
) -> tuple[list[str], str | None]:
    """``(input_columns, label_column)`` of a dataset with ``column_names`` after ``select``.

    Raises ``DatasetValidationError`` for selected columns that do not exist, repeated columns, reserved
    column names and several label columns.
    """
    available = list(column_names)
    where = dataset_label(name, available)
    if select is not None:
        select = list(select)
        missing = [c for c in select if c not in available]
        if missing:
            raise DatasetValidationError(
                f"{where}: select_columns names {missing}, which the dataset does not have",
                dataset=name,
                columns=available,
            )
        repeated = sorted({c for c in select if select.count(c) > 1})
        if repeated:
            raise DatasetValidationError(
                f"{where}: select_columns repeats {repeated}", dataset=name, columns=available
            )
        chosen = select
    else:
        chosen = available
    reserved = [c for c in chosen if c in RESERVED_COLUMNS]
    if reserved:
        raise DatasetValidationError(
            f"{where}: the column name(s) {reserved} are reserved for internal use ({list(RESERVED_COLUMNS)}); "
            f"rename them (e.g. dataset.rename_column) or drop them: "
            f"{drop_hint(name, [c for c in chosen if c not in RESERVED_COLUMNS])}",
            dataset=name,
            columns=available,
        )
    inputs, label = split_label_column(chosen)
    labels = label_columns_in(chosen)
    if len(labels) > 1:
        keep = [c for c in chosen if c not in LABEL_COLUMNS] + labels[:1]
        raise DatasetValidationError(
            f"{where} has several label columns {labels}; a dataset has at most one label column "
            f"(named one of {list(LABEL_COLUMNS)}): {drop_hint(name, keep)}",
            dataset=name,
            columns=available,
        )
    return inputs, label


def id_like_columns(input_columns: Sequence[str]) -> list[str]:
    """Input columns whose names suggest IDs (``id``, ``*_id``, ``*_ids``, ``*_idx``), trained on as text."""
    return [c for c in input_columns if c == "id" or c.endswith(ID_SUFFIXES)]


def contracts_of(loss: Any) -> list[ColumnContract]:
    """The contracts a loss accepts: ``contract`` first, then ``alternative_contracts`` if it declares any."""
    return [loss.contract, *getattr(loss, "alternative_contracts", ())]


def structural_problems(
    name: str,
    input_columns: Sequence[str],
    label_column: str | None,
    contract: ColumnContract,
    loss_name: str,
) -> list[str]:
    """Problems with the number of input columns and the presence of a label column, one sentence each."""
    problems: list[str] = []
    n = len(input_columns)
    needs_label = contract.label != "none"
    if label_column is not None and not needs_label:
        keep = list(input_columns)
        if contract.max_inputs is not None:
            keep = keep[: contract.max_inputs]
        problems.append(
            f"it has the label column {label_column!r} but {loss_name} takes no label; {drop_hint(name, keep)}"
        )
    if label_column is None and needs_label:
        problems.append(
            f"it has no label column but {loss_name} needs one (a column named one of {list(LABEL_COLUMNS)}; "
            "rename yours with dataset.rename_column)"
        )
    if n < contract.min_inputs:
        problems.append(
            f"it has {n} input column{'s' if n != 1 else ''} {list(input_columns)} but {loss_name} needs at least "
            f"{contract.min_inputs}"
        )
    elif contract.max_inputs is not None and n > contract.max_inputs:
        extra = list(input_columns[contract.max_inputs :])
        keep = list(input_columns[: contract.max_inputs]) + (
            [label_column] if label_column and needs_label else []
        )
        problems.append(
            f"it has {n} input columns but {loss_name} takes at most {contract.max_inputs}; the extraneous "
            f"column(s) {extra} would be fed to the loss; {drop_hint(name, keep)}"
        )
    return problems


# ------------------------------------------------------------------------------------------ value kinds


def arrow_kind(arrow_type: pa.DataType | None) -> str:
    """Coarse kind of an Arrow type: text, int, float, bool, vector, list, null, other (None: unknown)."""
    if arrow_type is None:
        return "unknown"
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return "text"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = arrow_kind(t.value_type)
        return "vector" if inner in ("int", "float", "bool", "null") else "list"
    return "other"


def _value_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, (list, tuple, np.ndarray)) or (hasattr(value, "tolist") and hasattr(value, "shape")):
        return "vector"
    return "other"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def text_problems(
    column: str, arrow_type: pa.DataType | None, rows: Sequence[tuple[int, Any]]
) -> tuple[list[str], list[int]]:
    """Problems with an input column (``rows`` = sampled ``(row_index, value)``) and the rows holding ``""``."""
    kind = arrow_kind(arrow_type)
    if kind not in ("text", "unknown", "null"):
        return [
            f"the input column {column!r} has type {arrow_type} but input columns must hold text (str)"
        ], []
    empty: list[int] = []
    for index, value in rows:
        if value is None:
            return [
                f"the input column {column!r} holds None at row {index}; every text must be a string"
            ], empty
        if not isinstance(value, str):
            return [
                f"the input column {column!r} holds {type(value).__name__} {_show(value)} at row {index}; "
                "input columns must hold text (str)"
            ], empty
        if value == "":
            empty.append(index)
    return [], empty


def _numeric_label_problem(column: str, index: int, value: Any, want_int: bool, loss_name: str) -> str | None:
    kind = _value_kind(value)
    wanted = "an integer class id" if want_int else "a float score"
    if kind == "null":
        return (
            f"the label column {column!r} holds None at row {index}; {loss_name} needs {wanted} in every row"
        )
    if kind == "vector":
        return (
            f"the label column {column!r} holds a vector ({_show(value)}) at row {index} but {loss_name} needs "
            f"{wanted} per row"
        )
    if kind not in ("int", "float", "bool"):
        return (
            f"the label column {column!r} holds {type(value).__name__} {_show(value)} at row {index} but "
            f"{loss_name} needs {wanted}"
        )
    if not math.isfinite(float(value)):
        return f"the label column {column!r} holds {value} at row {index}; labels must be finite numbers"
    if want_int and kind == "float" and not float(value).is_integer():
        return (
            f"the label column {column!r} holds the float {value} at row {index} but {loss_name} needs an integer "
            "class id (a float column is accepted only when every value is integral, like 1.0)"
        )
    return None


def _vector_label_problem(
    column: str, index: int, value: Any, length: int | None, loss_name: str
) -> tuple[str | None, int | None]:
    kind = _value_kind(value)
    if kind != "vector":
        shown = "None" if value is None else f"{type(value).__name__} {_show(value)}"
        return (
            f"the label column {column!r} holds {shown} at row {index} but {loss_name} needs a vector "
            "(list of floats) per row"
        ), length
    items = list(value.tolist() if hasattr(value, "tolist") else value)
    if not items:
        return f"the label column {column!r} holds an empty vector at row {index}", length
    for item in items:
        if _value_kind(item) not in ("int", "float", "bool"):
            return (
                f"the label column {column!r} holds a vector with {type(item).__name__} {_show(item)} at row "
                f"{index}; vectors must hold numbers"
            ), length
        if not math.isfinite(float(item)):
            return (
                f"the label column {column!r} holds a vector with {item} at row {index}; values must be finite",
                length,
            )
    if length is not None and len(items) != length:
        return (
            f"the label column {column!r} holds vectors of different lengths ({length} and {len(items)} at row "
            f"{index}); every label vector needs the same length"
        ), length
    return None, len(items)


def label_problems(
    column: str,
    arrow_type: pa.DataType | None,
    rows: Sequence[tuple[int, Any]],
    kind: str,
    loss_name: str,
) -> list[str]:
    """Problems with a label column's type (from the schema) and sampled values, for label ``kind``."""
    schema_kind = arrow_kind(arrow_type)
    if kind == "float_or_vector":
        if schema_kind in ("vector", "list") or (
            schema_kind == "unknown" and rows and _value_kind(rows[0][1]) == "vector"
        ):
            kind = "vector"
        else:
            kind = "float"
    if kind in ("float", "int"):
        if schema_kind in ("text", "other", "list"):
            wanted = "integer class ids" if kind == "int" else "float scores"
            return [f"the label column {column!r} has type {arrow_type} but {loss_name} needs {wanted}"]
        if schema_kind == "vector":
            return [
                f"the label column {column!r} holds vectors ({arrow_type}) but {loss_name} needs one "
                f"{'integer class id' if kind == 'int' else 'float score'} per row"
            ]
        for index, value in rows:
            problem = _numeric_label_problem(column, index, value, kind == "int", loss_name)
            if problem:
                return [problem]
        return []
    if kind == "vector":
        if schema_kind in ("text", "int", "float", "bool", "other"):
            return [
                f"the label column {column!r} has type {arrow_type} but {loss_name} needs a vector (list of floats) per row"
            ]
        length: int | None = None
        for index, value in rows:
            problem, length = _vector_label_problem(column, index, value, length, loss_name)
            if problem:
                return [problem]
        return []
    return []
