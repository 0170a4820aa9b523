"""Exact (or faiss) top-k search over a corpus whose embeddings are sharded across Ray actors.

Each model replica (``raystx.infer.replicas``) keeps the corpus rows it encoded as a ``CorpusShard``;
``ReplicaSearch.search(query_block, k, ...)`` sends one block of query embeddings to every shard, each returns
its local top ``k`` (blocked matmul, so at most ``query rows x chunk rows`` scores exist at a time), and the
driver merges them (``merge_parts``) into the global top ``k``. Only ``(query rows, k)`` results ever reach the
driver. Ties are ordered by corpus id (lower first), whatever the number of shards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

SCORES_PER_CHUNK = 1 << 24  # query rows x corpus rows scored at once inside a shard (64 MiB of float32)


def merge_topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best (score desc, then id asc) of ``scores``/``ids`` (n, m); ``-inf``/``-1`` padded."""
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    top_scores, top_ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    if top_ids.shape[1] < k:
        pad = k - top_ids.shape[1]
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        top_ids = np.pad(top_ids, ((0, 0), (0, pad)), constant_values=-1)
    return top_scores, top_ids


class CorpusShard:
    """Holds one shard of corpus embeddings (sorted by corpus id) and answers top-k and pair-score queries."""

    def __init__(self, similarity: str, threads: int, use_faiss: bool) -> None:
        torch.set_num_threads(threads)
        self.similarity = similarity
        self.use_faiss = use_faiss
        self.ids = np.empty(0, dtype=np.int64)
        self.embeddings = torch.empty(0)
        self.index: Any = None

    def load(self, source: Any) -> int:
        """Read this shard's rows from a Ray dataset or iterator (``id``, ``embedding``); returns the row count."""
        ids, blocks = [], []
        for batch in source.iter_batches(batch_size=4096, batch_format="numpy"):
            ids.append(np.asarray(batch["id"], dtype=np.int64))
            blocks.append(np.asarray(batch["embedding"], dtype=np.float32))
        if not ids:
            return 0
        return self.load_arrays(np.concatenate(ids), np.concatenate(blocks))

    def load_arrays(self, ids: np.ndarray, embeddings: np.ndarray) -> int:
        """Hold ``embeddings`` (n, dim) of corpus ``ids`` (n,); returns n."""
        order = np.argsort(ids, kind="stable")
        self.ids = np.asarray(ids, dtype=np.int64)[order]
        self.embeddings = torch.from_numpy(np.ascontiguousarray(embeddings[order], dtype=np.float32))
        if self.use_faiss:
            import faiss

            self.index = faiss.IndexFlatIP(self.embeddings.shape[1])
            self.index.add(self.embeddings.numpy())
        return len(self.ids)

    def _topk_exact(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        from raystx.util import similarity_fn

        sim = similarity_fn(self.similarity)
        chunk = max(1, SCORES_PER_CHUNK // max(1, len(queries)))
        best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        best_ids = np.full((len(queries), 0), -1, dtype=np.int64)
        for start in range(0, len(self.ids), chunk):
            scores = sim(queries, self.embeddings[start : start + chunk])
            top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
            local = top.indices.numpy() + start
            best_scores, best_ids = merge_topk(
                np.concatenate([best_scores, top.values.numpy()], 1),
                np.concatenate([best_ids, self.ids[local]], 1),
                min(k, start + scores.shape[1]),
            )
        return best_scores, best_ids

    def search(
        self, queries: np.ndarray, k: int, pair_rows: np.ndarray, pair_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Top ``k`` of this shard for each query row, and the scores of the (query row, corpus id) pairs whose
        corpus id lives here: ``(scores, ids, pair_positions, pair_scores)``."""
        from raystx.util import similarity_fn

        q = torch.from_numpy(np.array(queries, dtype=np.float32))
        if len(self.ids) == 0:
            empty = np.empty((len(q), 0))
            return (
                empty.astype(np.float32),
                empty.astype(np.int64),
                np.empty(0, np.int64),
                np.empty(0, np.float32),
            )
        if self.index is not None:
            scores, local = self.index.search(q.numpy(), min(k, len(self.ids)))
            ids = np.where(local >= 0, self.ids[np.clip(local, 0, None)], -1)
            scores = np.where(local >= 0, scores, -np.inf).astype(np.float32)
        else:
            scores, ids = self._topk_exact(q, k)
        where = np.searchsorted(self.ids, pair_ids)
        here = np.flatnonzero(
            (where < len(self.ids)) & (self.ids[np.clip(where, 0, len(self.ids) - 1)] == pair_ids)
        )
        pair_scores = np.empty(0, np.float32)
        if len(here):
            pair_sim = similarity_fn(self.similarity, pairwise=True)
            pair_scores = (
                pair_sim(q[pair_rows[here]], self.embeddings[where[here]]).numpy().astype(np.float32)
            )
        return scores, ids, here, pair_scores


def merge_parts(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], k: int, n_pairs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine the shards' ``search`` answers: global top ``k`` (scores, ids) and every pair's score."""
    scores, ids = merge_topk(
        np.concatenate([p[0] for p in parts], 1), np.concatenate([p[1] for p in parts], 1), k
    )
    pair_scores = np.full(n_pairs, np.nan, dtype=np.float32)
    for _, _, here, values in parts:
        pair_scores[here] = values
    return scores, ids, pair_scores


class LocalSearch:
    """The sharded search run in this process (``num_workers=0``): same shard code, no Ray."""

    def __init__(self, ids: np.ndarray, embeddings: np.ndarray, similarity: str, use_faiss: bool) -> None:
        self.shard = CorpusShard(similarity, torch.get_num_threads(), use_faiss)
        self.shard.load_arrays(ids, embeddings)

    def search(
        self, queries: np.ndarray, k: int, pair_rows: np.ndarray, pair_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return merge_parts([self.shard.search(queries, k, pair_rows, pair_ids)], k, len(pair_ids))

    def close(self) -> None:
        pass
