"""BatchHardTripletLoss: for every anchor, its farthest positive against its closest negative.

In: single sentences with an integer class label. Out: ``mean(relu(d(a, hardest p) - d(a, hardest n) + margin))``
over the (global) batch. Also home of :class:`BatchHardTripletLossDistanceFunction` (distance matrices) and
of the base class shared by all batch triplet losses (gathering across workers, label masks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from raystx.distributed import all_gather_no_grad, all_gather_with_grad
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.util import cos_sim

DistanceMatrix = Callable[[Tensor], Tensor]


class BatchHardTripletLossDistanceFunction:
    """Distance matrices (n, n) between all rows of an (n, d) tensor; the diagonal is 0."""

    @staticmethod
    def cosine_distance(embeddings: Tensor) -> Tensor:
        """``1 - cos_sim(e_i, e_j)``."""
        return 1 - cos_sim(embeddings, embeddings)

    @staticmethod
    def euclidean_distance(embeddings: Tensor, squared: bool = False) -> Tensor:
        """``||e_i - e_j||`` (or its square) from the Gram matrix; half precision is computed in float32.

        Tiny negative squared distances from rounding become 0, and the square root has a zero gradient
        where the distance is 0 (the diagonal), so no NaN reaches the embeddings.
        """
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            if embeddings.dtype in (torch.float16, torch.bfloat16):
                embeddings = embeddings.float()
            gram = embeddings @ embeddings.transpose(0, 1)
        norms = gram.diagonal()
        squared_distances = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * gram).clamp_min(0.0)
        if squared:
            return squared_distances
        positive = squared_distances > 0
        safe = torch.where(positive, squared_distances, torch.ones_like(squared_distances))
        return torch.where(positive, safe.sqrt(), torch.zeros_like(squared_distances))

    # Misspelled alias kept by sentence-transformers for old configs.
    eucledian_distance = euclidean_distance


def same_label_mask(labels: Tensor) -> Tensor:
    """(n, n) bool: ``labels[i] == labels[j]`` (includes the diagonal)."""
    return labels.unsqueeze(1) == labels.unsqueeze(0)


def anchor_positive_mask(labels: Tensor) -> Tensor:
    """(n, n) bool: ``i != j`` and same label."""
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same_label_mask(labels) & ~eye


def distance_function_name(fn: Callable) -> str:
    return getattr(fn, "__name__", str(fn))


class BatchTripletLossBase(RaystxLoss):
    """Shared plumbing of the batch triplet losses: one input column, integer class labels.

    ``compute_loss_from_embeddings`` gathers the embeddings and labels of all workers (when
    ``gather_across_devices``) and hands the global (n, d) embeddings and (n,) labels to ``batch_loss``.
    Every worker then computes the same global loss, which is exactly the single-process objective.
    """

    contract: ClassVar[ColumnContract] = ColumnContract(1, 1, "int")
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
        self, model: nn.Module, distance_metric: DistanceMatrix, gather_across_devices: bool
    ) -> None:
        super().__init__(model)
        self.distance_metric = distance_metric
        self.gather_across_devices = gather_across_devices

    @property
    def sentence_embedder(self) -> nn.Module:
        """The model (the attribute name sentence-transformers uses for these losses)."""
        return self.model

    def batch_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [(b, d)]; ``labels``: (b,) class ids. Returns a scalar."""
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs an integer class label per sentence.")
        rows = embeddings[0]
        if labels.numel() != rows.shape[0]:
            raise ValueError(
                f"{type(self).__name__} expects one label per sentence ({rows.shape[0]}), "
                f"got shape {tuple(labels.shape)}."
            )
        labels = labels.reshape(-1)
        if self.gather_across_devices:
            rows = all_gather_with_grad(rows)
            labels = all_gather_no_grad(labels)
        return self.batch_loss(rows, labels)


def hardest_positive_and_negative(distances: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per anchor (n,): the largest distance to a same-label row and the smallest to an other-label row.

    An anchor without positives gets 0; without negatives, the row's largest distance (the
    sentence-transformers convention).
    """
    hardest_positive = (distances * anchor_positive_mask(labels)).max(dim=1).values
    row_max = distances.max(dim=1, keepdim=True).values
    not_negative = same_label_mask(labels)
    hardest_negative = (distances + row_max * not_negative).min(dim=1).values
    return hardest_positive, hardest_negative


class BatchHardTripletLoss(BatchTripletLossBase):
    """Batch-hard triplet loss: each anchor with its hardest positive and hardest negative in the batch.

    ``loss = mean_a relu(max_p d(a, p) - min_n d(a, n) + margin)`` where positives share the anchor's label and
    negatives do not. Batches need at least 2 sentences per class (use a group-by-label batch sampler).

    Args:
        model: the SentenceTransformer to train.
        distance_metric: a distance-matrix function, e.g. ``BatchHardTripletLossDistanceFunction.cosine_distance``.
        margin: how much farther the hardest negative must be than the hardest positive.
        gather_across_devices: mine triplets across all workers' rows.

    Inputs:
        +---------------+--------+
        | Texts         | Labels |
        +===============+========+
        | single inputs | class  |
        +---------------+--------+

    Example:
        ::

            from raystx.losses import BatchHardTripletLoss

            loss = BatchHardTripletLoss(model, margin=5)  # dataset columns: sentence, label
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
        hardest_positive, hardest_negative = hardest_positive_and_negative(
            self.distance_metric(embeddings), labels
        )
        return (hardest_positive - hardest_negative + self.triplet_margin).clamp_min(0.0).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": distance_function_name(self.distance_metric),
            "margin": self.triplet_margin,
            "gather_across_devices": self.gather_across_devices,
        }
