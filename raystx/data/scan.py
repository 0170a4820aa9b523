"""Whole-dataset checks that cost little: one streamed pass of Arrow compute over EVERY row of the columns
a dataset trains on (the value checks in ``raystx.data.columns`` only see a sample of rows).

``scan_source(source)`` reads the used columns in Arrow batches (a ``datasets.Dataset`` through its Arrow
format, staged Parquet row group by row group, skipping text chunks whose statistics show no null and no empty
string, so the driver holds one row group at a time) and returns
``{column: ColumnStats}``: null count and first null row, NaN/inf count and first such row, min/max of
numeric columns, the first non-integral float, empty strings, and for list (vector) columns the first empty or
differently sized vector and the first row with a null/NaN/inf inside. Row indices are global (0-based).

``text_scan_problem`` / ``label_scan_problem`` turn those stats into one sentence for the error message, in
the style of ``raystx.data.columns`` (the caller prefixes dataset and loss). ``label_range_warning`` says
when a loss's scores lie outside the range the loss can reach (``expected_label_range`` on the loss class).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raystx.data.columns import arrow_kind

SCAN_BATCH_ROWS = 65_536


@dataclass
class ColumnStats:
    """What one pass over a column found. Row indices are global; None when nothing of the kind was seen."""

    column: str
    rows: int = 0
    nulls: int = 0
    first_null: int | None = None
    nonfinite: int = 0
    first_nonfinite: int | None = None
    nonfinite_value: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    first_fraction: int | None = None
    fraction_value: float | None = None
    empty_strings: int = 0
    empty_rows: list[int] = field(default_factory=list)
    vector_length: int | None = None
    first_empty_vector: int | None = None
    first_length_mismatch: int | None = None
    mismatch_length: int | None = None
    first_bad_item: int | None = None
    bad_item: Any = None


def _first(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Position of the first True in a boolean array (nulls count as False)."""
    found = pc.index(mask, True).as_py()
    return None if found is None or found < 0 else int(found)


def _numeric_stats(stats: ColumnStats, values: pa.Array | pa.ChunkedArray, offset: int) -> None:
    kind = arrow_kind(values.type)
    if kind == "bool":
        values = pc.cast(values, pa.int8())
    elif kind not in ("int", "float"):
        return
    if pa.types.is_floating(values.type):
        bad = pc.or_(pc.is_nan(values), pc.is_inf(values))
        count = pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
        if count:
            where = _first(bad)
            stats.nonfinite += count
            if stats.first_nonfinite is None and where is not None:
                stats.first_nonfinite = offset + where
                stats.nonfinite_value = values[where].as_py()
        fraction = pc.not_equal(values, pc.floor(values))
        where = _first(pc.and_(fraction, pc.invert(bad)))
        if where is not None and stats.first_fraction is None:
            stats.first_fraction = offset + where
            stats.fraction_value = values[where].as_py()
    extremes = pc.min_max(values)  # skips nulls and NaN
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low is not None and (low == low and abs(low) != float("inf")):
        stats.minimum = low if stats.minimum is None else min(stats.minimum, low)
    if high is not None and (high == high and abs(high) != float("inf")):
        stats.maximum = high if stats.maximum is None else max(stats.maximum, high)


def _vector_stats(stats: ColumnStats, values: pa.Array | pa.ChunkedArray, offset: int) -> None:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    lengths = pc.list_value_length(values)
    where = _first(pc.equal(lengths, 0))
    if where is not None and stats.first_empty_vector is None:
        stats.first_empty_vector = offset + where
    if stats.vector_length is None:
        valid = pc.drop_null(lengths)
        valid = pc.filter(valid, pc.greater(valid, 0))
        if len(valid):
            stats.vector_length = int(valid[0].as_py())
    if stats.vector_length is not None and stats.first_length_mismatch is None:
        differs = pc.and_(pc.not_equal(lengths, stats.vector_length), pc.greater(lengths, 0))
        where = _first(differs)
        if where is not None:
            stats.first_length_mismatch = offset + where
            stats.mismatch_length = int(lengths[where].as_py())
    if stats.first_bad_item is not None:
        return
    flat = pc.list_flatten(values)
    parents = pc.list_parent_indices(values)
    bad = pc.is_null(flat)
    if pa.types.is_floating(flat.type):
        bad = pc.or_(bad, pc.fill_null(pc.or_(pc.is_nan(flat), pc.is_inf(flat)), False))
    where = _first(bad)
    if where is not None:
        stats.first_bad_item = offset + int(parents[where].as_py())
        stats.bad_item = flat[where].as_py()


def _text_stats(stats: ColumnStats, values: pa.Array | pa.ChunkedArray, offset: int) -> None:
    empty = pc.equal(values, "")
    count = pc.sum(pc.cast(empty, pa.int64())).as_py() or 0
    if count:
        stats.empty_strings += count
        if len(stats.empty_rows) < 5:
            rows = pc.indices_nonzero(pc.fill_null(empty, False)).to_pylist()
            stats.empty_rows.extend(offset + r for r in rows[: 5 - len(stats.empty_rows)])


def _add_batch(stats: ColumnStats, values: pa.Array | pa.ChunkedArray, offset: int) -> None:
    stats.rows += len(values)
    if values.null_count:
        if stats.first_null is None:
            stats.first_null = offset + (_first(pc.is_null(values)) or 0)
        stats.nulls += values.null_count
    kind = arrow_kind(values.type)
    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, values.type.value_type)
    if kind == "text":
        _text_stats(stats, values, offset)
    elif kind in ("int", "float", "bool"):
        _numeric_stats(stats, values, offset)
    elif kind == "vector":
        _vector_stats(stats, values, offset)


def _needs_read(chunk: Any) -> bool:
    """Whether a Parquet text column chunk must be read: its statistics cannot rule out nulls or ``""``."""
    stats = chunk.statistics
    if stats is None or not stats.has_null_count or not stats.has_min_max:
        return True
    return stats.null_count > 0 or stats.min in ("", b"")


def _batches(source: Any, columns: Sequence[str]) -> Iterator[tuple[int, pa.Table]]:
    """``(rows, table)`` pieces of the source in row order; ``table`` holds the ``columns`` that must be read.

    A ``datasets.Dataset`` is read through its Arrow format (memory-mapped). Staged Parquet is read one row
    group at a time, as written (no cast), and text column chunks whose statistics show no null and no empty
    string are skipped: the driver's memory stays at one row group of the numeric columns."""
    if source.dataset is not None:
        ds = source.dataset.with_format("arrow", columns=list(columns))
        for start in range(0, len(ds), SCAN_BATCH_ROWS):
            table = ds[start : start + SCAN_BATCH_ROWS]
            yield table.num_rows, table
        return
    import pyarrow.parquet as pq

    from raystx.data.readers import _open_input

    for path in source.staged_files or []:
        handle = pq.ParquetFile(_open_input(path))
        names = handle.schema_arrow.names
        for group in range(handle.metadata.num_row_groups):
            meta = handle.metadata.row_group(group)
            chunks = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
            read = []
            for column in columns:
                if column not in names:
                    continue
                kind = arrow_kind(source.column_type(column))
                if kind != "text" or column not in chunks or _needs_read(chunks[column]):
                    read.append(column)
            table = handle.read_row_group(group, columns=read) if read else pa.table({})
            for column in columns:  # a column some files lack: nulls in those rows
                if column not in names:
                    table = table.append_column(column, pa.nulls(meta.num_rows))
            yield meta.num_rows, table


def scan_source(source: Any, columns: Sequence[str] | None = None) -> dict[str, ColumnStats]:
    """One pass over every row of ``columns`` (default: the source's input and label columns).

    ``source``: a ``TrainingSource``. Returns ``{column: ColumnStats}``; empty when the source has no rows.
    """
    columns = list(source.columns if columns is None else columns)
    if not source.num_rows or not columns or (source.dataset is None and not source.staged_files):
        return {}
    stats = {c: ColumnStats(c) for c in columns}
    offset = 0
    for rows, table in _batches(source, columns):
        for column in columns:
            if column in table.column_names:
                _add_batch(stats[column], table.column(column), offset)
            else:  # skipped: its statistics show nothing to report
                stats[column].rows += rows
        offset += rows
    return stats


def _rows(count: int) -> str:
    return f"{count} row{'s' if count != 1 else ''}"


def text_scan_problem(stats: ColumnStats | None, name: str) -> str | None:
    """The problem of an input column found by the whole-dataset scan (a null text), or None."""
    if stats is None or not stats.nulls:
        return None
    return (
        f"the input column {stats.column!r} holds None at row {stats.first_null} (None in {_rows(stats.nulls)} "
        f"of {stats.rows}, found by checking every row); every text must be a string: drop or fill "
        f"those rows first, e.g. dataset.filter(lambda row: row[{stats.column!r}] is not None)"
    )


def label_scan_problem(stats: ColumnStats | None, kind: str, loss_name: str) -> str | None:
    """The problem of a label column of label ``kind`` (float, int, vector) found by the scan, or None."""
    if stats is None:
        return None
    column = stats.column
    if stats.nulls:
        return (
            f"the label column {column!r} holds None at row {stats.first_null} (None in {_rows(stats.nulls)} "
            f"of {stats.rows}, found by checking every row); {loss_name} needs a label in every row: drop or fill "
            "those rows first"
        )
    if kind in ("float", "int") and stats.nonfinite:
        return (
            f"the label column {column!r} holds {stats.nonfinite_value} at row {stats.first_nonfinite} "
            f"(NaN or inf in {_rows(stats.nonfinite)} of {stats.rows}, found by checking every row); labels "
            "must be finite numbers: drop or fix those rows first"
        )
    if kind == "int" and stats.first_fraction is not None:
        return (
            f"the label column {column!r} holds the float {stats.fraction_value} at row {stats.first_fraction} "
            f"but {loss_name} needs an integer class id (a float column is accepted only when every value is "
            "integral, like 1.0)"
        )
    if kind == "vector":
        if stats.first_empty_vector is not None:
            return f"the label column {column!r} holds an empty vector at row {stats.first_empty_vector}"
        if stats.first_length_mismatch is not None:
            return (
                f"the label column {column!r} holds vectors of different lengths ({stats.vector_length} and "
                f"{stats.mismatch_length} at row {stats.first_length_mismatch}); every label vector needs the "
                "same length"
            )
        if stats.first_bad_item is not None:
            return (
                f"the label column {column!r} holds a vector with {stats.bad_item} at row {stats.first_bad_item}; "
                "values must be finite numbers"
            )
    return None


def label_range_warning(stats: ColumnStats | None, loss: Any, loss_name: str) -> str | None:
    """A sentence when float scores lie outside ``loss.expected_label_range`` (None: in range or no range)."""
    expected = getattr(loss, "expected_label_range", None)
    if stats is None or expected is None or stats.minimum is None or stats.maximum is None:
        return None
    low, high = expected
    if low <= stats.minimum and stats.maximum <= high:
        return None
    observed = f"[{stats.minimum:g}, {stats.maximum:g}]"
    if stats.minimum >= 0 and stats.maximum <= 5:
        fix = f"for 0-5 similarity ratings (STS) divide the scores by 5, e.g. dataset.map(lambda row: {{{stats.column!r}: row[{stats.column!r}] / 5}})"
    else:
        fix = f"rescale the scores into [{low:g}, {high:g}] first (e.g. divide by {max(abs(stats.minimum), abs(stats.maximum)):g})"
    return (
        f"the label column {stats.column!r} holds scores in {observed}, but {loss_name} fits them to cosine "
        f"similarities, which lie in [{low:g}, {high:g}]; {fix}"
    )
