"""Turning chosen negatives into the columns of ``mine_hard_negatives``' output (pure Python, no Ray).

In: the unique queries, the corpus, each query's positive ids and scores, and the chosen ``negative_ids`` /
``negative_scores`` (n_queries, num_negatives; ``-inf`` = empty slot). Out: a ``dict`` of columns in one of
sentence-transformers' formats (rows ordered by query, then positive, then negative rank):

- ``triplet``: ``(anchor, positive, negative[, scores=[pos, neg]])``, one row per valid negative;
- ``n-tuple``: ``(anchor, positive, negative_1..negative_n[, scores])``, only queries with n valid negatives;
- ``labeled-pair``: ``(anchor, positive-column=document, label 1/0 | score)``, positives first;
- ``labeled-list``: ``(anchor, [positive, negatives...], labels [1, 0...] | scores)``, queries with any negative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor

FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")


def _valid(row_ids: list[int], row_scores: list[float]) -> list[tuple[int, float]]:
    return [(i, s) for i, s in zip(row_ids, row_scores) if not math.isinf(s)]


def build_columns(
    output_format: str,
    output_scores: bool,
    anchor_column: str,
    positive_column: str,
    queries: Sequence[str],
    corpus: Sequence[str],
    positive_ids: list[list[int]],
    positive_scores: list[list[float]],
    negative_ids: Tensor,
    negative_scores: Tensor,
) -> dict[str, list[Any]]:
    """The output columns for ``output_format`` (see the module docstring)."""
    neg_ids, neg_scores = negative_ids.tolist(), negative_scores.tolist()
    num_negatives = negative_ids.shape[1]
    if output_format == "triplet":
        cols: dict[str, list[Any]] = {anchor_column: [], positive_column: [], "negative": []}
        if output_scores:
            cols["scores"] = []
        for q, query in enumerate(queries):
            chosen = _valid(neg_ids[q], neg_scores[q])
            for pos, pos_score in zip(positive_ids[q], positive_scores[q]):
                for neg, neg_score in chosen:
                    cols[anchor_column].append(query)
                    cols[positive_column].append(corpus[pos])
                    cols["negative"].append(corpus[neg])
                    if output_scores:
                        cols["scores"].append([pos_score, neg_score])
        return cols
    if output_format == "labeled-pair":
        value = "score" if output_scores else "label"
        cols = {anchor_column: [], positive_column: [], value: []}
        for q, query in enumerate(queries):
            rows = [(pos, s, 1) for pos, s in zip(positive_ids[q], positive_scores[q])]
            rows += [(neg, s, 0) for neg, s in _valid(neg_ids[q], neg_scores[q])]
            for doc, score, label in rows:
                cols[anchor_column].append(query)
                cols[positive_column].append(corpus[doc])
                cols[value].append(score if output_scores else label)
        return cols
    if output_format == "n-tuple":
        names = [f"negative_{i}" for i in range(1, num_negatives + 1)]
        cols = {anchor_column: [], positive_column: [], **{name: [] for name in names}}
        if output_scores:
            cols["scores"] = []
        for q, query in enumerate(queries):
            chosen = _valid(neg_ids[q], neg_scores[q])
            if len(chosen) < num_negatives:
                continue
            for pos, pos_score in zip(positive_ids[q], positive_scores[q]):
                cols[anchor_column].append(query)
                cols[positive_column].append(corpus[pos])
                for name, (neg, _) in zip(names, chosen):
                    cols[name].append(corpus[neg])
                if output_scores:
                    cols["scores"].append([pos_score] + [s for _, s in chosen])
        return cols
    if output_format == "labeled-list":
        value = "scores" if output_scores else "labels"
        cols = {anchor_column: [], positive_column: [], value: []}
        for q, query in enumerate(queries):
            chosen = _valid(neg_ids[q], neg_scores[q])
            if not chosen:
                continue
            for pos, pos_score in zip(positive_ids[q], positive_scores[q]):
                cols[anchor_column].append(query)
                cols[positive_column].append([corpus[pos]] + [corpus[neg] for neg, _ in chosen])
                if output_scores:
                    cols[value].append([pos_score] + [s for _, s in chosen])
                else:
                    cols[value].append([1] + [0] * len(chosen))
        return cols
    raise ValueError(f"output_format must be one of {FORMATS}, got {output_format!r}")
