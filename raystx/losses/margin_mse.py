"""MarginMSELoss: the student's score margins must match the teacher's (Hofstaetter et al.).

In: ``(query, positive, negative_1, ..., negative_n)`` and teacher scores as label: the margins
``M(q, p) - M(q, n_i)`` (n values, or one float when n = 1) or the raw scores ``[M(q, p), M(q, n_1), ...]``
(n + 1 values). Out: the MSE between student and teacher margins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.util import pairwise_dot_score


def teacher_margins(labels: Tensor, batch_size: int, num_negatives: int) -> Tensor:
    """(b, num_negatives) teacher margins from margins (b,)/(b, n) or raw scores (b, n + 1)."""
    if labels.shape == (batch_size, num_negatives + 1):
        labels = labels[:, :1] - labels[:, 1:]
    elif labels.shape == (batch_size,):
        labels = labels.unsqueeze(1)
    if labels.shape != (batch_size, num_negatives):
        raise ValueError(
            f"MarginMSELoss labels have shape {tuple(labels.shape)}, expected ({batch_size}, {num_negatives}) "
            f"margins M(q, p) - M(q, n_i) or ({batch_size}, {num_negatives + 1}) scores [M(q, p), M(q, n_1), ...]."
        )
    return labels.detach()


class MarginMSELoss(RaystxLoss):
    """``MSE(s(q, p) - s(q, n_i), teacher margin_i)`` over rows and negatives.

    ``s`` is ``similarity_fct`` (pairwise, default dot product). The teacher (e.g. a cross-encoder) scores
    are pre-computed into the label column.

    Args:
        model: the student SentenceTransformer.
        similarity_fct: pairwise similarity of two (b, d) tensors, default ``pairwise_dot_score``.

    Inputs:
        +-------------------------------------------------+---------------------------------------------+
        | Texts                                           | Labels                                      |
        +=================================================+=============================================+
        | (query, positive, negative) triplets            | M(query, positive) - M(query, negative)     |
        +-------------------------------------------------+---------------------------------------------+
        | (query, positive, negative) triplets            | [M(query, positive), M(query, negative)]    |
        +-------------------------------------------------+---------------------------------------------+
        | (query, positive, negative_1, ..., negative_n)  | [M(query, positive) - M(query, negative_i)] |
        +-------------------------------------------------+---------------------------------------------+
        | (query, positive, negative_1, ..., negative_n)  | [M(query, positive), M(query, negative_i)]  |
        +-------------------------------------------------+---------------------------------------------+

    Example:
        ::

            from raystx.losses import MarginMSELoss

            loss = MarginMSELoss(student)  # columns: query, positive, negative, label = teacher margin
    """

    contract: ClassVar[ColumnContract] = ColumnContract(3, None, "float_or_vector")
    citation: ClassVar[str | None] = """
@misc{hofstätter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2021},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}
"""

    def __init__(
        self, model: nn.Module, similarity_fct: Callable[[Tensor, Tensor], Tensor] = pairwise_dot_score
    ):
        super().__init__(model)
        self.similarity_fct = similarity_fct

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [query, positive, negative_1, ...], each (b, d); ``labels``: teacher scores."""
        if labels is None:
            raise ValueError("MarginMSELoss needs teacher score margins (or scores) in the label column.")
        if len(embeddings) < 3:
            raise ValueError("MarginMSELoss needs (query, positive, negative_1, ...) columns.")
        query, positive, negatives = embeddings[0], embeddings[1], embeddings[2:]
        targets = teacher_margins(labels, query.shape[0], len(negatives))
        positive_scores = self.similarity_fct(query, positive)
        margins = torch.stack([positive_scores - self.similarity_fct(query, n) for n in negatives], dim=1)
        return F.mse_loss(margins, targets)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "similarity_fct": getattr(self.similarity_fct, "__name__", type(self.similarity_fct).__name__)
        }
