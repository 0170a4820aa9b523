"""BatchHardSoftMarginTripletLoss: batch-hard triplets with ``softplus`` instead of a hinge and margin.

In: single sentences with an integer class label. Out: ``mean(softplus(d(a, hardest p) - d(a, hardest n)))``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from raystx.losses.batch_hard_triplet import (
    BatchHardTripletLossDistanceFunction,
    BatchTripletLossBase,
    DistanceMatrix,
    distance_function_name,
    hardest_positive_and_negative,
)


class BatchHardSoftMarginTripletLoss(BatchTripletLossBase):
    """Batch-hard triplet loss with a soft margin: ``mean_a log(1 + exp(max_p d(a, p) - min_n d(a, n)))``.

    No margin to tune. Batches need at least 2 sentences per class.

    Args:
        model: the SentenceTransformer to train.
        distance_metric: a distance-matrix function from :class:`BatchHardTripletLossDistanceFunction`.
        gather_across_devices: mine triplets across all workers' rows.

    Inputs:
        +---------------+--------+
        | Texts         | Labels |
        +===============+========+
        | single inputs | class  |
        +---------------+--------+

    Example:
        ::

            from raystx.losses import BatchHardSoftMarginTripletLoss

            loss = BatchHardSoftMarginTripletLoss(model)  # dataset columns: sentence, label
    """

    def __init__(
        self,
        model: nn.Module,
        distance_metric: DistanceMatrix = BatchHardTripletLossDistanceFunction.euclidean_distance,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model, distance_metric, gather_across_devices)

    def batch_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        hardest_positive, hardest_negative = hardest_positive_and_negative(
            self.distance_metric(embeddings), labels
        )
        return F.softplus(hardest_positive - hardest_negative).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": distance_function_name(self.distance_metric),
            "gather_across_devices": self.gather_across_devices,
        }
