"""Similarity functions and small tensor helpers shared by models, losses and evaluators.

Every ``*_sim`` / ``*_score`` function takes two 2-D tensors ``a`` (n, d) and ``b`` (m, d) (1-D inputs are
treated as one row) and returns an (n, m) matrix of scores where larger means more similar. The
``pairwise_*`` variants take two (n, d) tensors and return the (n,) scores of matching rows.

It also exposes the rest of ``sentence_transformers.util`` that training scripts call (``semantic_search``,
``paraphrase_mining``, ``community_detection``, ``LoggingHandler``, ``SimilarityFunction``, ...); those live in
their own modules and are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def pytorch_cos_sim(a: Tensor, b: Tensor) -> Tensor:
    """Old name of ``cos_sim``."""
    return cos_sim(a, b)


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


def truncate_embeddings(embeddings: np.ndarray | Tensor, truncate_dim: int | None) -> np.ndarray | Tensor:
    """The first ``truncate_dim`` dimensions of each embedding (all of them for ``None``)."""
    return embeddings[..., :truncate_dim]


def all_gather(tensor: Tensor, with_grad: bool = False) -> Tensor:
    """Rows of ``tensor`` from every rank, concatenated in rank order (identity outside a process group)."""
    from raystx.distributed import all_gather_no_grad, all_gather_with_grad

    return all_gather_with_grad(tensor) if with_grad else all_gather_no_grad(tensor)


def is_dist_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is initialised."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_device_name() -> str:
    """``cuda`` if a GPU is visible, else ``mps`` on Apple silicon, else ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def fullname(obj: Any) -> str:
    """``module.ClassName`` of an object's class (or of a class), without the ``builtins.`` prefix."""
    cls = obj if isinstance(obj, type) else type(obj)
    module = cls.__module__
    return cls.__name__ if module in (None, "builtins") else f"{module}.{cls.__name__}"


def import_from_string(dotted_path: str) -> Any:
    """The attribute named by ``"package.module.Name"`` (``ImportError`` naming the path if it is missing)."""
    module_path, _, name = dotted_path.rpartition(".")
    if not module_path:
        raise ImportError(f"{dotted_path!r} is not a dotted path like 'package.module.Name'")
    module = importlib.import_module(module_path)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"Module {module_path!r} has no attribute {name!r}") from None


def is_sentence_transformer_model(model_name_or_path: str | os.PathLike, **kwargs: Any) -> bool:
    """Whether a local directory holds a sentence-transformers model (``modules.json``); Hub ids are not checked."""
    return (Path(model_name_or_path) / "modules.json").is_file()


# names served by other modules, imported on first access
_LAZY = {
    "SimilarityFunction": "raystx.evaluation.similarity",
    "LoggingHandler": "raystx.logging_handler",
    "install_logger": "raystx.logging_handler",
    "semantic_search": "raystx.retrieval",
    "information_retrieval": "raystx.retrieval",
    "paraphrase_mining": "raystx.retrieval",
    "paraphrase_mining_embeddings": "raystx.retrieval",
    "community_detection": "raystx.retrieval",
    "quantize_embeddings": "raystx.models.quantize",
    "pairwise_angle_sim": "raystx.losses.angle",
    "get_rank": "raystx.distributed",
    "get_world_size": "raystx.distributed",
    "all_gather_with_grad": "raystx.distributed",
    "mine_hard_negatives": "raystx.infer.mining",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raystx.util' has no attribute {name!r}")


__all__ = sorted(
    [
        *_LAZY,
        "all_gather",
        "batch_to_device",
        "cos_sim",
        "dot_score",
        "euclidean_sim",
        "fullname",
        "get_device_name",
        "import_from_string",
        "is_dist_initialized",
        "is_sentence_transformer_model",
        "manhattan_sim",
        "normalize_embeddings",
        "pairwise_cos_sim",
        "pairwise_dot_score",
        "pairwise_euclidean_sim",
        "pairwise_manhattan_sim",
        "pytorch_cos_sim",
        "similarity_fn",
        "truncate_embeddings",
    ]
)
