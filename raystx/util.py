"""Similarity functions and small tensor helpers shared by models, losses and evaluators.

Every ``*_sim`` / ``*_score`` function takes two 2-D tensors ``a`` (n, d) and ``b`` (m, d) (1-D inputs are
treated as one row) and returns an (n, m) matrix of scores where larger means more similar. The
``pairwise_*`` variants take two (n, d) tensors and return the (n,) scores of matching rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def _as_2d(x: Tensor | np.ndarray | list) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() == 1:
        x = x.unsqueeze(0)
    return x


def normalize_embeddings(embeddings: Tensor) -> Tensor:
    """L2-normalise rows; zero rows stay zero."""
    return torch.nn.functional.normalize(embeddings, p=2, dim=-1)


def cos_sim(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity matrix (n, m)."""
    a, b = _as_2d(a), _as_2d(b)
    return normalize_embeddings(a) @ normalize_embeddings(b).transpose(0, 1)


def dot_score(a: Tensor, b: Tensor) -> Tensor:
    """Dot-product matrix (n, m)."""
    a, b = _as_2d(a), _as_2d(b)
    return a @ b.transpose(0, 1)


def euclidean_sim(a: Tensor, b: Tensor) -> Tensor:
    """Negative Euclidean distance matrix (n, m)."""
    a, b = _as_2d(a), _as_2d(b)
    return -torch.cdist(a, b, p=2.0)


def manhattan_sim(a: Tensor, b: Tensor) -> Tensor:
    """Negative Manhattan (L1) distance matrix (n, m)."""
    a, b = _as_2d(a), _as_2d(b)
    return -torch.cdist(a, b, p=1.0)


def pairwise_cos_sim(a: Tensor, b: Tensor) -> Tensor:
    return (normalize_embeddings(_as_2d(a)) * normalize_embeddings(_as_2d(b))).sum(dim=-1)


def pairwise_dot_score(a: Tensor, b: Tensor) -> Tensor:
    return (_as_2d(a) * _as_2d(b)).sum(dim=-1)


def pairwise_euclidean_sim(a: Tensor, b: Tensor) -> Tensor:
    return -torch.sqrt(((_as_2d(a) - _as_2d(b)) ** 2).sum(dim=-1))


def pairwise_manhattan_sim(a: Tensor, b: Tensor) -> Tensor:
    return -(_as_2d(a) - _as_2d(b)).abs().sum(dim=-1)


SIMILARITY_FUNCTIONS: dict[
    str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]
] = {
    "cosine": (cos_sim, pairwise_cos_sim),
    "dot": (dot_score, pairwise_dot_score),
    "euclidean": (euclidean_sim, pairwise_euclidean_sim),
    "manhattan": (manhattan_sim, pairwise_manhattan_sim),
}
SIMILARITY_ALIASES = {"cos_sim": "cosine", "dot_score": "dot", "dot_product": "dot"}


def similarity_fn(name: str, pairwise: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
    """Look up a similarity function by its sentence-transformers name (cosine, dot, euclidean, manhattan)."""
    key = SIMILARITY_ALIASES.get(name, name)
    if key not in SIMILARITY_FUNCTIONS:
        raise ValueError(
            f"Unknown similarity function {name!r}; expected one of {sorted(SIMILARITY_FUNCTIONS)}"
        )
    return SIMILARITY_FUNCTIONS[key][1 if pairwise else 0]


def batch_to_device(batch: dict, device: torch.device | str) -> dict:
    """Move every tensor value of a feature dict to ``device`` (non-tensors are kept)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in batch.items()}
