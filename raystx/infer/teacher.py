"""Teacher labels for distillation losses, computed on a Ray Data actor pool of teacher replicas.

Each replica encodes its rows' texts with the teacher and returns only the label, so the driver receives one
label per row, never the texts' embeddings of the other columns:

- ``teacher_embeddings(dataset, teacher, column)``: the teacher's embedding of ``column`` (``MSELoss``).
- ``teacher_margins(dataset, teacher, query, positive, negatives)``: ``score(q, pos) - score(q, neg)``
  (``MarginMSELoss``; a float for one negative column, a list for several).
- ``teacher_scores(dataset, teacher, query, documents)``: ``[score(q, d) for d in documents]``
  (``DistillKLDivLoss``).

``score`` is the teacher's ``similarity_pairwise`` on plain ``encode`` outputs: the recipe of the
sentence-transformers loss docs. Each returns the ``datasets.Dataset`` with the label column added
(``label_column``, default ``label``) and writes it as Parquet to ``output_path`` when given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from raystx.infer.pool import InferencePool

Kind = Literal["embedding", "margin", "scores"]


class LabelReplica:
    """One teacher replica: ``{"id", query, *documents}`` batches in, ``{"id", "label"}`` out (``label``
    2-D: (rows, dim) embeddings, (rows, documents) scores or (rows, negatives) margins)."""

    def __init__(
        self,
        model_ref: list[Any],
        kind: Kind,
        query_column: str,
        document_columns: list[str],
        batch_size: int,
        threads: int,
        device: str,
    ) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)
        self.model = ray.get(model_ref[0]).to(device)
        self.model.eval()
        self.kind = kind
        self.query_column = query_column
        self.document_columns = document_columns
        self.batch_size = batch_size

    def _encode(self, texts: np.ndarray) -> Any:
        return self.model.encode(
            np.asarray(texts).astype(str).tolist(),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            show_progress_bar=False,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        queries = self._encode(batch[self.query_column])
        if self.kind == "embedding":
            label = queries.float().cpu().numpy()
        else:
            scores = [
                self.model.similarity_pairwise(queries, self._encode(batch[c])).float().cpu()
                for c in self.document_columns
            ]
            if self.kind == "scores":
                label = torch.stack(scores, dim=1).numpy()
            else:
                label = torch.stack([scores[0] - s for s in scores[1:]], dim=1).numpy()
        return {"id": np.asarray(batch["id"], dtype=np.int64), "label": label.astype(np.float32)}


def _blocks(table: Any, rows_per_block: int) -> list[Any]:
    """``table`` cut into Arrow tables of ``rows_per_block`` rows, each with an ``id`` column (row position)."""
    import pyarrow as pa

    blocks = []
    for start in range(0, table.num_rows, rows_per_block):
        part = table.slice(start, rows_per_block)
        ids = pa.array(np.arange(start, start + part.num_rows, dtype=np.int64))
        blocks.append(part.append_column("id", ids))
    return blocks


def teacher_labels(
    dataset: Any,
    teacher: Any,
    kind: Kind,
    query_column: str,
    document_columns: Sequence[str] = (),
    *,
    label_column: str = "label",
    batch_size: int = 32,
    num_workers: int = 1,
    use_gpu: bool = False,
    cpus_per_worker: int = 1,
    scaling_config: Any = None,
    rows_per_block: int = 1024,
    output_path: str | os.PathLike | None = None,
) -> Any:
    """``dataset`` (a ``datasets.Dataset``) with ``label_column`` = the teacher's label of each row (see the
    module doc for ``kind``), computed by ``num_workers`` teacher replicas on Ray, which get at most
    ``rows_per_block`` rows at a time (fewer for a small dataset: about 4 blocks per replica)."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    from raystx.infer.encode import gather_embeddings
    from raystx.infer.mining import _load_model
    from raystx.ray_init import ensure_ray

    columns = [query_column, *document_columns]
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"the dataset has no column(s) {missing} for the teacher labels; its columns are "
            f"{dataset.column_names}"
        )
    if kind == "margin" and len(document_columns) < 2:
        raise ValueError(
            f"teacher margins need a positive and at least one negative column, got {list(document_columns)}"
        )
    if kind == "scores" and not document_columns:
        raise ValueError("teacher scores need at least one document column")
    if label_column in dataset.column_names:
        raise ValueError(
            f"the dataset already has a column {label_column!r}; remove it or pass another label_column"
        )
    if len(dataset) == 0:
        raise ValueError("the dataset is empty: there is nothing to label")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    pool = (
        InferencePool.from_scaling_config(scaling_config, rows_per_block=rows_per_block)
        if scaling_config is not None
        else InferencePool(num_workers, use_gpu, cpus_per_worker, rows_per_block)
    )
    teacher = _load_model(teacher)
    ensure_ray()
    table = dataset.select_columns(columns).with_format("arrow")[:]  # respects an indices mapping
    per_block = max(batch_size, min(pool.rows_per_block, -(-len(table) // (4 * pool.num_workers))))
    labelled = ray.data.from_arrow(_blocks(table, per_block)).map_batches(
        LabelReplica,
        fn_constructor_kwargs={
            "model_ref": [ray.put(teacher)],
            "kind": kind,
            "query_column": query_column,
            "document_columns": list(document_columns),
            "batch_size": batch_size,
            "threads": pool.cpus_per_worker,
            "device": pool.device,
        },
        batch_size=None,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=pool.num_workers),
        num_cpus=pool.cpus_per_worker,
        num_gpus=1 if pool.use_gpu else 0,
    )
    labels = gather_embeddings(labelled.rename_columns({"label": "embedding"}), len(dataset))
    if kind == "margin" and len(document_columns) == 2:
        labels = labels[:, 0]  # one negative column: one float per row, as in the loss docs
    result = dataset.add_column(label_column, labels.tolist())
    if output_path is not None:
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        result.to_parquet(str(output_path))
    return result


def teacher_embeddings(dataset: Any, teacher: Any, column: str, **kwargs: Any) -> Any:
    """``dataset`` + ``label`` = the teacher's embedding of ``column`` (for ``MSELoss``)."""
    return teacher_labels(dataset, teacher, "embedding", column, **kwargs)


def teacher_margins(
    dataset: Any, teacher: Any, query_column: str, positive_column: str, negative_columns: str | Sequence[str],
    **kwargs: Any,
) -> Any:  # fmt: skip
    """``dataset`` + ``label`` = ``score(q, pos) - score(q, neg)`` per negative column (``MarginMSELoss``)."""
    negatives = [negative_columns] if isinstance(negative_columns, str) else list(negative_columns)
    return teacher_labels(dataset, teacher, "margin", query_column, [positive_column, *negatives], **kwargs)


def teacher_scores(
    dataset: Any, teacher: Any, query_column: str, document_columns: Sequence[str], **kwargs: Any
) -> Any:
    """``dataset`` + ``label`` = ``[score(q, d) for d in document_columns]`` (``DistillKLDivLoss``)."""
    return teacher_labels(dataset, teacher, "scores", query_column, list(document_columns), **kwargs)
