"""Reading dataset files on the driver with pyarrow only (no Ray): for checks and small files.

``raystx validate`` checks a config's datasets against their losses without starting Ray: ``scan_source``
builds a ``TrainingSource`` whose facts (row count, schema) and sample rows (``peek``) come from the files
themselves, read one file at a time (Parquet: footers and the row groups holding the sampled rows).
``read_local_table`` reads small files (evaluator data) into one Arrow table.

The formats and their parsing options are those of ``raystx.data.readers`` (``read_files``): CSV/TSV with
every non-label column read as text, JSON lines or a JSON array of objects, Parquet, Arrow IPC. Read errors
become ``DatasetReadError`` naming the file (and line, for text formats).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raystx.data.columns import LABEL_COLUMNS, resolve_columns
from raystx.data.readers import (
    _is_remote,
    _open_input,
    _read_failure,
    _read_ipc_stream,
    csv_options,
    describe_files,
    detect_format,
    expand_paths,
    read_csv_header,
)
from raystx.data.sources import TrainingSource

_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Transform:
    """What a config does to a dataset's rows: ``rename`` columns, keep the first ``limit`` rows, divide the
    label column by ``score_scale``."""

    rename: dict[str, str] | None = None
    limit: int | None = None
    score_scale: float | None = None

    def apply(self, table: pa.Table) -> pa.Table:
        if self.rename:
            table = table.rename_columns([self.rename.get(c, c) for c in table.column_names])
        if self.score_scale:
            for i, name in enumerate(table.column_names):
                if name in LABEL_COLUMNS:
                    scaled = pc.divide(table.column(i).cast(pa.float32()), pa.scalar(self.score_scale))
                    table = table.set_column(i, name, scaled.cast(pa.float32()))
        return table


def _read_text_table(name: str, path: str, fmt: str) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson

    if fmt == "json":
        with _open_input(path) if _is_remote(path) else open(path, "rb") as f:  # type: ignore[union-attr]
            head = f.read(4096).lstrip()
        if head.startswith(b"["):
            with open(path, encoding="utf-8") as f:
                return pa.Table.from_pylist(json.load(f))
        return pajson.read_json(_open_input(path))
    header = None if _is_remote(path) else read_csv_header(name, path, fmt)
    parse, convert = csv_options(fmt, header)
    return pacsv.read_csv(_open_input(path), parse_options=parse, convert_options=convert)


def iter_file_tables(name: str, files: Sequence[str], fmt: str) -> Iterator[pa.Table]:
    """The rows of ``files`` in order, one table per file (Parquet: per row group), fully validated."""
    for path in files:
        try:
            if fmt == "parquet":
                handle = pq.ParquetFile(_open_input(path))
                for group in range(handle.metadata.num_row_groups):
                    table = handle.read_row_group(group)
                    table.validate(full=True)
                    yield table
                continue
            if fmt == "arrow":
                with pa.OSFile(path, "rb") as f:
                    tables = list(_read_ipc_stream(f))
                table = pa.concat_tables(tables) if tables else pa.table({})
            else:
                table = _read_text_table(name, path, fmt)
            table.validate(full=True)
        except Exception as exc:  # noqa: BLE001 - turned into a DatasetReadError naming the file and line
            from raystx.data.errors import DatasetReadError

            if isinstance(exc, DatasetReadError):
                raise
            raise _read_failure(name, [path], fmt, exc) from exc
        yield table


def read_local_table(name: str, path: str | Sequence[str]) -> pa.Table:
    """All rows of the files named by ``path`` (a path, glob, directory or list) as one Arrow table."""
    files = expand_paths(name, path)
    tables = list(iter_file_tables(name, files, detect_format(name, files)))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


@dataclass
class LocalSource(TrainingSource):
    """A ``TrainingSource`` read straight from its files on the driver, for checks only: ``peek`` reads the
    asked rows from the files; ``open`` (a worker's access) is not available, since nothing is staged."""

    files: list[str] = field(default_factory=list)
    fmt: str = ""
    transform: Transform = field(default_factory=Transform)
    _table: pa.Table | None = field(default=None, repr=False, compare=False)

    def _tables(self) -> Iterator[pa.Table]:
        if self._table is not None:
            yield self._table
            return
        for table in iter_file_tables(self.name, self.files, self.fmt):
            yield self.transform.apply(table)

    def peek(self, indices: Sequence[int]) -> dict[str, list]:
        assert self.schema is not None
        wanted = sorted(set(int(i) for i in indices))
        rows: dict[int, dict[str, Any]] = {}
        start, k = 0, 0
        for table in self._tables():
            end = start + table.num_rows
            picks = []
            while k < len(wanted) and wanted[k] < end:
                picks.append(wanted[k] - start)
                k += 1
            if picks:
                present = [c for c in self.columns if c in table.column_names]
                taken = table.select(present).take(pa.array(picks, pa.int64())).to_pylist()
                for offset, row in zip(picks, taken):
                    rows[start + offset] = row
            if k == len(wanted):
                break
            start = end
        missing = [i for i in wanted if i not in rows or i >= self.num_rows]
        if missing:
            raise IndexError(f"rows {missing[:5]} out of range for {self.num_rows} rows")
        return {c: [rows[int(i)].get(c) for i in indices] for c in self.columns}

    def take(self, indices: Sequence[int]) -> dict[str, list]:
        return self.peek(indices)

    def open(self) -> Any:
        raise RuntimeError(
            f"dataset {self.name!r} was read for checking only; prepare_sources stages it for training"
        )


def _count(
    name: str, files: list[str], fmt: str, transform: Transform
) -> tuple[int, pa.Schema, pa.Table | None]:
    """Rows, schema (after the transform) and, when small, the rows themselves (to read them only once)."""
    if fmt == "parquet":  # footers only
        schemas = [pq.read_schema(_open_input(p)) for p in files]
        empty = pa.unify_schemas(schemas, promote_options="permissive").empty_table()
        rows = sum(pq.ParquetFile(_open_input(p)).metadata.num_rows for p in files)
        return rows, transform.apply(empty).schema.remove_metadata(), None
    tables: list[pa.Table] | None = []
    schemas, size, rows = [], 0, 0
    for table in iter_file_tables(name, files, fmt):
        table = transform.apply(table)
        rows += table.num_rows
        size += table.nbytes
        schemas.append(table.schema)
        if tables is not None:
            tables = tables + [table] if size <= _CACHE_BYTES else None  # too big to keep: peek re-reads
    if not schemas:
        return 0, pa.schema([]), None
    schema = pa.unify_schemas(schemas, promote_options="permissive").remove_metadata()
    merged = pa.concat_tables(tables, promote_options="permissive") if tables else None
    return rows, schema, merged


def scan_source(
    name: str,
    path: str | Sequence[str],
    select: Sequence[str] | None = None,
    transform: Transform | None = None,
) -> LocalSource:
    """The dataset at ``path`` as a ``LocalSource`` (rows counted, schema read, nothing staged, no Ray)."""
    transform = transform or Transform()
    files = expand_paths(name, path)
    fmt = detect_format(name, files)
    rows, schema, table = _count(name, files, fmt, transform)
    if transform.limit is not None:
        rows = min(rows, transform.limit)
    columns = list(schema.names)
    inputs, label = resolve_columns(name, columns, select)
    origin = describe_files(fmt, files)
    return LocalSource(
        name=name,
        input_columns=inputs,
        label_column=label,
        num_rows=rows,
        schema=schema,
        all_columns=columns,
        origin=origin,
        files=files,
        fmt=fmt,
        transform=transform,
        _table=table,
    )
