"""``TrainingSource``: how every training/eval dataset reaches the workers, and the driver-side functions that
build the sources (``prepare_sources``) and check them against the losses (``validate_sources``).

``prepare_sources(train_dataset, staging_dir=..., select_columns=None, name="train")`` accepts

* a ``datasets.Dataset``: kept as is (it pickles cheaply when memory-mapped);
* Parquet file paths / directories / globs (local or ``s3://``...): read in place; only their footers are read
  here (schema, rows per row group), the workers read the row groups they need (``raystx.data.shard_reader``);
* a ``datasets.IterableDataset`` (finite), a ``ray.data.Dataset``, or other file paths / directories / globs
  (CSV, TSV, JSON, JSONL, Arrow): read with Ray Data and written by Ray tasks to
  ``staging_dir/<name>/*.parquet``, so the driver never holds the rows;
* a ``TrainingSource`` prepared earlier (a sweep's trials reuse the driver's): kept, under the given name;
* a ``datasets.DatasetDict`` or a ``dict`` of any of the above (one source per key).

It needs ``ray.init()`` to have been called for everything except ``datasets.Dataset``. Reading errors
(missing file, unsupported extension, malformed line, bad encoding) are raised here as ``DatasetReadError``.

With ``defer=True`` (the trainer's ``train()``), a large file input or an ``IterableDataset`` is not staged
here: its source holds its first ``SAMPLE_ROWS`` rows (enough for ``validate_sources``' column, type and value
checks) and a ``PendingStaging`` marker, and the full pass runs while the workers start
(``raystx.data.background``); the workers wait for it and check the whole dataset before their first step.

``validate_sources(sources, losses, global_batch_size=...)`` checks each source against its loss's
``ColumnContract`` (schema + a sample of rows, then one cheap Arrow pass over every row for nulls, NaN/inf,
non-integral class ids and vector shapes: ``raystx.data.scan``, or the scans a background pass made) and raises one
``DatasetValidationError`` listing every problem. It returns the contract each dataset matched (a loss may
accept several, e.g. ``SoftmaxLoss``: int class ids or vectors), whose ``label`` kind tells collation how to
build the label tensor.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from raystx.data import background
from raystx.data.background import PendingStaging, StagePlan
from raystx.data.columns import (
    SelectColumns,
    columns_for,
    contracts_of,
    drop_hint,
    id_like_columns,
    label_problems,
    resolve_columns,
    structural_problems,
    text_problems,
)
from raystx.data.errors import DatasetValidationError, DatasetWarning, dataset_label
from raystx.data.head import head_of_files, head_of_iterable, total_bytes
from raystx.data.names import split_label_column
from raystx.data.pairing import pairing_problems, unpaired
from raystx.data.readers import (
    _cache_dir,
    describe_files,
    detect_format,
    expand_paths,
    is_path_spec,
    parquet_in_place,
    parquet_layout,
    parquet_schema,
    read_files,
    read_iterable,
    read_parquet_rows,
    stage,
)
from raystx.data.scan import (
    ColumnStats,
    label_range_warning,
    label_scan_problem,
    scan_source,
    text_scan_problem,
)

if TYPE_CHECKING:  # a type only: the staging task imports this module without torch
    from raystx.losses.base import ColumnContract


@dataclass
class TrainingSource:
    """One named dataset, ready to be shipped to workers (it pickles small: a path list or an HF dataset).

    ``input_columns`` (text, in the order the loss receives them) and ``label_column`` are the columns the
    trainer uses; ``num_rows`` counts all rows. Exactly one of ``dataset`` (a ``datasets.Dataset`` kept as
    given) and ``staged_files`` (Parquet files the workers read: the user's own Parquet files, read in place,
    or the copy ``prepare_sources`` staged from other inputs) is set. ``schema`` is the
    Arrow schema of all the source's columns, ``all_columns`` their names before ``select_columns``,
    ``origin`` a short description of where the data came from (for messages). ``shard_rows`` the rows of
    each row group of ``staged_files`` (the shards of a windowed shuffle; None for a ``datasets.Dataset``, which
    is cut into blocks of ``shuffle_block_size`` rows), ``groups_per_file`` how many row groups each file has.
    ``cache_tag`` names the run whose node-local caches of remote row groups this source's workers write
    (removed when the run ends); ``cache_max_bytes`` caps that cache per opened source (None: the default of
    ``raystx.data.shard_reader``). ``pending`` is set while the full staging pass runs in the background
    (``raystx.data.background``): ``dataset`` then holds only the first rows, ``num_rows`` counts them, and
    ``open()`` refuses (the workers replace the source by the full one first).
    """

    name: str
    input_columns: list[str]
    label_column: str | None
    num_rows: int
    dataset: Any = field(default=None, repr=False)
    staged_files: list[str] | None = None
    schema: pa.Schema | None = field(default=None, repr=False)
    all_columns: list[str] = field(default_factory=list)
    origin: str = ""
    cache_tag: str | None = None
    shard_rows: list[int] | None = None
    groups_per_file: list[int] | None = None
    cache_max_bytes: int | None = None
    pending: PendingStaging | None = None
    _opened: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def columns(self) -> list[str]:
        """The columns used for training: the input columns, then the label column if there is one."""
        return list(self.input_columns) + ([self.label_column] if self.label_column else [])

    def open(self) -> Any:
        """Worker side: the rows of ``columns`` with random access by integer index: the ``datasets.Dataset``
        itself, or for Parquet files a ``RowGroupReader`` that fetches only the row groups asked for (through
        a size-capped node-local cache) and can prefetch upcoming ones. The result is cached on this object
        (and not pickled)."""
        if self.pending is not None:
            raise RuntimeError(
                f"dataset {self.name!r} is still being staged in the background; its full source comes from "
                "raystx.data.background.resolve_pending"
            )
        if self._opened is None:
            if self.dataset is not None:
                ds = self.dataset
            elif self.staged_files:
                ds = self._row_group_reader()
            else:
                import datasets

                ds = datasets.Dataset.from_dict({c: [] for c in self.columns})
            if ds.column_names != self.columns:
                ds = ds.select_columns(self.columns)
            self._opened = ds
        return self._opened

    def _row_group_reader(self) -> Any:
        from raystx.data.shard_reader import RowGroupReader

        assert self.staged_files
        schema = self.schema if self.schema is not None else parquet_schema(self.staged_files)
        if self.shard_rows is None or self.groups_per_file is None:
            self.shard_rows, self.groups_per_file = parquet_layout(self.staged_files)
        return RowGroupReader(
            self.staged_files,
            schema,
            self.columns,
            self.shard_rows,
            self.groups_per_file,
            cache_dir=_cache_dir(self.cache_tag),
            max_cache_bytes=self.cache_max_bytes,
        )

    def take(self, indices: Sequence[int]) -> dict[str, list]:
        """Rows ``indices`` as ``{column: [values in the order of indices]}`` (convenience over ``open()``)."""
        rows = self.open()[[int(i) for i in indices]]
        return {c: list(rows[c]) for c in self.columns}

    def peek(self, indices: Sequence[int]) -> dict[str, list]:
        """Like ``take`` but for the driver: Parquet data is read from the few row groups holding ``indices``,
        with nothing cached. A source still being staged gives rows of its first rows (the driver's sample)."""
        if self.pending is not None:
            rows = self.dataset.select_columns(self.columns)[[int(i) for i in indices]]
            return {c: list(rows[c]) for c in self.columns}
        if self.dataset is not None or not self.staged_files:
            return self.take(indices)
        assert self.schema is not None
        return read_parquet_rows(self.staged_files, [int(i) for i in indices], self.columns, self.schema)

    def column_type(self, column: str) -> pa.DataType | None:
        """Arrow type of ``column``, or None when unknown."""
        if self.schema is None or column not in self.schema.names:
            return None
        return self.schema.field(column).type

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_opened"] = None
        return state


# ------------------------------------------------------------------------------------------- preparing


def _named_datasets(train_dataset: Any, name: str) -> dict[str, Any]:
    if isinstance(train_dataset, Mapping):
        if not train_dataset:
            raise DatasetValidationError("the dataset dict is empty; give at least one dataset")
        bad = [k for k in train_dataset if not isinstance(k, str)]
        if bad:
            raise DatasetValidationError(f"dataset names must be strings, got {bad!r}")
        return dict(train_dataset)
    return {name: train_dataset}


def _is_ray_dataset(obj: Any) -> bool:
    if "ray.data" not in sys.modules:
        return False
    import ray.data

    return isinstance(obj, ray.data.Dataset)


def _stage_dir(staging_dir: str, name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "dataset"
    candidate, k = base, 1
    while candidate in used:
        k += 1
        candidate = f"{base}-{k}"
    used.add(candidate)
    return staging_dir.rstrip("/") + "/" + candidate


def _prepare_one(
    name: str, item: Any, staging_dir: str, select: list[str] | None, used: set[str], defer: bool = False
) -> TrainingSource:
    """One source; ``defer``: a large file input or an ``IterableDataset`` becomes a pending source over its
    first rows (``_deferred``) instead of being staged here."""
    import datasets

    if isinstance(item, datasets.Dataset):
        columns = list(item.column_names)
        inputs, label = resolve_columns(name, columns, select)
        return TrainingSource(
            name=name,
            input_columns=inputs,
            label_column=label,
            num_rows=len(item),
            dataset=item,
            schema=item.features.arrow_schema,
            all_columns=columns,
            origin="datasets.Dataset",
        )
    if isinstance(item, TrainingSource):
        inputs, label = (
            resolve_columns(name, item.all_columns, select)
            if select
            else (item.input_columns, item.label_column)
        )
        return dataclasses.replace(item, name=name, input_columns=list(inputs), label_column=label)
    files: list[str] | None = None
    fmt: str | None = None
    known_columns: list[str] | None = None
    head = None
    if isinstance(item, datasets.IterableDataset):
        known_columns = list(item.column_names) if item.column_names else None
        origin = "datasets.IterableDataset"
        if defer:
            head = head_of_iterable(name, item, background.SAMPLE_ROWS + 1)
    elif _is_ray_dataset(item):
        origin = "ray.data.Dataset"
    elif is_path_spec(item):
        files = expand_paths(name, item)
        fmt = detect_format(name, files)
        if fmt == "parquet":
            return _parquet_in_place(name, files, select)
        origin = describe_files(fmt, files)
        if defer and total_bytes(files) >= background.OVERLAP_MIN_BYTES:
            head = head_of_files(name, files, fmt, background.SAMPLE_ROWS + 1)
    else:
        raise DatasetValidationError(
            f"dataset {name!r} has an unsupported type {type(item).__module__}.{type(item).__name__}; give a "
            "datasets.Dataset / IterableDataset / DatasetDict, a ray.data.Dataset, a file path or glob "
            "(CSV, TSV, JSON, JSONL, Parquet, Arrow), or a dict of them",
            dataset=name,
        )
    out_dir = _stage_dir(staging_dir, name, used)
    if head is not None and head.num_rows > background.SAMPLE_ROWS:  # large: staged while the workers start
        plan = StagePlan(
            name,
            out_dir,
            origin,
            select=select,
            files=files,
            fmt=fmt,
            iterable=item if files is None else None,
            known_columns=known_columns,
        )
        return _deferred(name, head.slice(0, background.SAMPLE_ROWS), plan)
    if files is not None:
        assert fmt is not None
        ray_dataset, known_columns = read_files(name, files, fmt)
    else:
        ray_dataset = read_iterable(item) if isinstance(item, datasets.IterableDataset) else item
    staged = stage(name, ray_dataset, out_dir, files=files, fmt=fmt)
    return staged_source(name, staged, select, origin, known_columns, ray_dataset)


def staged_source(
    name: str,
    staged: list[str],
    select: list[str] | None,
    origin: str,
    known_columns: list[str] | None,
    ray_dataset: Any,
) -> TrainingSource:
    """The source over ``staged`` Parquet files (written by ``stage``), columns resolved with ``select``;
    for no file (an empty dataset) the columns come from ``known_columns`` or ``ray_dataset``'s schema."""
    groups_per_file = None
    if staged:
        schema = parquet_schema(staged)
        shard_rows, groups_per_file = parquet_layout(staged)
        num_rows = sum(shard_rows)
        columns = list(schema.names)
        inputs, label = resolve_columns(name, columns, select)
    else:  # nothing written: an empty dataset (validate_sources reports it)
        schema, num_rows, shard_rows = None, 0, None
        columns = known_columns if known_columns is not None else _ray_columns(ray_dataset)
        if columns:
            inputs, label = resolve_columns(name, columns, select)
        else:
            inputs, label = split_label_column(select or [])
    return TrainingSource(
        name=name,
        input_columns=inputs,
        label_column=label,
        num_rows=num_rows,
        staged_files=staged,
        schema=schema,
        all_columns=columns,
        origin=origin,
        shard_rows=shard_rows,
        groups_per_file=groups_per_file,
    )


def _deferred(name: str, head: pa.Table, plan: StagePlan) -> TrainingSource:
    """A source whose full pass ``plan`` runs later (``raystx.data.background``), checked meanwhile on
    ``head``, its first rows, held as a ``datasets.Dataset``."""
    import datasets

    columns = list(head.column_names)
    inputs, label = resolve_columns(name, columns, plan.select)
    return TrainingSource(
        name=name,
        input_columns=inputs,
        label_column=label,
        num_rows=head.num_rows,
        dataset=datasets.Dataset(datasets.table.InMemoryTable(head)),
        schema=head.schema,
        all_columns=columns,
        origin=plan.origin,
        pending=PendingStaging(plan),
    )


def _parquet_in_place(name: str, files: list[str], select: list[str] | None) -> TrainingSource:
    """A source over the user's own Parquet files (local or remote), read where they are: only their footers
    are read here (schema, rows per row group); the workers read the row groups they need."""
    schema, shard_rows, groups_per_file = parquet_in_place(name, files)
    columns = list(schema.names)
    inputs, label = resolve_columns(name, columns, select)
    origin = describe_files("parquet", files)
    return TrainingSource(
        name=name,
        input_columns=inputs,
        label_column=label,
        num_rows=sum(shard_rows),
        staged_files=list(files),
        schema=schema,
        all_columns=columns,
        origin=origin + " (read in place)",
        shard_rows=shard_rows,
        groups_per_file=groups_per_file,
    )


def _ray_columns(ray_dataset: Any) -> list[str]:
    try:
        schema = ray_dataset.schema()
    except Exception:  # noqa: BLE001 - only used to name columns of an empty dataset
        return []
    return list(schema.names) if schema is not None else []


def prepare_sources(
    train_dataset: Any,
    *,
    staging_dir: str,
    select_columns: SelectColumns = None,
    name: str = "train",
    defer: bool = False,
) -> dict[str, TrainingSource]:
    """Turn the user's dataset(s) into ``{name: TrainingSource}`` on the driver.

    ``train_dataset``: one dataset (named ``name``) or a dict / ``DatasetDict`` of them, of the kinds listed
    in the module docstring. ``staging_dir``: where Ray tasks write the Parquet copy of non-``Dataset``
    inputs (``staging_dir/<name>/``, emptied first); nothing else is written. ``select_columns``: a list of
    columns to keep, in order, for every dataset, or ``{name: [columns]}`` per dataset. ``defer``: large file
    inputs (``OVERLAP_MIN_BYTES``) and ``IterableDataset`` inputs of more than ``SAMPLE_ROWS`` rows come back
    pending, over their first rows, for ``raystx.data.background.start_staging`` (see the module docstring).
    """
    named = _named_datasets(train_dataset, name)
    if isinstance(select_columns, Mapping):
        unknown = sorted(set(select_columns) - set(named))
        if unknown:
            raise DatasetValidationError(
                f"select_columns names dataset(s) {unknown}, which are not among the datasets {list(named)}",
                dataset=unknown[0],
            )
    root = staging_dir if "://" in staging_dir else os.path.abspath(staging_dir)
    used: set[str] = set()
    return {
        n: _prepare_one(n, item, root, columns_for(select_columns, n), used, defer)
        for n, item in named.items()
    }


# ------------------------------------------------------------------------------------------ validating


def _loss_name(loss: Any) -> str:
    return loss.__name__ if isinstance(loss, type) else type(loss).__name__


def _losses_by_dataset(sources: Mapping[str, TrainingSource], losses: Any) -> dict[str, Any]:
    if not isinstance(losses, Mapping):
        return dict.fromkeys(sources, losses)
    messages = pairing_problems(losses, sources, label=lambda n: dataset_label(n, sources[n].columns))
    if messages:
        unknown, missing = unpaired(losses, sources)
        raise DatasetValidationError("\n".join(messages), dataset=(unknown or missing)[0], problems=messages)
    return dict(losses)


def sample_indices(num_rows: int, sample_rows: int, seed: int = 0) -> list[int]:
    """Rows to check: all when ``num_rows <= sample_rows``, else the first 3/4 of ``sample_rows`` rows plus
    a seeded random pick from the rest (sorted)."""
    if num_rows <= sample_rows:
        return list(range(num_rows))
    head = max(1, (sample_rows * 3) // 4)
    rest = random.Random(seed).sample(range(head, num_rows), max(0, sample_rows - head))
    return list(range(head)) + sorted(rest)


def _resolved_kind(source: TrainingSource, kind: str) -> str:
    """``float_or_vector`` resolved by the label column's Arrow type; other kinds unchanged."""
    if kind != "float_or_vector":
        return kind
    from raystx.data.columns import arrow_kind

    return (
        "vector"
        if arrow_kind(source.column_type(source.label_column or "")) in ("vector", "list")
        else "float"
    )


def _label_column_problems(
    source: TrainingSource,
    contract: ColumnContract,
    indices: list[int],
    rows: Mapping[str, list],
    scanned: Mapping[str, Any],
    loss_name: str,
) -> list[str]:
    """Label problems for ``contract``: the schema type, then every row (the scan), then the sampled values."""
    column = source.label_column
    assert column is not None
    column_type = source.column_type(column)
    found = label_problems(column, column_type, [], contract.label, loss_name)
    if found:
        return found
    whole = label_scan_problem(scanned.get(column), _resolved_kind(source, contract.label), loss_name)
    if whole:
        return [whole]
    return label_problems(column, column_type, list(zip(indices, rows[column])), contract.label, loss_name)


def _warn_label_range(source: TrainingSource, stats: Any, loss: Any, loss_name: str) -> None:
    message = label_range_warning(stats, loss, loss_name)
    if message:
        warnings.warn(
            DatasetWarning(f"{dataset_label(source.name, source.columns)}: {message}"), stacklevel=4
        )


def _source_problems(
    source: TrainingSource,
    loss: Any,
    global_batch_size: int,
    drop_last: bool,
    sample_rows: int,
    seed: int,
    scanned: Mapping[str, ColumnStats] | None = None,
) -> tuple[list[str], ColumnContract | None]:
    """Problems of one source with its loss (sentences without the dataset/loss prefix) and the contract it
    matched (None when it matches none). ``scanned``: the every-row scan if made already (else made here).
    A pending source (first rows only) is not checked for its size."""
    loss_name = _loss_name(loss)
    contract_list = contracts_of(loss)
    problems: list[str] = []
    if source.num_rows == 0:
        problems.append("it is empty (0 rows)")
    elif drop_last and source.num_rows < global_batch_size and source.pending is None:
        problems.append(
            f"it has {source.num_rows} rows, fewer than one global batch of {global_batch_size} (per-device batch "
            "size x number of workers); with dataloader_drop_last=True it would give no training step: lower the "
            "batch size, add rows, or set dataloader_drop_last=False (the partial batch is then trained)"
        )
    rows: dict[str, list] = {}
    indices: list[int] = []
    if source.num_rows > 0:
        indices = sample_indices(source.num_rows, sample_rows, seed)
        rows = source.peek(indices)
    if scanned is None:
        scanned = scan_source(source)  # every row, Arrow compute: nulls, NaN/inf, ranges
    for column in source.input_columns:
        # schema type first, then every row (first bad row, counts), then the Python values of the sample
        found, _ = text_problems(column, source.column_type(column), [])
        whole = None if found else text_scan_problem(scanned.get(column), source.name)
        sampled, empty = text_problems(
            column, source.column_type(column), list(zip(indices, rows.get(column, [])))
        )
        problems.extend(found or ([whole] if whole else sampled))
        stats = scanned.get(column)
        if stats is not None and stats.empty_strings:
            count = f"{stats.empty_strings} of {stats.rows} rows, e.g. rows {stats.empty_rows}"
        else:
            count = f"e.g. rows {empty[:5]}" if empty else ""
        if count:
            warnings.warn(
                DatasetWarning(
                    f"{dataset_label(source.name, source.columns)}: the input column {column!r} holds empty "
                    f"strings ({count}); they are kept and embedded as empty texts"
                ),
                stacklevel=3,
            )
    ids = id_like_columns(source.input_columns)
    if ids:
        warnings.warn(
            DatasetWarning(
                f"{dataset_label(source.name, source.columns)}: the column(s) {ids} look like IDs but will be "
                f"trained on as text; resolve them to texts first, or "
                f"{drop_hint(source.name, [c for c in source.columns if c not in ids])}"
            ),
            stacklevel=3,
        )
    best: tuple[list[str], ColumnContract] | None = None
    for contract in contract_list:
        found = structural_problems(
            source.name, source.input_columns, source.label_column, contract, loss_name
        )
        if not found and source.label_column and contract.label != "none" and indices:
            found = _label_column_problems(source, contract, indices, rows, scanned, loss_name)
        if not found:
            if not problems and contract.label == "float" and source.label_column:
                _warn_label_range(source, scanned.get(source.label_column), loss, loss_name)
            return problems, (contract if not problems else None)
        if best is None or len(found) < len(best[0]):
            best = (found, contract)
    assert best is not None
    return problems + best[0], None


def validate_sources(
    sources: Mapping[str, TrainingSource] | TrainingSource,
    losses: Mapping[str, Any] | Any,
    *,
    global_batch_size: int,
    drop_last: bool = True,
    sample_rows: int = 256,
    seed: int = 0,
    scans: Mapping[str, Mapping[str, ColumnStats]] | None = None,
) -> dict[str, ColumnContract]:
    """Check every source against its loss on the driver; raise one ``DatasetValidationError`` listing
    all problems (each line names the dataset, its columns, the loss and the expected format).

    ``losses``: one loss (instance or class with a ``contract``) for all datasets, or ``{name: loss}``
    covering exactly the datasets. ``global_batch_size``: rows per optimizer step over all workers; with
    ``drop_last`` a dataset needs at least that many rows. ``sample_rows``: how many rows per dataset are
    read to check values. ``scans``: ``{name: {column: ColumnStats}}`` of an every-row scan made already (a
    background staging pass's); other sources are scanned here. Empty strings and ID-like column names only
    warn (``DatasetWarning``).
    Returns ``{name: the ColumnContract the dataset matched}``.
    """
    if isinstance(sources, TrainingSource):
        sources = {sources.name: sources}
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError(f"global_batch_size must be a positive integer, got {global_batch_size!r}")
    by_dataset = _losses_by_dataset(sources, losses)
    messages: list[str] = []
    first: dict[str, Any] = {}
    matched: dict[str, ColumnContract] = {}
    for name, source in sources.items():
        loss = by_dataset[name]
        loss_name = _loss_name(loss)
        if getattr(loss, "contract", None) is None:
            raise DatasetValidationError(
                f"the loss {loss_name} for dataset {name!r} declares no column contract",
                dataset=name,
                loss=loss_name,
            )
        scanned = (scans or {}).get(name)
        problems, contract = _source_problems(
            source, loss, global_batch_size, drop_last, sample_rows, seed, scanned
        )
        if contract is not None:
            matched[name] = contract
            continue
        expected = " or ".join(c.describe() for c in contracts_of(loss))
        where = dataset_label(name, source.columns)
        for problem in problems:
            messages.append(f"{where} does not fit {loss_name}: {problem}. {loss_name} expects {expected}.")
        first = first or {"dataset": name, "columns": source.columns, "loss": loss_name, "expected": expected}
    if messages:
        raise DatasetValidationError("\n".join(messages), problems=messages, **first)
    return matched
