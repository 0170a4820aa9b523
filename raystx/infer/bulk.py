"""Bulk encoding to Parquet on a Ray Data actor pool: files or a ``ray.data.Dataset`` in, embeddings out.

``encode_to_parquet(source, model, output_path, text_column=..., ...)`` reads the texts with Ray Data
(CSV/TSV, JSON lines, Parquet, Arrow, or ``.txt`` with one text per line; or takes a ``ray.data.Dataset``),
numbers the rows (``id``: the row's position in the input, files in sorted order), encodes them on
``num_workers`` model replicas and writes Parquet files with the columns ``id``, the ``id_column`` if one is
given (copied), and ``embedding`` (a fixed-size list of float32). Row order is kept: reading the output
directory back gives the rows in input order. Only small per-block facts pass through the driver.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from raystx.infer.pool import InferencePool

Role = Literal["plain", "query", "document"]


def _check_columns(where: str, available: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValueError(
            f"{where} has no column(s) {missing}; its columns are {list(available)}. "
            "Pass the column holding the texts as text_column (--text-column)"
        )


def check_input_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike], columns: Sequence[str]
) -> tuple[list[str], str]:
    """(files, format) of the input, checked on the driver without Ray: missing files, unknown formats and
    missing columns fail here, naming the file and the columns it has."""
    import json

    import pyarrow.parquet as pq

    from raystx.data.readers import _file_schema, detect_format, expand_paths, read_csv_header

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    txt = [os.fspath(p) for p in items if os.fspath(p).endswith(".txt")]
    if txt:
        if len(txt) != len(items):
            raise ValueError(f"input files {items} mix .txt with other formats; give one format")
        _check_columns(f"text files {txt} (one text per line: column 'text')", ["text"], columns)
        return expand_paths("encode input", txt), "txt"
    files = expand_paths("encode input", items)
    fmt = detect_format("encode input", files)
    if fmt in ("csv", "tsv"):
        available = read_csv_header("encode input", files[0], fmt)
    elif fmt == "parquet":
        available = pq.read_schema(files[0]).names
    elif fmt == "arrow":
        available = _file_schema(files[0], fmt).names
    else:  # JSON lines: the first record's keys (a JSON array is checked when read)
        with open(files[0], encoding="utf-8") as f:
            first = f.readline().strip()
        available = list(json.loads(first)) if first.startswith("{") else list(columns)
    _check_columns(f"input file {files[0]}", available, columns)
    return files, fmt


def read_input_files(files: list[str], fmt: str, columns: Sequence[str]) -> Any:
    """A lazy ``ray.data.Dataset`` of ``columns`` of ``files`` (as ``check_input_files`` returned them)."""
    import ray.data

    from raystx.data.readers import read_files

    if fmt == "txt":
        return ray.data.read_text(files, drop_empty_lines=True).select_columns(list(columns))
    ds, _ = read_files("encode input", files, fmt)
    if fmt == "json":
        _check_columns(f"input file {files[0]}", ds.schema().names, columns)
    return ds.select_columns(list(columns))


def _num_rows(table: Any) -> int:
    return table.num_rows


def _with_ids(table: Any, start: int) -> Any:
    import numpy as np
    import pyarrow as pa

    ids = pa.array(np.arange(start, start + table.num_rows, dtype=np.int64))
    return (
        table.append_column("id", ids)
        if "id" not in table.column_names
        else table.set_column(table.column_names.index("id"), "id", ids)
    )


def with_positions(ds: Any) -> tuple[Any, int]:
    """``ds`` with an ``id`` column = each row's position (in ``ds``'s order), and the row count.

    The rows are materialized in the object store (block by block, in order); the driver only sees each
    block's row count."""
    import ray
    import ray.data

    from raystx.data.readers import _ordered_ray_data

    with _ordered_ray_data():
        tables = ds.to_arrow_refs()
    count = ray.remote(num_cpus=0)(_num_rows)
    sizes = ray.get([count.remote(t) for t in tables])
    add = ray.remote(num_cpus=0)(_with_ids)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    refs = [add.remote(t, s) for t, s, n in zip(tables, starts, sizes) if n]
    if not refs:
        raise ValueError("the input has no rows to encode")
    return ray.data.from_arrow_refs(refs), sum(sizes)


def encode_to_parquet(
    source: Any,
    model: Any,
    output_path: str | os.PathLike,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    role: Role = "plain",
    prompt: str | None = None,
    prompt_name: str | None = None,
    normalize_embeddings: bool = False,
    batch_size: int = 32,
    num_workers: int = 1,
    use_gpu: bool = False,
    cpus_per_worker: int = 1,
    scaling_config: Any = None,
    rows_per_block: int = 1024,
) -> dict[str, Any]:
    """Encode ``source[text_column]`` on Ray and write ``id``(, ``id_column``), ``embedding`` as Parquet.

    ``source``: file path(s)/directory/glob or a ``ray.data.Dataset``; ``model``: a raystx
    ``SentenceTransformer`` or its path; ``role`` picks ``encode``/``encode_query``/``encode_document`` (their
    prompts), ``prompt``/``prompt_name`` override it. Returns ``{"rows", "dim", "output_path"}``.
    """
    import ray
    from ray.data import ActorPoolStrategy

    from raystx.data.readers import _ordered_ray_data
    from raystx.infer.encode import EncodeReplica
    from raystx.infer.mining import _load_model
    from raystx.ray_init import ensure_ray

    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if role not in ("plain", "query", "document"):
        raise ValueError(f"role must be 'plain', 'query' or 'document', got {role!r}")
    pool = (
        InferencePool.from_scaling_config(scaling_config, rows_per_block=rows_per_block)
        if scaling_config is not None
        else InferencePool(num_workers, use_gpu, cpus_per_worker, rows_per_block)
    )
    model = _load_model(model)
    if prompt is None and prompt_name is not None and prompt_name not in model.prompts:
        raise ValueError(
            f"prompt_name={prompt_name!r} is not one of the model's prompts {sorted(model.prompts)}"
        )
    columns = [text_column] + ([id_column] if id_column and id_column != text_column else [])
    if id_column == "id" or text_column == "id":
        raise ValueError("'id' is the output's row-position column; rename the input column")
    files = None if isinstance(source, ray.data.Dataset) else check_input_files(source, columns)
    ensure_ray()
    if files is None:
        _check_columns("the dataset", source.schema().names, columns)
        ds = source.select_columns(columns)
    else:
        ds = read_input_files(*files, columns)
    numbered, rows = with_positions(ds)
    dim = model.get_sentence_embedding_dimension()
    output = os.fspath(output_path)
    if "://" not in output:
        Path(output).mkdir(parents=True, exist_ok=True)
    with _ordered_ray_data():
        numbered.map_batches(
            EncodeReplica,
            fn_constructor_kwargs={
                "model_ref": [ray.put(model)],
                "prompts": {role: (prompt, prompt_name)},
                "batch_size": batch_size,
                "normalize": normalize_embeddings,
                "threads": pool.cpus_per_worker,
                "device": pool.device,
                "text_column": text_column,
                "default_role": role,
                "as_arrow": True,
            },
            batch_size=max(batch_size, min(pool.rows_per_block, -(-rows // (4 * pool.num_workers)))),
            batch_format="numpy",
            compute=ActorPoolStrategy(size=pool.num_workers),
            num_cpus=pool.cpus_per_worker,
            num_gpus=1 if pool.use_gpu else 0,
        ).write_parquet(output)
    return {"rows": rows, "dim": dim, "output_path": output}
