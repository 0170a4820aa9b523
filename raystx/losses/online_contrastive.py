"""OnlineContrastiveLoss: ContrastiveLoss restricted to the hard positive and hard negative pairs.

In: pairs ``(anchor, other)`` with label 1/0. Out: the summed loss of the hard pairs of the global batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn
from torch.nn import functional as F

from raystx.distributed import all_gather_no_grad, all_gather_with_grad
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.losses.contrastive import (
    PairDistance,
    SiameseDistanceMetric,
    metric_name,
    resolve_metric,
    warn_non_binary_labels,
)


def online_contrastive_loss(distances: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Sum of ``d^2`` over hard positives plus ``relu(margin - d)^2`` over hard negatives.

    Hard negatives are negatives (label 0) closer than the farthest positive; hard positives are positives
    (label 1) farther than the closest negative. Without positives (negatives), the mean distance of the
    other group is the threshold. Pairs with other labels are ignored.
    """
    positives = distances[labels == 1]
    negatives = distances[labels == 0]
    if len(positives):
        negative_threshold = positives.max()
    else:
        negative_threshold = negatives.mean()
    if len(negatives):
        positive_threshold = negatives.min()
    else:
        positive_threshold = positives.mean()
    hard_negatives = negatives[negatives < negative_threshold]
    hard_positives = positives[positives > positive_threshold]
    return hard_positives.pow(2).sum() + F.relu(margin - hard_negatives).pow(2).sum()


class OnlineContrastiveLoss(RaystxLoss):
    """Contrastive loss over the hard pairs only: far positives and close negatives.

    A negative counts when it is closer than the farthest positive, a positive when it is farther than the
    closest negative; the loss sums ``d^2`` (positives) and ``relu(margin - d)^2`` (negatives) over them.
    With ``gather_across_devices=True`` the hard pairs are mined from the global batch of all workers.

    Args:
        model: the SentenceTransformer to train.
        distance_metric: a :class:`SiameseDistanceMetric` (or any pairwise distance, or its name).
        margin: negatives closer than this are penalised.
        gather_across_devices: mine hard pairs across all workers' rows.

    Inputs:
        +-----------------------------------+------------------------------+
        | Texts                             | Labels                       |
        +===================================+==============================+
        | (anchor, positive/negative) pairs | 1 if positive, 0 if negative |
        +-----------------------------------+------------------------------+

    Example:
        ::

            from raystx.losses import OnlineContrastiveLoss

            loss = OnlineContrastiveLoss(model, margin=0.5)  # dataset columns: question1, question2, label
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "float")

    def __init__(
        self,
        model: nn.Module,
        distance_metric: PairDistance | str = SiameseDistanceMetric.COSINE_DISTANCE,
        margin: float = 0.5,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model)
        self.distance_metric = resolve_metric(distance_metric, SiameseDistanceMetric)
        self.margin = margin
        self.gather_across_devices = gather_across_devices
        self._labels_checked = False

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [(b, d) anchor, (b, d) other]; ``labels``: (b,) 1/0. Returns a scalar."""
        if labels is None:
            raise ValueError("OnlineContrastiveLoss needs a 1/0 label per pair.")
        anchor, other = embeddings
        if labels.numel() != anchor.shape[0]:
            raise ValueError(
                f"OnlineContrastiveLoss expects one label per pair ({anchor.shape[0]}), "
                f"got shape {tuple(labels.shape)}."
            )
        labels = labels.reshape(-1)
        distances = self.distance_metric(anchor, other)
        if self.gather_across_devices:
            distances = all_gather_with_grad(distances)
            labels = all_gather_no_grad(labels)
        if not self._labels_checked:
            self._labels_checked = True
            warn_non_binary_labels(labels, "OnlineContrastiveLoss", "pairs with other labels are ignored.")
        return online_contrastive_loss(distances, labels, self.margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": metric_name(self.distance_metric, SiameseDistanceMetric),
            "margin": self.margin,
            "gather_across_devices": self.gather_across_devices,
        }
