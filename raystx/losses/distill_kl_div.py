"""DistillKLDivLoss: KL divergence between the teacher's and the student's softmax over candidates.

In: ``(query, positive, negative_1, ..., negative_n)`` and the teacher's scores ``[T(q, p), T(q, n_1), ...]``
(batch, n + 1) as label. Out: ``KL(softmax(teacher / t_T) || softmax(student / t_S)) * t_S^2`` (batch mean).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.util import pairwise_dot_score

logger = logging.getLogger(__name__)


def check_teacher_scores(scores: Tensor, probabilities: Tensor, temperature: float) -> None:
    """Fail on NaN teacher scores; warn when the softmax underflows some candidates to exactly 0."""
    scores = scores.detach().float()
    if bool(scores.isnan().any()):
        raise ValueError("DistillKLDivLoss: the teacher scores contain NaN; check the label column.")
    if bool(scores.isinf().any()):
        return  # -inf marks a candidate excluded on purpose
    underflow = int((probabilities == 0).sum())
    if underflow:
        spread = float((scores.max(dim=-1).values - scores.min(dim=-1).values).max())
        logger.warning(
            "DistillKLDivLoss: teacher_temperature=%s turns %d of %d teacher probabilities into exactly 0 "
            "(widest score spread %.1f); raise teacher_temperature above %.3g to keep them.",
            temperature,
            underflow,
            probabilities.numel(),
            spread,
            spread / 100,
        )


class DistillKLDivLoss(RaystxLoss):
    """Distil a teacher's candidate ranking into the student with a KL divergence.

    Student scores ``s(q, c)`` (``similarity_fct``, default dot product) for the positive and every negative
    are divided by the student temperature and log-softmaxed; teacher scores by the teacher temperature and
    softmaxed. The batch-mean KL divergence is multiplied by the student temperature squared.

    Args:
        model: the student SentenceTransformer.
        similarity_fct: pairwise similarity of two (b, d) tensors.
        temperature: shared temperature (1.0 leaves scores unchanged).
        student_temperature: overrides ``temperature`` for the student.
        teacher_temperature: overrides ``temperature`` for the teacher.

    Inputs:
        +--------------------------------------------------+----------------------------------------------------------+
        | Texts                                            | Labels                                                   |
        +==================================================+==========================================================+
        | (query, positive, negative) triplets             | [Teacher(query, positive), Teacher(query, negative)]     |
        +--------------------------------------------------+----------------------------------------------------------+
        | (query, positive, negative_1, ..., negative_n)   | [Teacher(query, positive), Teacher(query, negative_i)]   |
        +--------------------------------------------------+----------------------------------------------------------+

    Example:
        ::

            from raystx.losses import DistillKLDivLoss

            loss = DistillKLDivLoss(student, temperature=1.0)  # label: teacher scores per candidate
    """

    contract: ClassVar[ColumnContract] = ColumnContract(3, None, "vector")
    citation: ClassVar[str | None] = """
@misc{lin2020distillingdenserepresentationsranking,
      title={Distilling Dense Representations for Ranking using Tightly-Coupled Teachers},
      author={Sheng-Chieh Lin and Jheng-Hong Yang and Jimmy Lin},
      year={2020},
      eprint={2010.11386},
      archivePrefix={arXiv},
      primaryClass={cs.IR},
      url={https://arxiv.org/abs/2010.11386},
}
"""

    def __init__(
        self,
        model: nn.Module,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = pairwise_dot_score,
        temperature: float = 1.0,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
    ) -> None:
        super().__init__(model)
        self.similarity_fct = similarity_fct
        self.temperature = temperature
        self.student_temperature = temperature if student_temperature is None else student_temperature
        self.teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
        for name in ("temperature", "student_temperature", "teacher_temperature"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value}.")
        self._teacher_checked = False

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [query, positive, negative_1, ...]; ``labels``: (b, n + 1) teacher scores."""
        if len(embeddings) < 3:
            raise ValueError(
                "DistillKLDivLoss needs (query, positive, negative_1, ...) columns: a softmax over a single "
                "candidate is constant, so the loss would be zero."
            )
        query, candidates = embeddings[0], embeddings[1:]
        expected = (query.shape[0], len(candidates))
        if labels is None or tuple(labels.shape) != expected:
            got = None if labels is None else tuple(labels.shape)
            raise ValueError(f"DistillKLDivLoss expects teacher scores of shape {expected}, got {got}.")
        student = torch.stack([self.similarity_fct(query, c) for c in candidates], dim=1)
        student_log_probs = F.log_softmax(student / self.student_temperature, dim=1)
        teacher_probs = F.softmax(labels.detach() / self.teacher_temperature, dim=1)
        if not self._teacher_checked:
            self._teacher_checked = True
            check_teacher_scores(labels, teacher_probs, self.teacher_temperature)
        kl = F.kl_div(student_log_probs, teacher_probs, reduction="batchmean")
        return kl * self.student_temperature**2

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "similarity_fct": getattr(self.similarity_fct, "__name__", type(self.similarity_fct).__name__),
            "temperature": self.temperature,
        }
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        return config
