"""CachedMultipleNegativesSymmetricRankingLoss: the symmetric ranking loss with GradCache."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from raystx.losses.base import ColumnContract
from raystx.losses.cached_multiple_negatives_ranking import CachedMultipleNegativesRankingLoss
from raystx.util import cos_sim


class CachedMultipleNegativesSymmetricRankingLoss(CachedMultipleNegativesRankingLoss):
    """:class:`MultipleNegativesSymmetricRankingLoss` computed with GradCache (memory independent of batch size).

    Equivalent to ``CachedMultipleNegativesRankingLoss(model, directions=("query_to_doc", "doc_to_query"),
    partition_mode="per_direction")``: same value and gradients as the uncached symmetric loss.

    Args:
        model: the SentenceTransformer being trained.
        scale: multiplies the similarities (``scale = 1 / temperature``).
        similarity_fct: similarity function of two (n, d) and (m, d) tensors; ``cos_sim`` by default.
        mini_batch_size: rows per embedding mini-batch and per loss chunk; bounds the memory.
        mini_batch_num_tokens: if set, pack embedding mini-batches by non-padding token count instead.
        gather_across_devices: share anchors and candidates across workers. Default ``True``.
        show_progress_bar: accepted for compatibility (no progress bar is drawn).

    Inputs:
        +-------------------------------------------------+--------+
        | Texts                                           | Labels |
        +=================================================+========+
        | (anchor, positive) pairs                        | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., negative_n) | none   |
        +-------------------------------------------------+--------+

    Example:
        ::

            from raystx.models import SentenceTransformer
            from raystx.losses import CachedMultipleNegativesSymmetricRankingLoss

            model = SentenceTransformer("path/to/model")
            loss = CachedMultipleNegativesSymmetricRankingLoss(model, mini_batch_size=16)
            value = loss([model.tokenize(["what is a cat?"] * 64), model.tokenize(["an animal"] * 64)], None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, None, "none")

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        gather_across_devices: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(
            model,
            scale=scale,
            similarity_fct=similarity_fct,
            mini_batch_size=mini_batch_size,
            mini_batch_num_tokens=mini_batch_num_tokens,
            gather_across_devices=gather_across_devices,
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
            show_progress_bar=show_progress_bar,
        )
