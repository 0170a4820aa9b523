"""Choosing hard negatives from ranked candidates (pure tensor code, no Ray, no model).

In: per unique query a row of candidate corpus ids ranked by score (``-1`` and ``-inf`` for padding), the
query's positive ids and the query-positive scores. Out: ``(negative_ids, negative_scores)`` of shape
``(n_queries, num_negatives)``, where a score of ``-inf`` marks "no valid negative in this slot".

The rules are sentence-transformers' ``mine_hard_negatives`` rules: padding and (unless ``include_positives``)
the query's own positives are never negatives; the margins compare against the query's *lowest* positive
score; ``max_score``/``min_score`` bound the score; the surviving candidates keep their rank order, the first
``range_min`` are skipped and ``range_max`` bounds the window; ``top`` takes the first ``num_negatives``,
``random`` draws ``num_negatives`` of the valid ones with ``rng.sample`` and re-sorts them by score.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

NEG_INF = float("-inf")


@dataclass
class SelectionRules:
    """The candidate filters and the sampling of ``mine_hard_negatives`` (already validated)."""

    range_min: int
    range_max: int
    num_negatives: int
    sampling_strategy: Literal["top", "random"] = "top"
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    include_positives: bool = False
    skipped: dict[str, int] = field(default_factory=dict)


def _pad(rows: list[list[float]] | list[list[int]], fill: float, dtype: torch.dtype) -> Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), max(width, 1)), fill, dtype=dtype)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=dtype)
    return out


def _drop(scores: Tensor, mask: Tensor, rules: SelectionRules, reason: str) -> None:
    """Set the masked candidates to ``-inf`` and count the ones that were still valid."""
    count = int((mask & torch.isfinite(scores)).sum())
    if count:
        rules.skipped[reason] = rules.skipped.get(reason, 0) + count
    scores[mask] = NEG_INF


def filter_candidates(
    scores: Tensor,
    indices: Tensor,
    positive_ids: list[list[int]],
    positive_scores: list[list[float]],
    rules: SelectionRules,
) -> Tensor:
    """A copy of ``scores`` (n_queries, K) with every disallowed candidate set to ``-inf``."""
    scores = scores.clone()
    scores[indices < 0] = NEG_INF
    if not rules.include_positives:
        own = _pad(positive_ids, -2, torch.long)
        _drop(scores, (indices.unsqueeze(-1) == own.unsqueeze(1)).any(-1), rules, "positives")
    if rules.absolute_margin is not None or rules.relative_margin is not None:
        hardest = _pad(positive_scores, float("inf"), scores.dtype).min(dim=1).values.unsqueeze(1)
        if rules.absolute_margin is not None:
            _drop(scores, scores + rules.absolute_margin > hardest, rules, "absolute_margin")
        if rules.relative_margin is not None:
            threshold = hardest - hardest.abs() * rules.relative_margin
            _drop(scores, scores > threshold, rules, "relative_margin")
    if rules.max_score is not None:
        _drop(scores, scores > rules.max_score, rules, "max_score")
    if rules.min_score is not None:
        _drop(scores, scores < rules.min_score, rules, "min_score")
    return scores


def select_negatives(
    scores: Tensor,
    indices: Tensor,
    positive_ids: list[list[int]],
    positive_scores: list[list[float]],
    rules: SelectionRules,
    rng: random.Random | None = None,
) -> tuple[Tensor, Tensor]:
    """``(negative_ids, negative_scores)``, each (n_queries, num_negatives); see the module docstring.

    ``scores``/``indices`` are (n_queries, K) with rows sorted by descending score. Ties keep their order
    (a stable sort), so equal scores stay ordered as the search returned them (by corpus id).
    """
    scores = filter_candidates(scores, indices, positive_ids, positive_scores, rules)
    ranked, order = torch.sort(scores, dim=1, descending=True, stable=True)
    ranked, order = ranked[:, : rules.range_max], order[:, : rules.range_max]
    ids = torch.gather(indices, 1, order)
    ids, ranked = ids[:, rules.range_min :], ranked[:, rules.range_min :]
    n = rules.num_negatives
    if rules.sampling_strategy == "top":
        return ids[:, :n], ranked[:, :n]
    draw = rng if rng is not None else random
    valid = torch.isfinite(ranked).sum(dim=1).clamp(min=n).tolist()
    picks = torch.tensor([draw.sample(range(options), k=n) for options in valid], dtype=torch.long)
    picks = picks.reshape(len(valid), n)
    ids, ranked = torch.gather(ids, 1, picks), torch.gather(ranked, 1, picks)
    ranked, order = torch.sort(ranked, dim=1, descending=True, stable=True)
    return torch.gather(ids, 1, order), ranked
