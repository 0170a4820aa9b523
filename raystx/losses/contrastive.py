"""ContrastiveLoss (Hadsell et al.): pull positive pairs together, push negative pairs beyond a margin.

In: pairs ``(anchor, other)`` with label 1 (positive) or 0 (negative). Out: mean (or sum) of per-pair losses.
Also home of :class:`SiameseDistanceMetric`, the pair distances shared with :class:`OnlineContrastiveLoss`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from raystx.losses.base import ColumnContract, RaystxLoss

PairDistance = Callable[[Tensor, Tensor], Tensor]


class SiameseDistanceMetric:
    """Distances between matching rows of two (n, d) tensors, returned as (n,)."""

    @staticmethod
    def EUCLIDEAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802 (sentence-transformers name)
        return F.pairwise_distance(x, y, p=2)

    @staticmethod
    def MANHATTAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return F.pairwise_distance(x, y, p=1)

    @staticmethod
    def COSINE_DISTANCE(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return 1 - F.cosine_similarity(x, y)


def resolve_metric(metric: Callable | str, namespace: type) -> Callable:
    """A metric given as a callable, or by name (``"EUCLIDEAN"`` or ``"SiameseDistanceMetric.EUCLIDEAN"``)."""
    if callable(metric):
        return metric
    name = metric.rsplit(".", 1)[-1]
    found = getattr(namespace, name, None) if name.isupper() else None
    if found is None:
        options = [k for k in vars(namespace) if k.isupper()]
        raise ValueError(f"Unknown {namespace.__name__} {metric!r}; expected one of {options}")
    return found


def metric_name(metric: Callable, namespace: type) -> str:
    """``Namespace.NAME`` when ``metric`` is one of ``namespace``'s metrics, else the callable's name."""
    for name in vars(namespace):
        if name.isupper() and getattr(namespace, name) is metric:
            return f"{namespace.__name__}.{name}"
    return getattr(metric, "__name__", str(metric))


def warn_non_binary_labels(labels: Tensor, loss_name: str, consequence: str) -> None:
    """Warn (once per call site) when labels other than 0 and 1 are present."""
    if bool(((labels != 0) & (labels != 1)).any()):
        warnings.warn(f"{loss_name} expects binary labels (0 or 1); {consequence}", UserWarning, stacklevel=3)


class ContrastiveLoss(RaystxLoss):
    """``0.5 * (y * d^2 + (1 - y) * relu(margin - d)^2)`` per pair, averaged (or summed) over the batch.

    ``d`` is ``distance_metric(anchor, other)``; label ``y = 1`` pulls the pair together and ``y = 0`` pushes
    it at least ``margin`` apart. Non-binary labels are used as weights (with a warning).

    Args:
        model: the SentenceTransformer to train.
        distance_metric: a :class:`SiameseDistanceMetric` (or any pairwise distance, or its name).
        margin: negatives closer than this are penalised.
        size_average: mean over the batch (True) or sum (False).

    Inputs:
        +-----------------------------------+------------------------------+
        | Texts                             | Labels                       |
        +===================================+==============================+
        | (anchor, positive/negative) pairs | 1 if positive, 0 if negative |
        +-----------------------------------+------------------------------+

    Example:
        ::

            from raystx.losses import ContrastiveLoss, SiameseDistanceMetric

            loss = ContrastiveLoss(model, distance_metric=SiameseDistanceMetric.COSINE_DISTANCE, margin=0.5)
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "float")
    citation: ClassVar[str | None] = """
@inproceedings{hadsell2006dimensionality,
    author={Hadsell, R. and Chopra, S. and LeCun, Y.},
    booktitle={2006 IEEE Computer Society Conference on Computer Vision and Pattern Recognition (CVPR'06)},
    title={Dimensionality Reduction by Learning an Invariant Mapping},
    year={2006},
    volume={2},
    pages={1735-1742},
    doi={10.1109/CVPR.2006.100}
}
"""

    def __init__(
        self,
        model: nn.Module,
        distance_metric: PairDistance | str = SiameseDistanceMetric.COSINE_DISTANCE,
        margin: float = 0.5,
        size_average: bool = True,
    ) -> None:
        super().__init__(model)
        self.distance_metric = resolve_metric(distance_metric, SiameseDistanceMetric)
        self.margin = margin
        self.size_average = size_average
        self._labels_checked = False

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [(b, d) anchor, (b, d) other]; ``labels``: (b,) 1/0. Returns a scalar."""
        if labels is None:
            raise ValueError("ContrastiveLoss needs a 1/0 label per pair.")
        anchor, other = embeddings
        if labels.numel() != anchor.shape[0]:
            raise ValueError(
                f"ContrastiveLoss expects one label per pair ({anchor.shape[0]}), got shape {tuple(labels.shape)}."
            )
        labels = labels.reshape(-1).to(torch.float32)
        if not self._labels_checked:
            self._labels_checked = True
            warn_non_binary_labels(labels, "ContrastiveLoss", "other values weight the two terms directly.")
        distance = self.distance_metric(anchor, other)
        per_pair = 0.5 * (labels * distance.pow(2) + (1 - labels) * F.relu(self.margin - distance).pow(2))
        return per_pair.mean() if self.size_average else per_pair.sum()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": metric_name(self.distance_metric, SiameseDistanceMetric),
            "margin": self.margin,
            "size_average": self.size_average,
        }
