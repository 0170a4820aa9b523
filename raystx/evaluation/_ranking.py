"""Chunked top-k retrieval and the retrieval metrics (accuracy, precision, recall, MRR, nDCG, MAP @k).

Ranking order is (score descending, corpus id ascending): ties are broken by the corpus id, so results do not
depend on how the corpus is chunked. Only ``k`` candidates per query and chunk are kept (``torch.topk``), so a
large corpus never needs a full query x corpus score matrix beyond one chunk.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch
from torch import Tensor


def id_ranks(ids: Sequence[object]) -> Tensor:
    """Position of each id in ascending id order, as a (n,) long tensor (used to break score ties)."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ranks = torch.empty(len(ids), dtype=torch.long)
    ranks[torch.tensor(order, dtype=torch.long)] = torch.arange(len(ids))
    return ranks


def chunk_top_k(scores: Tensor, k: int, chunk_ranks: Tensor) -> tuple[Tensor, Tensor]:
    """Top ``k`` columns of each row of ``scores`` (q, c) in (score desc, rank asc) order-set terms.

    Returns ``(values, column_indices)`` of shape (q, min(k, c)), unsorted. Where several columns tie with the
    k-th best score, the ones with the lowest ``chunk_ranks`` are kept.
    """
    k = min(k, scores.shape[1])
    values, idx = torch.topk(scores, k, dim=1, largest=True, sorted=False)
    cutoff = values.min(dim=1, keepdim=True).values
    tied_rows = ((scores >= cutoff).sum(dim=1) > k).nonzero(as_tuple=True)[0]
    if len(tied_rows):
        sub, sub_cut = scores[tied_rows], cutoff[tied_rows]
        # key: strictly-better columns first (-1), then the tied ones by rank, all others last
        ranks = chunk_ranks.to(sub.device).expand_as(sub)
        beyond = int(chunk_ranks.max()) + 1
        key = torch.where(sub == sub_cut, ranks, torch.full_like(ranks, beyond))
        key = torch.where(sub > sub_cut, torch.full_like(ranks, -1), key)
        sub_idx = key.topk(k, dim=1, largest=False).indices
        idx[tied_rows] = sub_idx
        values[tied_rows] = sub.gather(1, sub_idx)
    return values, idx


def merge_top_k(
    values: Tensor, indices: Tensor, new_values: Tensor, new_indices: Tensor, k: int, ranks: Tensor
) -> tuple[Tensor, Tensor]:
    """Merge two candidate sets (global corpus indices) and keep the best ``k`` per row, sorted best first."""
    values = torch.cat([values, new_values], dim=1)
    indices = torch.cat([indices, new_indices], dim=1)
    by_rank = torch.argsort(ranks[indices], dim=1, stable=True)
    values, indices = values.gather(1, by_rank), indices.gather(1, by_rank)
    by_score = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, by_score), indices.gather(1, by_score)


def relevance_matrix(
    top_indices: np.ndarray,
    corpus_ids: Sequence[object],
    relevant: Sequence[Collection[object]],
    width: int,
) -> np.ndarray:
    """(q, width) 0/1 float matrix: whether the j-th ranked document of query i is relevant (0 past the end)."""
    rel = np.zeros((len(relevant), width), dtype=np.float64)
    for i, (row, docs) in enumerate(zip(top_indices.tolist(), relevant)):
        for j, doc in enumerate(row[:width]):
            if corpus_ids[doc] in docs:
                rel[i, j] = 1.0
    return rel


def retrieval_metrics(
    rel: np.ndarray,
    num_relevant: np.ndarray,
    accuracy_at_k: Sequence[int],
    precision_recall_at_k: Sequence[int],
    mrr_at_k: Sequence[int],
    ndcg_at_k: Sequence[int],
    map_at_k: Sequence[int],
) -> dict[str, dict[int, float]]:
    """Mean retrieval metrics over queries from a relevance matrix ``rel`` (q, >= max k) of ranked results.

    ``num_relevant``: (q,) number of relevant documents per query (>0). Definitions: accuracy@k = any relevant in
    the top k; precision@k = hits/k; recall@k = hits/num_relevant; MRR@k = 1/rank of the first hit within k;
    nDCG@k with binary gains and log2(rank+1) discounts, normalised by the ideal ranking of ``num_relevant``
    documents; MAP@k = sum of precision at each hit within k / min(k, num_relevant).
    """
    n_queries, width = rel.shape
    ranks = np.arange(1, width + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1)
    hits_cum = np.cumsum(rel, axis=1)
    first_hit = np.where(rel.any(axis=1), rel.argmax(axis=1), width)
    num_relevant = num_relevant.astype(np.float64)

    out: dict[str, dict[int, float]] = {
        "accuracy@k": {},
        "precision@k": {},
        "recall@k": {},
        "ndcg@k": {},
        "mrr@k": {},
        "map@k": {},
    }
    for k in accuracy_at_k:
        out["accuracy@k"][k] = float((first_hit < k).sum()) / n_queries
    for k in precision_recall_at_k:
        hits = hits_cum[:, k - 1]
        out["precision@k"][k] = np.mean(hits / k)
        out["recall@k"][k] = np.mean(hits / num_relevant)
    for k in ndcg_at_k:
        dcg = (rel[:, :k] * discounts[:k]).sum(axis=1)
        ideal_len = np.minimum(num_relevant, k).astype(np.int64)
        idcg = np.cumsum(discounts[:k])[ideal_len - 1]
        out["ndcg@k"][k] = np.mean(dcg / idcg)
    for k in mrr_at_k:
        reciprocal = np.where(first_hit < k, 1.0 / (first_hit + 1), 0.0)
        out["mrr@k"][k] = reciprocal.sum() / n_queries
    for k in map_at_k:
        precision_at_hits = (hits_cum[:, :k] / ranks[:k]) * rel[:, :k]
        out["map@k"][k] = np.mean(precision_at_hits.sum(axis=1) / np.minimum(k, num_relevant))
    return out
