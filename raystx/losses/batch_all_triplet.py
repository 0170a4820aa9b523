"""BatchAllTripletLoss: every valid (anchor, positive, negative) triplet of the batch.

In: single sentences with an integer class label. Out: the mean hinge loss over the triplets that still
violate the margin.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from raystx.losses.batch_hard_triplet import (
    BatchHardTripletLossDistanceFunction,
    BatchTripletLossBase,
    DistanceMatrix,
    anchor_positive_mask,
    distance_function_name,
)


def batch_all_triplet_loss(distances: Tensor, labels: Tensor, margin: float) -> Tensor:
    """``sum relu(d(a, p) - d(a, n) + margin) / #(triplets with a positive loss)``.

    Triplets: ``a != p`` with the same label, ``n`` with another label. Only the (a, p) pairs that exist are
    expanded, so memory is (#pairs, n) rather than (n, n, n).
    """
    anchors, positives = anchor_positive_mask(labels).nonzero(as_tuple=True)
    is_negative = labels[anchors].unsqueeze(1) != labels.unsqueeze(0)  # (#pairs, n)
    violation = distances[anchors, positives].unsqueeze(1) - distances[anchors] + margin
    losses = (violation * is_negative).clamp_min(0.0)
    num_active = (losses > 1e-16).sum()
    return losses.sum() / (num_active + 1e-16)


class BatchAllTripletLoss(BatchTripletLossBase):
    """Batch-all triplet loss: the average of ``relu(d(a, p) - d(a, n) + margin)`` over active triplets.

    All triplets with ``label(a) == label(p)``, ``a != p`` and ``label(n) != label(a)`` are formed; the sum is
    divided by the number of triplets whose loss is positive. Batches need at least 2 sentences per class.

    Args:
        model: the SentenceTransformer to train.
        distance_metric: a distance-matrix function from :class:`BatchHardTripletLossDistanceFunction`.
        margin: how much farther negatives must be than positives.
        gather_across_devices: form triplets across all workers' rows.

    Inputs:
        +---------------+--------+
        | Texts         | Labels |
        +===============+========+
        | single inputs | class  |
        +---------------+--------+

    Example:
        ::

            from raystx.losses import BatchAllTripletLoss

            loss = BatchAllTripletLoss(model, margin=5)  # dataset columns: sentence, label
    """

    def __init__(
        self,
        model: nn.Module,
        distance_metric: DistanceMatrix = BatchHardTripletLossDistanceFunction.euclidean_distance,
        margin: float = 5,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model, distance_metric, gather_across_devices)
        self.triplet_margin = margin

    def batch_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return batch_all_triplet_loss(self.distance_metric(embeddings), labels, self.triplet_margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": distance_function_name(self.distance_metric),
            "margin": self.triplet_margin,
            "gather_across_devices": self.gather_across_devices,
        }
