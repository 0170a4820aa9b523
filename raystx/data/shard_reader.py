"""``RowGroupReader``: worker-side random access to the rows of Parquet files, one row group (shard) at a time.

A worker reads only the row groups that hold its rows. A row group is fetched on first use, converted to the
source's schema (``conform``: files with other column sets or types are unified) and kept in a size-capped LRU:

* a remote file's (``s3://``, ``gs://``) row group is written once to the node-local cache folder
  (``$TMPDIR/raystx-data-cache/<run tag>``, removed with the run by ``raystx.data.cache_cleanup``) as an Arrow
  IPC file and memory-mapped from there; evicting it deletes the file;
* a local file's row group is read straight from the file (no copy) and held in memory.

``max_cache_bytes`` caps the sum of the decoded row groups held (disk for remote files, memory for local
ones); the least recently used are evicted, the one being read never is. ``prefetch(rows)`` fetches the row
groups of upcoming rows on a background thread (the ``DataCursor`` hints the rank's next steps), so the step
that needs them finds them in the cache. ``stats()`` counts what was read from the files (the compressed
column chunks of the row groups fetched), written to local disk, and the cache's hits and evictions.

In: the files, the Arrow schema of all their columns (``parquet_schema``), the columns to read, the rows of
every row group in file order and the number of row groups per file (``parquet_layout``).
Out: ``reader[[i, j]]`` -> ``{column: [values in the order asked]}``, ``reader[column]`` -> all values of a
column (read file by file, not cached: the duplicate-/label-aware samplers), ``len(reader)``.
"""

from __future__ import annotations

import bisect
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raystx.data.readers import _is_remote, _open_input, conform

DEFAULT_CACHE_MAX_BYTES = 1024**3


@dataclass
class ReadStats:
    """What a reader did: row groups and compressed bytes read from the files, bytes written to local disk,
    cache hits (a row group already held), evictions, and the largest cache size reached."""

    row_groups_read: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    cache_hits: int = 0
    evictions: int = 0
    peak_cache_bytes: int = 0


@dataclass
class _Entry:
    table: pa.Table
    nbytes: int
    path: str | None  # the local cache file (remote sources), deleted on eviction


class RowGroupReader:
    """Rows of ``files`` by global index, fetched per row group through a bounded cache (module docstring)."""

    def __init__(
        self,
        files: Sequence[str],
        schema: pa.Schema,
        columns: Sequence[str],
        shard_rows: Sequence[int],
        groups_per_file: Sequence[int],
        cache_dir: str,
        max_cache_bytes: int | None = None,
        prefetch_threads: int = 1,
    ) -> None:
        if sum(groups_per_file) != len(shard_rows):
            raise ValueError(
                f"the files have {sum(groups_per_file)} row groups but {len(shard_rows)} row counts were given"
            )
        self.files = list(files)
        self.columns = list(columns)
        self.schema = pa.schema([schema.field(c) for c in self.columns])
        self.cache_dir = cache_dir
        self.max_cache_bytes = int(
            max_cache_bytes if max_cache_bytes is not None else DEFAULT_CACHE_MAX_BYTES
        )
        self._rows = [int(n) for n in shard_rows]
        self._starts = np.concatenate([[0], np.cumsum(self._rows)]).astype(np.int64)
        self._where = [(f, g) for f, count in enumerate(groups_per_file) for g in range(int(count))]
        self._handles: dict[int, pq.ParquetFile] = {}
        self._file_locks = [threading.Lock() for _ in self.files]  # one reader of a file handle at a time
        self._cache: OrderedDict[int, _Entry] = OrderedDict()
        self._cache_bytes = 0
        self._lock = threading.Lock()  # the cache, the stats and the handles
        self._loading: dict[int, Future] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, prefetch_threads), thread_name_prefix="raystx-shards"
        )
        self._tag = uuid.uuid4().hex[:8]
        self._stats = ReadStats()
        self._fetched: set[int] = set()

    # ------------------------------------------------------------------ the RowTable interface
    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    @property
    def num_row_groups(self) -> int:
        return len(self._rows)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.column(key)
        if isinstance(key, (int, np.integer)):
            rows = self.take([int(key)])
            return {c: v[0] for c, v in rows.items()}
        return self.take([int(i) for i in key])

    def take(self, indices: Sequence[int]) -> dict[str, list]:
        """Rows ``indices`` as ``{column: [values in the order of indices]}``."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return {c: [] for c in self.columns}
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(
                f"row {int(idx.max() if idx.max() >= len(self) else idx.min())} out of range "
                f"for {len(self)} rows"
            )
        groups = np.searchsorted(self._starts, idx, side="right") - 1
        parts: list[pa.Table] = []
        positions: list[np.ndarray] = []
        for g in np.unique(groups):
            picked = np.nonzero(groups == g)[0]
            table = self.row_group(int(g))
            parts.append(table.take(pa.array(idx[picked] - self._starts[g])))
            positions.append(picked)
        merged = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        order = np.argsort(np.concatenate(positions), kind="stable")
        return merged.take(pa.array(order)).to_pydict()

    def column(self, name: str) -> list:
        """Every value of column ``name`` in row order, read file by file (not through the cache)."""
        if name not in self.columns:
            raise KeyError(f"column {name!r} is not among {self.columns}")
        sub = pa.schema([self.schema.field(name)])
        out: list = []
        for f in range(len(self.files)):
            handle = self._handle(f)
            present = [name] if name in handle.schema_arrow.names else []
            with self._file_locks[f]:
                table = conform(handle.read(columns=present), sub) if present else None
            if table is None:
                count = handle.metadata.num_rows
                out.extend([None] * count)
            else:
                out.extend(table.column(0).to_pylist())
        return out

    # ------------------------------------------------------------------ row groups
    def group_of(self, index: int) -> int:
        """The row group holding global row ``index``."""
        return bisect.bisect_right(self._starts.tolist(), int(index)) - 1

    def row_group(self, g: int) -> pa.Table:
        """Row group ``g`` in the reader's schema, from the cache or fetched now (waiting for a prefetch)."""
        with self._lock:
            entry = self._cache.get(g)
            if entry is not None:
                self._cache.move_to_end(g)
                self._stats.cache_hits += 1
                return entry.table
            future = self._loading.get(g)
            if future is None:
                future = Future()
                self._loading[g] = future
                owner = True
            else:
                owner = False
        if owner:
            self._load(g, future)
        return future.result()

    def prefetch(self, indices: Sequence[int] | np.ndarray) -> None:
        """Fetch the row groups holding ``indices`` in the background (no-op for those held or loading)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return
        groups = np.unique(np.searchsorted(self._starts, idx, side="right") - 1)
        for g in groups.tolist():
            with self._lock:
                if g in self._cache or g in self._loading:
                    continue
                future: Future = Future()
                self._loading[g] = future
            self._pool.submit(self._load, g, future)

    def _load(self, g: int, future: Future) -> None:
        try:
            table, nbytes, path, read = self._fetch(g)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the row group
            with self._lock:
                self._loading.pop(g, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._loading.pop(g, None)
            self._stats.row_groups_read += 1
            self._fetched.add(g)
            self._stats.bytes_read += read
            if path is not None:
                self._stats.bytes_written += nbytes
            self._cache[g] = _Entry(table, nbytes, path)
            self._cache_bytes += nbytes
            self._evict(keep=g)
            self._stats.peak_cache_bytes = max(self._stats.peak_cache_bytes, self._cache_bytes)
        future.set_result(table)

    def _fetch(self, g: int) -> tuple[pa.Table, int, str | None, int]:
        """Read row group ``g``: (table, its decoded size, its local cache file or None, compressed bytes read)."""
        f, local_group = self._where[g]
        handle = self._handle(f)
        names = handle.schema_arrow.names
        present = [c for c in self.columns if c in names]
        with self._file_locks[f]:
            table = conform(handle.read_row_group(local_group, columns=present), self.schema)
        meta = handle.metadata.row_group(local_group)
        read = sum(
            meta.column(i).total_compressed_size
            for i in range(meta.num_columns)
            if meta.column(i).path_in_schema.split(".")[0] in present
        )
        if not _is_remote(self.files[f]):
            return table, int(table.nbytes), None, int(read)
        os.makedirs(self.cache_dir, exist_ok=True)
        path = os.path.join(self.cache_dir, f"rg-{self._tag}-{g}.arrow")
        with pa.OSFile(path + ".partial", "wb") as sink, pa.ipc.new_file(sink, self.schema) as writer:
            writer.write_table(table)
        os.replace(path + ".partial", path)
        mapped = pa.ipc.open_file(pa.memory_map(path)).read_all()
        return mapped, os.path.getsize(path), path, int(read)

    def _handle(self, f: int) -> pq.ParquetFile:
        with self._lock:
            handle = self._handles.get(f)
        if handle is None:
            handle = pq.ParquetFile(_open_input(self.files[f]))
            with self._lock:
                handle = self._handles.setdefault(f, handle)
        return handle

    def _evict(self, keep: int) -> None:
        """Drop least recently used row groups (never ``keep``) until the cache fits its cap. Holds the lock."""
        while self._cache_bytes > self.max_cache_bytes and len(self._cache) > 1:
            g = next(iter(self._cache))
            if g == keep:
                self._cache.move_to_end(g)
                g = next(iter(self._cache))
            entry = self._cache.pop(g)
            self._cache_bytes -= entry.nbytes
            self._stats.evictions += 1
            if entry.path is not None:
                try:
                    os.remove(entry.path)  # a memory map still open on it stays valid until released
                except OSError:
                    pass

    # ------------------------------------------------------------------ accounting / teardown
    @property
    def cache_bytes(self) -> int:
        """Decoded bytes held now (disk for remote files, memory for local ones)."""
        return self._cache_bytes

    def cached_groups(self) -> list[int]:
        """Row groups held now, least recently used first."""
        with self._lock:
            return list(self._cache)

    def stats(self) -> dict[str, Any]:
        """A copy of the counters (``ReadStats`` as a dict) plus ``row_group_ids``: every row group read so far."""
        with self._lock:
            return {**asdict(self._stats), "row_group_ids": sorted(self._fetched)}

    def close(self) -> None:
        """Stop the prefetch thread and delete this reader's cache files."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for future in self._loading.values():  # cancelled prefetches: nobody may wait on them forever
                if not future.done():
                    future.set_exception(RuntimeError("the RowGroupReader was closed"))
            self._loading.clear()
            for entry in self._cache.values():
                if entry.path is not None:
                    try:
                        os.remove(entry.path)
                    except OSError:
                        pass
            self._cache.clear()
            self._cache_bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a RowGroupReader is opened on a worker and not pickled; pickle its TrainingSource")
