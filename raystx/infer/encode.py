"""The Ray Data side of bulk encoding: ``EncodeReplica``, the ``map_batches`` callable that ``raystx encode``
(``raystx.infer.bulk``) runs over files on an actor pool, and ``gather_embeddings``, which puts an encoded
dataset's rows back in id order on the driver. (``encode(pool=...)`` and mining use the long-lived replicas of
``raystx.infer.replicas`` instead: a Ray Data pool starts its actors on every call.)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

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
