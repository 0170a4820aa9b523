"""CosineSimilarityLoss: regress the cosine similarity of a pair onto its float label.

In: pairs ``(sentence_A, sentence_B)`` with a float similarity label. Out: ``loss_fct(transform(cos), label)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from raystx.losses.base import ColumnContract, RaystxLoss


def full_class_name(obj: object) -> str:
    """``module.ClassName`` of an object (or class), for config dicts."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class CosineSimilarityLoss(RaystxLoss):
    """Per-pair regression of ``cos_score_transformation(cos_sim(u, v))`` onto the label with ``loss_fct``.

    ``u``/``v`` are the embeddings of the two columns; by default the loss is the mean squared error between
    the cosine similarity and the label. :class:`CoSENTLoss` usually trains better on the same data.

    Args:
        model: the SentenceTransformer to train.
        loss_fct: compares the transformed cosine scores with the labels (default ``nn.MSELoss()``).
        cos_score_transformation: applied to the cosine scores first (default ``nn.Identity()``).

    Inputs:
        +--------------------------------+------------------------+
        | Texts                          | Labels                 |
        +================================+========================+
        | (sentence_A, sentence_B) pairs | float similarity score |
        +--------------------------------+------------------------+

    Example:
        ::

            from raystx.losses import CosineSimilarityLoss

            loss = CosineSimilarityLoss(model)  # dataset columns: sentence1, sentence2, score in [0, 1]
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "float")
    # The scores the loss can fit (cosine similarities); the driver warns when a dataset's labels lie outside.
    # CoSENT/AnglE declare none: they only use the order of the labels, so 0-5 ratings train the same.
    expected_label_range: ClassVar[tuple[float, float] | None] = (-1.0, 1.0)

    def __init__(
        self,
        model: nn.Module,
        loss_fct: nn.Module = nn.MSELoss(),  # noqa: B008 (sentence-transformers default)
        cos_score_transformation: nn.Module = nn.Identity(),  # noqa: B008
    ) -> None:
        super().__init__(model)
        self.loss_fct = loss_fct
        self.cos_score_transformation = cos_score_transformation
        if not isinstance(cos_score_transformation, nn.Identity):
            self.expected_label_range = None  # a transformation may map cosines to any range

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [(b, d), (b, d)]; ``labels``: (b,) target scores. Returns a scalar."""
        if labels is None:
            raise ValueError("CosineSimilarityLoss needs a float label (target similarity) per pair.")
        a, b = embeddings[0], embeddings[1]
        if labels.numel() != a.shape[0]:
            raise ValueError(
                f"CosineSimilarityLoss expects one label per pair ({a.shape[0]}), got shape {tuple(labels.shape)}."
            )
        scores = self.cos_score_transformation(torch.cosine_similarity(a, b, dim=-1))
        return self.loss_fct(scores, labels.reshape(-1).float())

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss_fct": full_class_name(self.loss_fct),
            "cos_score_transformation": full_class_name(self.cos_score_transformation),
        }
