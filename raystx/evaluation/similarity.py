"""The ``SimilarityFunction`` enum (same names and values as sentence-transformers)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from torch import Tensor

from raystx.util import similarity_fn

_ALIASES = {"dot_product": "dot", "dot_score": "dot", "cos_sim": "cosine"}


class SimilarityFunction(Enum):
    """Supported similarity functions: ``cosine``, ``dot`` (alias ``DOT_PRODUCT``), ``euclidean``, ``manhattan``.

    Euclidean and Manhattan scores are negative distances, so larger always means more similar.
    """

    COSINE = "cosine"
    DOT_PRODUCT = "dot"
    DOT = "dot"
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"

    @classmethod
    def _missing_(cls, value: object) -> SimilarityFunction | None:
        # Accept other enums with the same values (e.g. sentence-transformers' own) and common aliases.
        value = getattr(value, "value", value)
        if isinstance(value, str):
            value = _ALIASES.get(value.lower(), value.lower())
            for member in cls:
                if member.value == value:
                    return member
        return None

    @staticmethod
    def to_similarity_fn(
        similarity_function: str | SimilarityFunction,
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """The (n, d) x (m, d) -> (n, m) score function for a name or enum member."""
        return similarity_fn(SimilarityFunction(similarity_function).value)

    @staticmethod
    def possible_values() -> list[str]:
        """All accepted string values."""
        return [member.value for member in SimilarityFunction]
