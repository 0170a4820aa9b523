"""MultipleNegativesSymmetricRankingLoss: MNRL with the symmetric document-to-query term."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from raystx.losses.base import ColumnContract
from raystx.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from raystx.util import cos_sim


class MultipleNegativesSymmetricRankingLoss(MultipleNegativesRankingLoss):
    """InfoNCE in both directions: anchor -> all documents and positive -> all anchors, averaged.

    The mean of two cross-entropies: each anchor must pick its positive among all candidates of the global
    batch (positives and any hard negatives), and each positive must pick its anchor among all anchors.
    Equivalent to ``MultipleNegativesRankingLoss(model, directions=("query_to_doc", "doc_to_query"),
    partition_mode="per_direction")``, which is the preferred spelling; hard negatives, if given, only
    enter the anchor -> document term.

    Args:
        model: the SentenceTransformer being trained.
        scale: multiplies the similarities (``scale = 1 / temperature``).
        similarity_fct: similarity function of two (n, d) and (m, d) tensors; ``cos_sim`` by default.
        gather_across_devices: share anchors and candidates across workers. Default ``True``.

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
            from raystx.losses import MultipleNegativesSymmetricRankingLoss

            model = SentenceTransformer("path/to/model")
            loss = MultipleNegativesSymmetricRankingLoss(model)
            value = loss([model.tokenize(["what is a cat?"]), model.tokenize(["a cat is an animal"])], None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, None, "none")

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(
            model,
            scale=scale,
            similarity_fct=similarity_fct,
            gather_across_devices=gather_across_devices,
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
        )
