"""The first rows of a dataset, read cheaply on the driver (no Ray task, no pass over the whole input).

The driver checks a dataset whose full staging pass runs in the background (``raystx.data.background``)
on its first rows: column names, types and values. These functions read them:

* ``head_of_files(name, files, fmt, rows)``: the first ``rows`` rows of the first file of a CSV/TSV, JSON Lines
  or Arrow IPC dataset, parsed the way Ray Data's readers parse the whole file (the same pyarrow readers
  and options, so the columns and their types match the staged copy's first row group). ``None`` when there
  is no cheap way to read a head: a JSON file holding one array, a compressed file.
* ``head_of_iterable(name, dataset, rows)``: the first ``rows`` rows of a ``datasets.IterableDataset`` as
  ``raystx.data.readers.read_iterable`` converts them.
* ``total_bytes(files)``: the size of the files (local ``stat`` or the remote filesystem's file info).

A head that cannot be parsed raises the ``DatasetReadError`` the full read would raise (file and line).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from raystx.data.errors import DatasetReadError
from raystx.data.readers import (
    _check_valid_utf8,
    _is_remote,
    _read_failure,
    _read_ipc_stream,
    check_csv_headers,
    check_unique_columns,
    csv_options,
)

READ_CHUNK = 1 << 20  # bytes per read while looking for the first JSON lines


def total_bytes(files: Sequence[str]) -> int:
    """Bytes of all ``files`` (0 for a file whose size cannot be read)."""
    total = 0
    for path in files:
        if _is_remote(path):
            fs, inner = pa.fs.FileSystem.from_uri(path)
            total += max(0, fs.get_file_info(inner).size or 0)
        else:
            total += os.path.getsize(path) if os.path.isfile(path) else 0
    return total


def _open_stream(path: str) -> Any:
    if _is_remote(path):
        fs, inner = pa.fs.FileSystem.from_uri(path)
        return fs.open_input_stream(inner)
    return pa.OSFile(path, "rb")


def _csv_head(path: str, fmt: str, rows: int, header: list[str] | None) -> pa.Table:
    """Ray Data's CSV reading of the start of ``path`` with ``raystx.data.readers.read_files``' options
    (``header``: the columns read as text unless they are label columns; None for a remote file)."""
    import pyarrow.csv as pacsv

    parse, convert = csv_options(fmt, header)
    batches = []
    count = 0
    with _open_stream(path) as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(use_threads=False),  # Ray Data's CSV read options
            parse_options=parse,
            convert_options=convert,
        )
        for batch in reader:
            batches.append(batch)
            count += batch.num_rows
            if count >= rows:
                break
        schema = reader.schema
    return pa.Table.from_batches(batches, schema=schema).slice(0, rows)


def _json_lines_head(path: str, rows: int) -> pa.Table | None:
    """The first ``rows`` objects of a JSON Lines file; None for a file holding one JSON array."""
    import pyarrow.json as pajson

    lines: list[bytes] = []
    pending = b""
    with _open_stream(path) as stream:
        while len(lines) < rows:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                if pending.strip():
                    lines.append(pending)
                break
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            lines.extend(line for line in parts if line.strip())
    if lines and lines[0].lstrip().startswith(b"["):
        return None
    table = pajson.read_json(io.BytesIO(b"\n".join(lines[:rows]) + b"\n"))
    return _check_valid_utf8(table)


def _arrow_head(path: str, rows: int) -> pa.Table:
    tables = []
    count = 0
    with _open_stream(path) as stream:
        for table in _read_ipc_stream(stream):
            tables.append(table)
            count += table.num_rows
            if count >= rows:
                break
    return pa.concat_tables(tables).slice(0, rows) if tables else pa.table({})


def head_of_files(name: str, files: Sequence[str], fmt: str, rows: int) -> pa.Table | None:
    """The first ``rows`` rows of ``files`` (from the first file; fewer when it is shorter), or None when they
    cannot be read without reading everything. Raises ``DatasetReadError`` naming the file and line."""
    path = files[0]
    if path.endswith((".gz", ".bz2", ".zst", ".lz4", ".br")):
        return None
    header = None
    if fmt in ("csv", "tsv"):
        header = check_csv_headers(name, files, fmt)  # read_files' check: one header in every file
    elif fmt == "arrow":
        check_unique_columns(name, files, fmt)
    try:
        if fmt in ("csv", "tsv"):
            return _csv_head(path, fmt, rows, header)
        if fmt == "json":
            return _json_lines_head(path, rows)
        if fmt == "arrow":
            return _arrow_head(path, rows)
    except DatasetReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow's parse errors: name the file and line
        raise _read_failure(name, [path], fmt, exc) from exc
    return None


def head_of_iterable(name: str, dataset: Any, rows: int) -> pa.Table:
    """The first ``rows`` rows of a ``datasets.IterableDataset`` as one Arrow table (fewer when it is shorter)."""
    try:
        for batch in dataset.with_format(None).iter(batch_size=rows):
            return pa.Table.from_pydict(dict(batch))
    except Exception as exc:  # noqa: BLE001 - a failing generator: the message of a failed staging pass
        raise _read_failure(name, None, None, exc) from exc
    return pa.table({})
