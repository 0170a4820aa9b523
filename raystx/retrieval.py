"""Search over embeddings: ``semantic_search``, ``paraphrase_mining`` and ``community_detection``.

Names, arguments and return formats follow ``sentence_transformers.util``: ``semantic_search`` returns, per query,
a list of ``{"corpus_id": int, "score": float}`` sorted by decreasing score; ``paraphrase_mining`` returns
``[score, i, j]`` triplets (``i < j``) sorted by decreasing score; ``community_detection`` returns lists of
indices, largest community first, each starting with its central point. Work is chunked so that at most
``query_chunk_size x corpus_chunk_size`` scores are held at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from raystx.util import _as_2d, cos_sim, normalize_embeddings


def _matrix(x: Any) -> Tensor:
    return _as_2d(x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x)))


def _chunked_top_k(
    queries: Tensor,
    corpus: Tensor,
    k: int,
    corpus_chunk_size: int,
    score_function: Callable[[Tensor, Tensor], Tensor],
) -> tuple[Tensor, Tensor]:
    """(values, corpus indices) of the ``k`` best corpus rows per query row, merged over corpus chunks."""
    best_values: Tensor | None = None
    best_index: Tensor | None = None
    for start in range(0, len(corpus), corpus_chunk_size):
        scores = score_function(queries, corpus[start : start + corpus_chunk_size]).detach()
        values, index = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        index = index + start
        if best_values is not None:
            values = torch.cat([best_values, values], dim=1)
            index = torch.cat([best_index, index], dim=1)
            values, keep = torch.topk(values, min(k, values.shape[1]), dim=1)
            index = torch.gather(index, 1, keep)
        best_values, best_index = values, index
    assert best_values is not None and best_index is not None
    return best_values, best_index


def semantic_search(
    query_embeddings: Tensor,
    corpus_embeddings: Tensor,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
    top_k: int = 10,
    score_function: Callable[[Tensor, Tensor], Tensor] = cos_sim,
) -> list[list[dict[str, int | float]]]:
    """For each query row, the ``top_k`` corpus rows by ``score_function``: ``[{"corpus_id", "score"}, ...]``."""
    queries, corpus = _matrix(query_embeddings), _matrix(corpus_embeddings)
    queries = queries.to(corpus.device)
    results: list[list[dict[str, int | float]]] = []
    if len(corpus) == 0:
        return [[] for _ in range(len(queries))]
    for start in range(0, len(queries), query_chunk_size):
        values, index = _chunked_top_k(
            queries[start : start + query_chunk_size], corpus, top_k, corpus_chunk_size, score_function
        )
        for row_values, row_index in zip(values.cpu().tolist(), index.cpu().tolist()):
            results.append([{"corpus_id": int(i), "score": float(v)} for v, i in zip(row_values, row_index)])
    return results


def information_retrieval(*args: Any, **kwargs: Any) -> list[list[dict[str, int | float]]]:
    """Old name of ``semantic_search`` (kept by sentence-transformers for compatibility)."""
    return semantic_search(*args, **kwargs)


def paraphrase_mining_embeddings(
    embeddings: Tensor,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: Callable[[Tensor, Tensor], Tensor] = cos_sim,
) -> list[list[float | int]]:
    """The ``max_pairs`` best-scoring pairs ``[score, i, j]`` (i < j) among each row's ``top_k`` neighbours.

    ``score_function`` is assumed symmetric: a pair found from both ends is kept once.
    """
    matrix = _matrix(embeddings)
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(matrix), query_chunk_size):
        values, index = _chunked_top_k(
            matrix[start : start + query_chunk_size], matrix, top_k + 1, corpus_chunk_size, score_function
        )
        for offset, (row_values, row_index) in enumerate(zip(values.cpu().tolist(), index.cpu().tolist())):
            i = start + offset
            neighbours = [(j, v) for j, v in zip(row_index, row_values) if j != i][:top_k]
            for j, score in neighbours:
                pairs.setdefault((min(i, j), max(i, j)), float(score))
    ranked = sorted(pairs.items(), key=lambda item: item[1], reverse=True)[:max_pairs]
    return [[score, i, j] for (i, j), score in ranked]


def paraphrase_mining(
    model: Any,
    sentences: list[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: Callable[[Tensor, Tensor], Tensor] = cos_sim,
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[float | int]]:
    """Encode ``sentences`` with ``model`` and return ``paraphrase_mining_embeddings`` of the embeddings."""
    embeddings = model.encode(
        sentences,
        show_progress_bar=show_progress_bar,
        batch_size=batch_size,
        convert_to_tensor=True,
        truncate_dim=truncate_dim,
        prompt_name=prompt_name,
        prompt=prompt,
    )
    return paraphrase_mining_embeddings(
        embeddings,
        query_chunk_size=query_chunk_size,
        corpus_chunk_size=corpus_chunk_size,
        max_pairs=max_pairs,
        top_k=top_k,
        score_function=score_function,
    )


def community_detection(
    embeddings: Tensor | np.ndarray,
    threshold: float = 0.75,
    min_community_size: int = 10,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> list[list[int]]:
    """Groups of rows whose cosine similarity to a central row is at least ``threshold``.

    Every row with at least ``min_community_size`` rows (itself included) above the threshold is a candidate
    centre; candidates are taken largest first, each keeping only rows no earlier community claimed, and kept if
    at least ``min_community_size`` rows remain. Each community lists its centre first, then its members by
    decreasing similarity.
    """
    if len(embeddings) == 0:
        return []
    matrix = normalize_embeddings(_matrix(embeddings).float())
    if len(matrix) < min_community_size:
        return []
    candidates: list[tuple[int, list[int]]] = []
    for start in range(0, len(matrix), batch_size):
        scores = matrix[start : start + batch_size] @ matrix.T
        for offset, row in enumerate(scores):
            above = (row >= threshold).nonzero().squeeze(1)
            if len(above) < min_community_size:
                continue
            order = torch.argsort(row[above], descending=True, stable=True)
            candidates.append((start + offset, above[order].tolist()))
    candidates.sort(key=lambda item: len(item[1]), reverse=True)
    used = np.zeros(len(matrix), dtype=bool)
    communities: list[list[int]] = []
    for centre, members in candidates:
        if used[centre]:
            continue
        free = [m for m in members if not used[m]]
        if len(free) >= min_community_size:
            community = [centre] + [m for m in free if m != centre]
            communities.append(community)
            used[community] = True
    return sorted(communities, key=len, reverse=True)
