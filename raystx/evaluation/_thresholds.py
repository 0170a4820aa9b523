"""Best-threshold search for binary classification from similarity scores (vectorized with numpy).

Pairs are ranked from most to least similar; a threshold is only placed between two different scores (tied
scores are always on the same side). Between groups the threshold is the midpoint of the two neighbouring
scores (in the scores' dtype); if that rounds onto the next score it falls back to the current one. Among equally
good cut points the most-similar-side (first) one wins.
"""

from __future__ import annotations

import numpy as np


def _ranked(scores: np.ndarray, labels: np.ndarray, greater_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores if greater_is_better else scores, kind="stable")
    return scores[order], labels[order]


def _group_ends(sorted_scores: np.ndarray) -> np.ndarray:
    """Indices of the last element of each run of equal scores."""
    n = len(sorted_scores)
    is_end = np.ones(n, dtype=bool)
    is_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    return np.flatnonzero(is_end)


def _cut_threshold(sorted_scores: np.ndarray, i: int):
    """Threshold just after position ``i``: the midpoint to the next score, or the score itself at the end."""
    if i == len(sorted_scores) - 1:
        return sorted_scores[i]
    midpoint = (sorted_scores[i] + sorted_scores[i + 1]) / 2
    return sorted_scores[i] if midpoint == sorted_scores[i + 1] else midpoint


def best_accuracy_threshold(scores, labels, greater_is_better: bool) -> tuple[float, float]:
    """``(accuracy, threshold)`` maximising accuracy of "similar iff score beyond threshold".

    Starts from the all-dissimilar rule (threshold one ulp past the most similar score).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if len(scores) == 0:
        return 0, -1
    dtype = np.result_type(scores.dtype, np.float16)
    s, y = _ranked(scores, labels, greater_is_better)
    n = len(y)
    total_neg = int((y == 0).sum())
    ends = _group_ends(s)
    correct = np.cumsum(y == 1)[ends] + total_neg - np.cumsum(y == 0)[ends]
    best = int(np.argmax(correct))
    if correct[best] > total_neg:
        return correct[best] / n, _cut_threshold(s, int(ends[best]))
    start = np.nextafter(s[0], np.inf if greater_is_better else -np.inf, dtype=dtype)
    return total_neg / n, start


def best_f1_threshold(scores, labels, greater_is_better: bool) -> tuple[float, float, float, float]:
    """``(f1, precision, recall, threshold)`` of the cut point with the best F1 (zeros when no positive)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if len(scores) == 0:
        return 0, 0, 0, 0
    s, y = _ranked(scores, labels, greater_is_better)
    ends = _group_ends(s)
    n_correct = np.cumsum(y == 1)[ends].astype(np.float64)
    n_extract = (ends + 1).astype(np.float64)
    total_pos = float((y == 1).sum())
    valid = n_correct > 0
    if not valid.any():
        return 0, 0, 0, 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = n_correct / n_extract
        recall = n_correct / total_pos
        f1 = 2 * precision * recall / (precision + recall)
    f1 = np.where(valid, f1, 0.0)
    best = int(np.argmax(f1))
    if f1[best] <= 0:
        return 0, 0, 0, 0
    return (
        float(f1[best]),
        float(precision[best]),
        float(recall[best]),
        _cut_threshold(s, int(ends[best])),
    )
