"""BatchSemiHardTripletLoss: each (anchor, positive) pair with its semi-hard negative.

In: single sentences with an integer class label. Out: the mean hinge loss over all (anchor, positive) pairs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from raystx.losses.batch_hard_triplet import (
    BatchHardTripletLossDistanceFunction,
    BatchTripletLossBase,
    DistanceMatrix,
    anchor_positive_mask,
    distance_function_name,
    same_label_mask,
)


def semi_hard_negative_distances(distances: Tensor, labels: Tensor) -> Tensor:
    """(n, n): for anchor ``a`` and candidate positive ``p``, the distance ``d(a, n*)`` of its negative.

    ``n*`` is the closest negative that is still farther than ``p`` (``d(a, n) > d(a, p)``); when there is
    none, the farthest negative; when the anchor has no negative at all, the row's smallest distance.
    Found by sorting each anchor's negative distances once and binary-searching every ``d(a, p)``.
    """
    size = distances.shape[0]
    same = same_label_mask(labels)
    sorted_negatives = distances.masked_fill(same, float("inf")).sort(dim=1).values
    first_farther = torch.searchsorted(sorted_negatives.detach(), distances.detach().contiguous(), right=True)
    farther = sorted_negatives.gather(1, first_farther.clamp(max=size - 1))
    has_negative = (~same).any(dim=1, keepdim=True)
    farthest = distances.masked_fill(same, float("-inf")).max(dim=1, keepdim=True).values
    fallback = torch.where(has_negative, farthest, distances.min(dim=1, keepdim=True).values)
    return torch.where(torch.isfinite(farther), farther, fallback.expand_as(farther))


class BatchSemiHardTripletLoss(BatchTripletLossBase):
    """Semi-hard triplet loss (FaceNet): ``relu(d(a, p) - d(a, n*) + margin)`` averaged over (a, p) pairs.

    ``n*`` is the closest negative farther from the anchor than the positive (falling back to the farthest
    negative). Batches need at least 2 sentences per class.

    Args:
        model: the SentenceTransformer to train.
        distance_metric: a distance-matrix function from :class:`BatchHardTripletLossDistanceFunction`.
        margin: how much farther the negative must be than the positive.
        gather_across_devices: mine triplets across all workers' rows.

    Inputs:
        +---------------+--------+
        | Texts         | Labels |
        +===============+========+
        | single inputs | class  |
        +---------------+--------+

    Example:
        ::

            from raystx.losses import BatchSemiHardTripletLoss

            loss = BatchSemiHardTripletLoss(model, margin=5)  # dataset columns: sentence, label
    """

    def __init__(
        self,
        model: nn.Module,
        distance_metric: DistanceMatrix = BatchHardTripletLossDistanceFunction.euclidean_distance,
        margin: float = 5,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model, distance_metric, gather_across_devices)
        self.margin = margin

    def batch_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        distances = self.distance_metric(embeddings)
        negatives = semi_hard_negative_distances(distances, labels)
        is_pair = anchor_positive_mask(labels)
        losses = (distances - negatives + self.margin).clamp_min(0.0) * is_pair
        return losses.sum() / is_pair.sum().to(losses.dtype).clamp_min(1e-16)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": distance_function_name(self.distance_metric),
            "margin": self.margin,
            "gather_across_devices": self.gather_across_devices,
        }
