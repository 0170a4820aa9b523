"""TripletLoss: the anchor must be closer to its positive than to its negative by a margin.

In: ``(anchor, positive, negative)`` triplets, no label. Out: ``mean(relu(d(a, p) - d(a, n) + margin))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn
from torch.nn import functional as F

from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.losses.contrastive import metric_name, resolve_metric
from raystx.util import pairwise_cos_sim, pairwise_euclidean_sim, pairwise_manhattan_sim


class TripletDistanceMetric:
    """Distances between matching rows of two (n, d) tensors, returned as (n,)."""

    @staticmethod
    def COSINE(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802 (sentence-transformers name)
        return 1 - pairwise_cos_sim(x, y)

    @staticmethod
    def EUCLIDEAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return -pairwise_euclidean_sim(x, y)

    @staticmethod
    def MANHATTAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return -pairwise_manhattan_sim(x, y)


class TripletLoss(RaystxLoss):
    """``relu(d(anchor, positive) - d(anchor, negative) + triplet_margin)`` averaged over the batch.

    Args:
        model: the SentenceTransformer to train.
        distance_metric: a :class:`TripletDistanceMetric` (or any pairwise distance, or its name).
        triplet_margin: how much farther the negative must be than the positive.

    Inputs:
        +---------------------------------------+--------+
        | Texts                                 | Labels |
        +=======================================+========+
        | (anchor, positive, negative) triplets | none   |
        +---------------------------------------+--------+

    Example:
        ::

            from raystx.losses import TripletDistanceMetric, TripletLoss

            loss = TripletLoss(model, distance_metric=TripletDistanceMetric.EUCLIDEAN, triplet_margin=5)
    """

    contract: ClassVar[ColumnContract] = ColumnContract(3, 3, "none")
    citation: ClassVar[str | None] = """
@misc{hermans2017defense,
    title={In Defense of the Triplet Loss for Person Re-Identification},
    author={Alexander Hermans and Lucas Beyer and Bastian Leibe},
    year={2017},
    eprint={1703.07737},
    archivePrefix={arXiv},
    primaryClass={cs.CV}
}
"""

    def __init__(
        self,
        model: nn.Module,
        distance_metric: Callable[[Tensor, Tensor], Tensor] | str = TripletDistanceMetric.EUCLIDEAN,
        triplet_margin: float = 5,
    ) -> None:
        super().__init__(model)
        self.distance_metric = resolve_metric(distance_metric, TripletDistanceMetric)
        self.triplet_margin = triplet_margin

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """``embeddings``: [anchor, positive, negative], each (b, d); labels unused. Returns a scalar."""
        anchor, positive, negative = embeddings
        margin_violation = (
            self.distance_metric(anchor, positive)
            - self.distance_metric(anchor, negative)
            + self.triplet_margin
        )
        return F.relu(margin_violation).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": metric_name(self.distance_metric, TripletDistanceMetric),
            "triplet_margin": self.triplet_margin,
        }
