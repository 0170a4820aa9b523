"""Reading datasets from files and streams with Ray Data, staging them as Parquet, and opening the staged copy.

Driver side (``prepare_sources`` calls these):

* ``expand_paths(name, spec)``: a path, directory, glob or list of them -> the sorted list of files.
* ``detect_format(name, files)``: ``csv | tsv | json | parquet | arrow`` from the file extensions.
* ``read_files(name, files, fmt)`` / ``read_iterable(dataset)``: a lazy ``ray.data.Dataset`` (nothing is read
  on the driver; CSV/TSV headers are the exception, one line per file).
* ``stage(name, ray_dataset, out_dir, files=..., fmt=...)``: Ray tasks write the rows to
  ``out_dir/*.parquet``; a failure is turned into a ``DatasetReadError`` naming the file and line.
* ``RayTaskOptions``: zero-CPU, concurrency-capped Ray Data tasks for a staging pass that runs while the training
  workers hold the CPUs (``raystx.data.background``); the readers and ``stage`` take it as ``options``.
* ``parquet_schema(files)``, ``parquet_num_rows(files)``, ``read_parquet_rows(files, indices, columns)``: facts
  and a few rows from the staged files, read from Parquet metadata and single row groups only.

Worker side: ``raystx.data.shard_reader.RowGroupReader`` reads the row groups a worker needs (staged files, or
the user's Parquet files read in place: ``parquet_in_place``), through a node-local cache under ``_cache_dir``.

Text formats: CSV (comma, ``"`` quoting, quoted newlines allowed), TSV (tab, quoting off: texts may hold
quotes), JSON (one object per line, or a JSON array of objects) and JSONL. Binary: Parquet, Arrow IPC
(``.arrow``: Hugging Face cache files and IPC streams; ``.feather``: IPC files). Text files must be UTF-8.
In CSV/TSV every column except a label column (label/labels/score/scores) is read as a string, so that a
text column holding only digits stays text.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from raystx.data.errors import DatasetFileNotFoundError, DatasetReadError, file_location
from raystx.data.names import LABEL_COLUMNS

if TYPE_CHECKING:
    import datasets
    import ray.data

EXTENSION_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
}
STAGED_ROW_GROUP_SIZE = 8192
_TEXT_FORMATS = ("csv", "tsv", "json")
_IPC_FILE_MAGIC = b"ARROW1"


@dataclass(frozen=True)
class RayTaskOptions:
    """Resources and concurrency for the Ray Data tasks of a read and its staging write.

    The background staging pass (``raystx.data.background``) runs while the training workers hold their CPUs,
    so its tasks ask for ``num_cpus`` = 0 (they cannot wait for CPUs the workers keep) and ``concurrency`` caps
    how many run at once (zero-CPU tasks are otherwise not limited by the cluster's size)."""

    num_cpus: float = 0
    concurrency: int = 2

    def read_args(self) -> dict[str, Any]:
        """Keyword arguments of ``ray.data.read_*``."""
        return {"num_cpus": self.num_cpus, "concurrency": self.concurrency}

    def write_args(self) -> dict[str, Any]:
        """Keyword arguments of ``Dataset.write_parquet``."""
        return {"ray_remote_args": {"num_cpus": self.num_cpus}, "concurrency": self.concurrency}

    def map_args(self) -> dict[str, Any]:
        """Keyword arguments of ``Dataset.map_batches``."""
        return {"num_cpus": self.num_cpus, "concurrency": self.concurrency}


# ----------------------------------------------------------------------------------------------- paths


def is_path_spec(obj: Any) -> bool:
    """True for a path (str / os.PathLike) or a non-empty list/tuple of paths."""
    if isinstance(obj, (str, os.PathLike)):
        return True
    return (
        isinstance(obj, (list, tuple))
        and len(obj) > 0
        and all(isinstance(p, (str, os.PathLike)) for p in obj)
    )


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _visible(path: str) -> bool:
    base = os.path.basename(path)
    return not base.startswith((".", "_"))


def expand_paths(name: str, spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Files named by ``spec``: files as given, globs expanded (``**`` recursive), directories listed
    recursively (hidden files and ``_``-prefixed markers such as ``_SUCCESS`` skipped). Remote URIs
    (``s3://...``) are passed through unchecked. Raises ``DatasetFileNotFoundError`` naming the path."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[str] = []
    for item in items:
        path = os.fspath(item)
        if path.startswith("file://"):
            path = path[len("file://") :]
        if _is_remote(path):
            files.append(path)
            continue
        path = os.path.expanduser(path)
        if glob.has_magic(path):
            found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not found:
                raise DatasetFileNotFoundError(
                    f"dataset {name!r}: the pattern {path!r} matches no file", dataset=name, file=path
                )
            files.extend(os.path.abspath(p) for p in found)
        elif os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if _visible(d))
                found.extend(os.path.join(root, f) for f in names if _visible(f))
            found.sort()
            found = [p for p in found if os.path.splitext(p)[1].lower() in EXTENSION_FORMATS]
            if not found:
                raise DatasetFileNotFoundError(
                    f"dataset {name!r}: the directory {path!r} holds no data file "
                    f"(looked for {sorted(EXTENSION_FORMATS)})",
                    dataset=name,
                    file=path,
                )
            files.extend(os.path.abspath(p) for p in found)
        elif os.path.isfile(path):
            files.append(os.path.abspath(path))
        else:
            raise DatasetFileNotFoundError(
                f"dataset {name!r}: {file_location(path)} does not exist", dataset=name, file=path
            )
    return files


def describe_files(fmt: str, files: Sequence[str]) -> str:
    """``"csv file 'a.csv'"`` / ``"parquet files 'a.parquet' and 2 more"``: where a source came from, for messages."""
    more = f" and {len(files) - 1} more" if len(files) > 1 else ""
    return f"{fmt} file{'s' if len(files) > 1 else ''} {files[0]!r}{more}"


def detect_format(name: str, files: Sequence[str]) -> str:
    """The one format shared by ``files``, from their extensions; ``DatasetReadError`` otherwise."""
    formats: dict[str, str] = {}
    for path in files:
        ext = os.path.splitext(path)[1].lower()
        fmt = EXTENSION_FORMATS.get(ext)
        if fmt is None:
            raise DatasetReadError(
                f"dataset {name!r}: {file_location(path)} has an unsupported extension {ext or '(none)'!r}; "
                f"supported: {', '.join(sorted(EXTENSION_FORMATS))}",
                dataset=name,
                file=path,
            )
        formats.setdefault(fmt, path)
    if len(formats) > 1:
        raise DatasetReadError(
            f"dataset {name!r} mixes file formats {sorted(formats)} (e.g. {list(formats.values())}); "
            "give one format per dataset",
            dataset=name,
            file=next(iter(formats.values())),
        )
    return next(iter(formats))


# --------------------------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _ordered_ray_data() -> Iterator[None]:
    """Keep row order through Ray Data (staged row i is source row i) while the block is active."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    old = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = old


def _csv_dialect(fmt: str) -> dict[str, Any]:
    if fmt == "tsv":
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return {"delimiter": ",", "quotechar": '"', "doublequote": True}


def read_csv_header(name: str, path: str, fmt: str) -> list[str]:
    """Column names from the first line of a local CSV/TSV file (reads one line)."""
    with open(path, "rb") as f:
        raw = f.readline()
    if not raw.strip():
        raise DatasetReadError(
            f"dataset {name!r}: {file_location(path, 1)} is empty; a {fmt.upper()} file needs a header line "
            "naming its columns",
            dataset=name,
            file=path,
            line=1,
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _encoding_error(name, path, 1, exc) from None
    header = next(csv.reader([text.rstrip("\r\n")], **_csv_dialect(fmt)))
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes or any(c == "" for c in header):
        problem = f"repeats column names {dupes}" if dupes else "has an empty column name"
        raise DatasetReadError(
            f"dataset {name!r}: the header of {file_location(path, 1)} {problem}: {header}",
            dataset=name,
            file=path,
            line=1,
        )
    return header


def _file_schema(path: str, fmt: str) -> pa.Schema:
    if fmt == "parquet":
        return pq.read_schema(_open_input(path))
    source = _open_input(path)
    handle = pa.memory_map(source) if isinstance(source, str) else source
    try:
        return pa.ipc.open_file(handle).schema
    except pa.ArrowInvalid:
        handle.seek(0)
        return pa.ipc.open_stream(handle).schema


def check_unique_columns(name: str, files: Sequence[str], fmt: str) -> None:
    """Raise ``DatasetReadError`` naming the file when a Parquet/Arrow file repeats a column name (read from
    the footer/schema only). Files whose schema cannot be read are left to the reader's own diagnosis."""
    for path in files:
        try:
            names = _file_schema(path, fmt).names
        except Exception:  # noqa: BLE001 - unreadable files are reported by diagnose_files
            continue
        dupes = sorted({c for c in names if names.count(c) > 1})
        if dupes:
            raise DatasetReadError(
                f"dataset {name!r}: {file_location(path)} repeats column names {dupes} (columns: {names}); a "
                "column name may appear once per file: rename or drop the duplicates when writing the file",
                dataset=name,
                file=path,
            )


def check_csv_headers(name: str, files: Sequence[str], fmt: str) -> list[str] | None:
    """The header of the first local CSV/TSV file of ``files``, after checking that every local file has the
    same one (``DatasetReadError`` naming the file otherwise); None when all files are remote."""
    local = [p for p in files if not _is_remote(p)]
    header = read_csv_header(name, local[0], fmt) if local else None
    for other in local[1:]:
        other_header = read_csv_header(name, other, fmt)
        if other_header != header:
            raise DatasetReadError(
                f"dataset {name!r}: {file_location(other, 1)} has columns {other_header}, but "
                f"{file_location(local[0], 1)} has {header}; all files of a dataset need the same header",
                dataset=name,
                file=other,
                line=1,
            )
    return header


def csv_options(fmt: str, header: Sequence[str] | None) -> tuple[Any, Any]:
    """pyarrow's ``(ParseOptions, ConvertOptions)`` for a CSV (``fmt="csv"``) or TSV file with ``header``: every
    column but the label columns read as text (so "007" stays a sentence, not the number 7). One definition for
    the staging read, the driver's head of a file and the local reader, so they parse the same rows alike."""
    import pyarrow.csv as pacsv

    parse = (
        pacsv.ParseOptions(delimiter="\t", quote_char=False)
        if fmt == "tsv"
        else pacsv.ParseOptions(delimiter=",", newlines_in_values=True)
    )
    text_types = {c: pa.string() for c in header or [] if c not in LABEL_COLUMNS}
    return parse, pacsv.ConvertOptions(column_types=text_types)


def read_files(
    name: str, files: list[str], fmt: str, options: RayTaskOptions | None = None
) -> tuple[ray.data.Dataset, list[str] | None]:
    """A lazy Ray Dataset over ``files`` and, for CSV/TSV, the header columns (None for other formats).

    ``options``: the resources and concurrency of the read tasks (``background_options``); Ray Data's defaults
    when None."""
    read_args = options.read_args() if options is not None else {}
    import ray.data

    with _ordered_ray_data():
        if fmt in ("csv", "tsv"):
            header = check_csv_headers(name, files, fmt)
            parse, convert = csv_options(fmt, header)
            ds = ray.data.read_csv(
                files,
                parse_options=parse,
                convert_options=convert,
                partitioning=None,
                file_extensions=None,
                **read_args,
            )
            return ds, header
        if fmt in ("parquet", "arrow"):
            check_unique_columns(name, files, fmt)
        try:
            if fmt == "json":
                ds = ray.data.read_json(files, partitioning=None, file_extensions=None, **read_args)
            elif fmt == "parquet":
                ds = ray.data.read_parquet(files, partitioning=None, file_extensions=None, **read_args)
            elif fmt == "arrow":
                ds = ray.data.read_datasource(_datasources()[0](files, partitioning=None), **read_args)
            else:
                raise DatasetReadError(f"dataset {name!r}: unknown format {fmt!r}", dataset=name)
        except DatasetReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - Parquet footers are read here, on the driver
            raise _read_failure(name, files, fmt, exc) from exc
        # pyarrow's JSON reader (and Parquet/IPC files written by others) can carry invalid UTF-8 strings
        map_args = options.map_args() if options is not None else {}
        return ds.map_batches(_check_valid_utf8, batch_format="pyarrow", batch_size=None, **map_args), None


def _check_valid_utf8(table: pa.Table) -> pa.Table:
    """Full Arrow validation of a block (includes UTF-8 validity of string columns); raises ArrowInvalid."""
    table.validate(full=True)
    return table


def read_iterable(
    dataset: datasets.IterableDataset, batch_size: int = 1024, options: RayTaskOptions | None = None
) -> ray.data.Dataset:
    """A lazy Ray Dataset that streams a (finite) Hugging Face ``IterableDataset``, one read task per group
    of its shards. Used instead of ``ray.data.from_huggingface``, which needs ``aiohttp`` and asks the Hub.
    ``options``: as for ``read_files``."""
    import ray.data

    read_args = options.read_args() if options is not None else {}
    with _ordered_ray_data():
        return ray.data.read_datasource(_datasources()[1](dataset, batch_size), **read_args)


class _PrefixedStream(io.RawIOBase):
    """A readable stream that first returns ``prefix`` and then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: Any) -> None:
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


def _read_ipc_stream(f: Any) -> Iterator[pa.Table]:
    """Record batches of an Arrow IPC stream or IPC file (the file format wraps a stream after 8 bytes)."""
    head = f.read(8)
    stream = f if head[:6] == _IPC_FILE_MAGIC else io.BufferedReader(_PrefixedStream(head, f))
    with pa.ipc.open_stream(stream) as reader:
        for batch in reader:
            yield pa.Table.from_batches([batch])


@functools.cache
def _datasources() -> tuple[type, type]:
    """The two Ray datasources, defined on first use so that importing this module does not import Ray."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, FileBasedDatasource, ReadTask

    class ArrowIPCDatasource(FileBasedDatasource):
        """``.arrow`` / ``.feather`` files (Arrow IPC stream or file format)."""

        def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
            yield from _read_ipc_stream(f)

    class IterableDatasetDatasource(Datasource):
        """A Hugging Face IterableDataset streamed as Arrow tables, one read task per group of shards."""

        def __init__(self, dataset: datasets.IterableDataset, batch_size: int) -> None:
            super().__init__()
            self._dataset = dataset
            self._batch_size = batch_size

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ):
            shards = max(1, int(getattr(self._dataset, "num_shards", 1) or 1))
            n_tasks = max(1, min(parallelism if parallelism > 0 else 1, shards))
            parts = (
                [self._dataset] if n_tasks == 1 else [self._dataset.shard(n_tasks, i) for i in range(n_tasks)]
            )
            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [
                ReadTask(
                    _iterable_reader(part, self._batch_size), meta, per_task_row_limit=per_task_row_limit
                )
                for part in parts
            ]

    return ArrowIPCDatasource, IterableDatasetDatasource


def _iterable_reader(dataset: datasets.IterableDataset, batch_size: int):
    def read() -> Iterator[pa.Table]:
        for batch in dataset.with_format(None).iter(batch_size=batch_size):
            yield pa.Table.from_pydict(dict(batch))

    return read


# --------------------------------------------------------------------------------------------- staging


def stage(
    name: str,
    ray_dataset: ray.data.Dataset,
    out_dir: str,
    *,
    files: list[str] | None = None,
    fmt: str | None = None,
    options: RayTaskOptions | None = None,
) -> list[str]:
    """Write ``ray_dataset`` to ``out_dir`` as Parquet with Ray tasks (the driver holds no rows) and
    return the written files in row order. ``out_dir`` is emptied first. A failure while reading
    ``files`` becomes a ``DatasetReadError`` naming the file (and line, for text formats). ``options``: the
    resources and concurrency of the write tasks (Ray Data's defaults when None)."""
    if not _is_remote(out_dir) and os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    write_args = options.write_args() if options is not None else {}
    try:
        with _ordered_ray_data():
            ray_dataset.write_parquet(out_dir, row_group_size=STAGED_ROW_GROUP_SIZE, **write_args)
    except Exception as exc:  # noqa: BLE001 - Ray wraps reader errors in its own types
        raise _read_failure(name, files, fmt, exc) from exc
    return list_parquet_files(out_dir)


def _read_failure(
    name: str, files: list[str] | None, fmt: str | None, exc: BaseException
) -> DatasetReadError:
    """The error to raise after reading failed: the diagnosed file/line, or the reader's own message."""
    found = diagnose_files(name, files, fmt) if files and fmt else None
    if found is not None:
        return found
    where = f" from {files[:3]}{'...' if len(files) > 3 else ''}" if files else ""
    return DatasetReadError(
        f"dataset {name!r}: reading{where} failed: {_short_error(exc)}",
        dataset=name,
        file=files[0] if files and len(files) == 1 else None,
    )


def list_parquet_files(out_dir: str) -> list[str]:
    """The ``.parquet`` files under ``out_dir`` in write order (Ray names them by write-task index)."""
    if _is_remote(out_dir):
        fs, root = pa.fs.FileSystem.from_uri(out_dir)
        infos = fs.get_file_info(pa.fs.FileSelector(root, allow_not_found=True))
        scheme = out_dir.split("://", 1)[0]
        return sorted(f"{scheme}://{i.path}" for i in infos if i.path.endswith(".parquet"))
    if not os.path.isdir(out_dir):
        return []
    return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".parquet"))


def _short_error(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc.__cause__
    for candidate in (cause, exc):
        if candidate is None:
            continue
        lines = [ln.strip() for ln in str(candidate).splitlines() if ln.strip()]
        for ln in reversed(lines):
            if "Error" in ln or "error" in ln or "Invalid" in ln:
                return ln[:500]
        if lines:
            return lines[-1][:500]
    return type(exc).__name__


# ------------------------------------------------------------------------------------------- diagnosis


def _encoding_error(name: str, path: str, line: int, exc: UnicodeDecodeError) -> DatasetReadError:
    return DatasetReadError(
        f"dataset {name!r}: {file_location(path, line)} is not valid UTF-8 ({exc.reason} at byte "
        f"{exc.start} of the line); save the file as UTF-8",
        dataset=name,
        file=path,
        line=line,
    )


def _check_utf8(name: str, path: str) -> DatasetReadError | None:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return _encoding_error(name, path, number, exc)
    return None


def _diagnose_csv(name: str, path: str, fmt: str) -> DatasetReadError | None:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True, **_csv_dialect(fmt))
        header: list[str] | None = None
        last_line = 0
        try:
            for row in reader:
                start, last_line = last_line + 1, reader.line_num
                if not row:
                    continue
                if header is None:
                    header = row
                    continue
                if len(row) != len(header):
                    return DatasetReadError(
                        f"dataset {name!r}: malformed {fmt.upper()} row at {file_location(path, start)}: expected "
                        f"{len(header)} fields ({header}), got {len(row)}",
                        dataset=name,
                        file=path,
                        line=start,
                    )
        except csv.Error as exc:
            return DatasetReadError(
                f"dataset {name!r}: malformed {fmt.upper()} at {file_location(path, last_line + 1)}: {exc}",
                dataset=name,
                file=path,
                line=last_line + 1,
            )
    return None


def _diagnose_json(name: str, path: str) -> DatasetReadError | None:
    with open(path, encoding="utf-8") as f:
        first = ""
        while not first:
            chunk = f.read(1)
            if not chunk:
                return None
            first = chunk.strip()
        f.seek(0)
        if first == "[":
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                return DatasetReadError(
                    f"dataset {name!r}: malformed JSON at {file_location(path, exc.lineno)}: {exc.msg}",
                    dataset=name,
                    file=path,
                    line=exc.lineno,
                )
            if not all(isinstance(row, dict) for row in data):
                return DatasetReadError(
                    f"dataset {name!r}: {file_location(path)} holds a JSON array whose items are not all objects",
                    dataset=name,
                    file=path,
                )
            return None
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                return DatasetReadError(
                    f"dataset {name!r}: malformed JSON line at {file_location(path, number)}: {exc.msg} "
                    f"(column {exc.colno})",
                    dataset=name,
                    file=path,
                    line=number,
                )
            if not isinstance(row, dict):
                return DatasetReadError(
                    f"dataset {name!r}: {file_location(path, number)} is not a JSON object (one object per line "
                    f"is expected), got {type(row).__name__}",
                    dataset=name,
                    file=path,
                    line=number,
                )
    return None


def _diagnose_binary(name: str, path: str, fmt: str) -> DatasetReadError | None:
    try:
        if fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=STAGED_ROW_GROUP_SIZE):
                batch.validate(full=True)
        else:
            with pa.OSFile(path, "rb") as f:
                for table in _read_ipc_stream(f):
                    table.validate(full=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unreadable
        return DatasetReadError(
            f"dataset {name!r}: {file_location(path)} is not a readable {fmt} file: {exc}",
            dataset=name,
            file=path,
        )
    return None


def diagnose_files(name: str, files: Sequence[str], fmt: str) -> DatasetReadError | None:
    """Find the first bad file (and line) after a failed read: streams each local file once, so memory
    stays flat. Returns None when nothing wrong is found."""
    for path in files:
        if _is_remote(path) or not os.path.isfile(path):
            continue
        if fmt in _TEXT_FORMATS:
            found = _check_utf8(name, path)
            if found is None:
                found = _diagnose_json(name, path) if fmt == "json" else _diagnose_csv(name, path, fmt)
        else:
            found = _diagnose_binary(name, path, fmt)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------------------- staged parquet


def parquet_schema(files: Sequence[str]) -> pa.Schema:
    """One schema for all ``files`` (from footers only): columns in first-seen order, types promoted
    (null -> anything, int -> float, string -> large_string)."""
    schemas = [pq.read_schema(_open_input(p)) for p in files]
    return pa.unify_schemas(schemas, promote_options="permissive").remove_metadata()


def parquet_num_rows(files: Sequence[str]) -> int:
    """Total number of rows of ``files`` (from footers only)."""
    return sum(pq.ParquetFile(_open_input(p)).metadata.num_rows for p in files)


def parquet_row_groups(files: Sequence[str]) -> list[int]:
    """Rows of every row group of ``files``, in file then row-group order (from footers only): the shards of
    the windowed shuffle (``raystx.data.window_shuffle``)."""
    out: list[int] = []
    for path in files:
        meta = pq.ParquetFile(_open_input(path)).metadata
        out.extend(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
    return out


def parquet_layout(files: Sequence[str]) -> tuple[list[int], list[int]]:
    """``(rows of every row group in file order, row groups per file)`` from the footers only: what a
    ``RowGroupReader`` needs to find a row without opening every file first."""
    rows: list[int] = []
    groups: list[int] = []
    for path in files:
        meta = pq.ParquetFile(_open_input(path)).metadata
        rows.extend(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
        groups.append(meta.num_row_groups)
    return rows, groups


def parquet_in_place(name: str, files: Sequence[str]) -> tuple[pa.Schema, list[int], list[int]]:
    """Driver side, for Parquet inputs read where they are (not staged): the unified schema, the rows of every
    row group and the row groups per file, from the footers only. A file that is not readable Parquet, or
    that repeats a column name, raises ``DatasetReadError`` naming it."""
    check_unique_columns(name, files, "parquet")
    schemas: list[pa.Schema] = []
    rows: list[int] = []
    groups: list[int] = []
    for path in files:
        try:
            handle = pq.ParquetFile(_open_input(path))
        except Exception as exc:  # noqa: BLE001 - a footer that cannot be read: name the file
            raise DatasetReadError(
                f"dataset {name!r}: {file_location(path)} is not a readable parquet file: {_short_error(exc)}",
                dataset=name,
                file=path,
            ) from exc
        meta = handle.metadata
        schemas.append(handle.schema_arrow)
        rows.extend(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
        groups.append(meta.num_row_groups)
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive").remove_metadata()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DatasetReadError(
            f"dataset {name!r}: the Parquet files {list(files)[:3]} have column types that cannot be unified "
            f"({_short_error(exc)}); write the same column with one type in every file",
            dataset=name,
        ) from exc
    return schema, rows, groups


def _open_input(path: str) -> Any:
    if _is_remote(path):
        fs, inner = pa.fs.FileSystem.from_uri(path)
        return fs.open_input_file(inner)
    return path


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, order and types (absent columns become nulls)."""
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def read_parquet_rows(
    files: Sequence[str], indices: Sequence[int], columns: Sequence[str], schema: pa.Schema
) -> dict[str, list]:
    """Rows ``indices`` (global positions across ``files`` in order) of ``columns``, as a dict of lists in
    the order of ``indices``. Reads only the row groups that hold them."""
    sub_schema = pa.schema([schema.field(c) for c in columns])
    locations: list[tuple[int, int, int]] = []  # (file, row group, offset) per global row-group start
    starts: list[int] = []
    total = 0
    # small unbuffered reads: the driver decodes only the batches holding the rows it needs
    handles = [pq.ParquetFile(_open_input(p), pre_buffer=False, buffer_size=1 << 20) for p in files]
    for fi, handle in enumerate(handles):
        for gi in range(handle.metadata.num_row_groups):
            starts.append(total)
            locations.append((fi, gi, handle.metadata.row_group(gi).num_rows))
            total += handle.metadata.row_group(gi).num_rows
    import bisect

    wanted: dict[int, list[tuple[int, int]]] = {}
    for pos, index in enumerate(indices):
        if not 0 <= index < total:
            raise IndexError(f"row {index} out of range for {total} rows")
        g = bisect.bisect_right(starts, index) - 1
        wanted.setdefault(g, []).append((pos, index - starts[g]))
    out: list[dict[str, Any] | None] = [None] * len(indices)
    for g, picks in wanted.items():
        fi, gi, _ = locations[g]
        present = [c for c in columns if c in handles[fi].schema_arrow.names]
        # streamed in batches, so that a user's large row group never sits in the driver's memory whole
        start, last = 0, max(offset for _, offset in picks)
        batches = handles[fi].iter_batches(
            batch_size=STAGED_ROW_GROUP_SIZE, row_groups=[gi], columns=present, use_threads=False
        )
        for batch in batches:
            if start > last:
                break
            end = start + batch.num_rows
            inside = [(pos, offset - start) for pos, offset in picks if start <= offset < end]
            if inside:
                table = conform(pa.Table.from_batches([batch]), sub_schema)
                taken = table.take(pa.array([offset for _, offset in inside], pa.int64())).to_pylist()
                for (pos, _), row in zip(inside, taken):
                    out[pos] = row
            start = end
    return {c: [row[c] for row in out] for c in columns}  # type: ignore[index]


CACHE_DIR_NAME = "raystx-data-cache"


def _cache_dir(tag: str | None = None) -> str:
    """``$TMPDIR/raystx-data-cache`` (``/<tag>`` for a run's own caches, removed when the run ends)."""
    root = os.path.join(tempfile.gettempdir(), CACHE_DIR_NAME)
    return os.path.join(root, tag) if tag else root
