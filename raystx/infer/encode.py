"""Bulk encoding on a Ray Data actor pool of model replicas.

``encode_texts(texts, model_ref, pool, ...)`` returns a lazy ``ray.data.Dataset`` with columns ``id`` (the
text's position in ``texts``) and ``embedding`` (float32, L2-normalised when asked). Nothing is computed until
the dataset is consumed, and the embeddings stay in the cluster: the caller streams or splits the dataset and
never has to hold the whole matrix on the driver. Rows may arrive in any order; ``id`` says which text a row is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from raystx.infer.pool import InferencePool

Role = Literal["query", "document", "plain"]


class EncodeReplica:
    """One model replica of the pool: ``{"id", "role", "text", ...}`` batches in, the same batch with
    ``embedding`` (float32, (rows, dim)) in place of the text column out.

    ``role`` (per row, or ``default_role`` for every row when the batch has no ``role`` column) picks
    ``encode_query`` / ``encode_document`` / ``encode`` so the model's own prompts (``query``,
    ``document``/``passage``/``corpus``) apply unless ``prompts[role]`` gives ``(prompt, name)``.
    ``encode_kwargs`` (e.g. ``truncate_dim``, ``task``) go to every encode call. With ``as_arrow`` the
    result is a ``pyarrow.Table`` whose ``embedding`` is a ``fixed_size_list<float>`` (what Parquet readers
    and ``datasets`` read back as a list of floats) instead of Ray's tensor column.
    """

    def __init__(
        self,
        model_ref: list[Any],
        prompts: dict[str, tuple[str | None, str | None]],
        batch_size: int,
        normalize: bool,
        threads: int,
        device: str,
        text_column: str = "text",
        default_role: Role = "plain",
        encode_kwargs: dict[str, Any] | None = None,
        as_arrow: bool = False,
    ) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)
        self.model = ray.get(model_ref[0]).to(device)
        self.model.eval()
        self.prompts = prompts
        self.text_column = text_column
        self.default_role = default_role
        self.as_arrow = as_arrow
        self.kwargs = {
            **(encode_kwargs or {}),
            "batch_size": batch_size,
            "normalize_embeddings": normalize,
            "convert_to_numpy": True,
            "show_progress_bar": False,
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        encoders = {
            "query": self.model.encode_query,
            "document": self.model.encode_document,
            "plain": self.model.encode,
        }
        texts = np.asarray(batch[self.text_column]).astype(str)
        roles = np.asarray(batch["role"]).astype(str) if "role" in batch else None
        out = np.empty((len(texts), 0), dtype=np.float32)
        for role in dict.fromkeys(roles.tolist()) if roles is not None else [self.default_role]:
            rows = np.flatnonzero(roles == role) if roles is not None else np.arange(len(texts))
            prompt, prompt_name = self.prompts.get(role, (None, None))
            emb = encoders[role](texts[rows].tolist(), prompt=prompt, prompt_name=prompt_name, **self.kwargs)
            if out.shape[1] != emb.shape[1]:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[rows] = emb
        result = {"id": np.asarray(batch["id"], dtype=np.int64)} if "id" in batch else {}
        result.update((key, value) for key, value in batch.items() if key not in (self.text_column, "id"))
        if not self.as_arrow:
            return {**result, "embedding": out}
        import pyarrow as pa

        columns = {key: pa.array(np.asarray(value)) for key, value in result.items()}
        flat = pa.array(np.ascontiguousarray(out, dtype=np.float32).reshape(-1))
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, out.shape[1])
        return pa.table(columns)


def texts_dataset(parts: Sequence[tuple[Role, Sequence[str]]], rows_per_block: int) -> Any:
    """A ``ray.data.Dataset`` of ``{"id", "role", "text"}``: each part's texts with ids 0.. within the part,
    parts in order, one block per ``rows_per_block`` texts (a block never mixes parts).

    Each block is built as a compact Arrow table and put in the object store at once, so the driver never
    holds more than one block's copy of the texts besides what it puts (a million short passages: ~40 MiB).
    """
    import pyarrow as pa
    import ray
    import ray.data

    refs = []
    for role, texts in parts:
        for start in range(0, len(texts), rows_per_block):
            chunk = [str(t) for t in texts[start : start + rows_per_block]]
            table = pa.table(
                {
                    "id": pa.array(np.arange(start, start + len(chunk), dtype=np.int64)),
                    "role": pa.array([role] * len(chunk), pa.string()),
                    "text": pa.array(chunk, pa.string()),
                }
            )
            refs.append(ray.put(table))
    return ray.data.from_arrow_refs(refs)


def encode_texts(
    parts: Sequence[tuple[Role, Sequence[str]]],
    model_ref: Any,
    pool: InferencePool,
    prompts: dict[str, tuple[str | None, str | None]] | None = None,
    batch_size: int = 32,
    normalize: bool = False,
    encode_kwargs: dict[str, Any] | None = None,
    rows_per_block: int | None = None,
) -> list[Any]:
    """Encode each ``(role, texts)`` part on one pool of ``pool.num_workers`` replicas (one actor start-up for
    all parts); returns one materialized ``ray.data.Dataset`` (``id``, ``role``, ``embedding``) per part.

    The embeddings live in the Ray object store, not on the driver. ``model_ref`` is ``ray.put(model)`` of a
    raystx ``SentenceTransformer``; ``prompts`` maps a role to ``(prompt, prompt_name)``; ``encode_kwargs``
    go to every encode call; ``rows_per_block`` (default: about 4 blocks per replica, at most
    ``pool.rows_per_block``) is how many texts a replica gets at a time.
    """
    import ray.data
    from ray.data import ActorPoolStrategy

    total = sum(len(texts) for _, texts in parts)
    if rows_per_block is None:
        rows_per_block = max(batch_size, min(pool.rows_per_block, -(-total // (4 * pool.num_workers))))
    context = ray.data.DataContext.get_current()
    preserve = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # parts come back in order, so they can be cut apart
    try:
        encoded = (
            texts_dataset(parts, rows_per_block)
            .map_batches(
                EncodeReplica,
                fn_constructor_kwargs={
                    "model_ref": [model_ref],
                    "prompts": prompts or {},
                    "batch_size": batch_size,
                    "normalize": normalize,
                    "threads": pool.cpus_per_worker,
                    "device": pool.device,
                    "encode_kwargs": encode_kwargs,
                },
                batch_size=None,
                batch_format="numpy",
                compute=ActorPoolStrategy(size=pool.num_workers),
                num_cpus=pool.cpus_per_worker,
                num_gpus=1 if pool.use_gpu else 0,
            )
            .materialize()
        )
    finally:
        context.execution_options.preserve_order = preserve
    bounds = np.cumsum([len(texts) for _, texts in parts])[:-1].tolist()
    return encoded.split_at_indices(bounds) if bounds else [encoded]


def gather_embeddings(encoded: Any, n: int) -> np.ndarray:
    """The (n, dim) float32 matrix of an encoded dataset (``id`` 0..n-1, ``embedding``), rows put in id order
    whatever order the blocks arrive in. This is the one place the embeddings come to the driver."""
    out: np.ndarray | None = None
    seen = 0
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        emb = np.asarray(batch["embedding"], dtype=np.float32)
        if out is None:
            out = np.empty((n, emb.shape[1]), dtype=np.float32)
        out[np.asarray(batch["id"], dtype=np.int64)] = emb
        seen += len(emb)
    if seen != n:
        raise RuntimeError(f"the encode pool returned {seen} embeddings for {n} texts")
    return out if out is not None else np.empty((0, 0), dtype=np.float32)
