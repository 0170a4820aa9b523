"""CoSENTLoss: rank the pair scores of a batch so that higher-labelled pairs score higher.

In: pairs ``(sentence_A, sentence_B)`` with a float similarity label. Out: one scalar loss for the
(global) batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from raystx.distributed import all_gather_no_grad, all_gather_with_grad
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.util import pairwise_cos_sim

PairwiseSimilarity = Callable[[Tensor, Tensor], Tensor]


def cosent_ranking_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """``log(1 + sum_{(i, k): label_i > label_k} exp(scores_k - scores_i))`` for already-scaled scores.

    ``scores`` and ``labels`` are (n,) tensors. The sum over ordered pairs is evaluated in O(n log n):
    sorting by label, the pairs with a strictly lower label than row ``i`` form a prefix of the sorted
    order, so ``sum_k exp(scores_k)`` is a prefix log-cum-sum-exp looked up at that prefix's end.
    """
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    if labels.dtype == torch.bool:
        labels = labels.to(scores.dtype)
    labels, order = torch.sort(labels.reshape(-1))
    scores = scores.reshape(-1)[order]
    # Number of rows with a strictly lower label than each row (first index of its label group).
    n_lower = torch.searchsorted(labels, labels, right=False)
    # prefix[j] = log sum_{k < j} exp(scores_k); prefix[0] = -inf (empty sum).
    prefix = torch.cat((scores.new_full((1,), float("-inf")), torch.logcumsumexp(scores, dim=0)))
    terms = prefix[n_lower] - scores  # log sum_{k lower than i} exp(s_k - s_i), -inf when none
    return torch.logsumexp(torch.cat((scores.new_zeros(1), terms)), dim=0)


class CoSENTLoss(RaystxLoss):
    """CoSENT (Consistent SENTence embedding) loss for pairs with a float similarity label.

    ``loss = log(1 + sum exp(scale * (s(k, l) - s(i, j))))`` over all pairs of pairs in the batch where the
    label of ``(i, j)`` is larger than the label of ``(k, l)``; ``s`` is ``similarity_fct``. Only the order
    of the labels matters, so it is a drop-in replacement for :class:`CosineSimilarityLoss`.

    With ``gather_across_devices=True`` (default) the pairs of every Ray Train worker are ranked together,
    so 2 workers x B rows behave like 1 worker x 2B rows.

    Args:
        model: the SentenceTransformer to train.
        scale: multiplies the similarity scores (inverse temperature).
        similarity_fct: PAIRWISE similarity of two (n, d) tensors, default ``pairwise_cos_sim``.
        gather_across_devices: rank the pairs of the global batch instead of the local one.

    Inputs:
        +--------------------------------+------------------------+
        | Texts                          | Labels                 |
        +================================+========================+
        | (sentence_A, sentence_B) pairs | float similarity score |
        +--------------------------------+------------------------+

    Example:
        ::

            from raystx.losses import CoSENTLoss

            loss = CoSENTLoss(model)  # dataset columns: sentence1, sentence2, score
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "float")
    citation: ClassVar[str | None] = """
@article{10531646,
    author={Huang, Xiang and Peng, Hao and Zou, Dongcheng and Liu, Zhiwei and Li, Jianxin and Liu, Kay and Wu, Jia and Su, Jianlin and Yu, Philip S.},
    journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},
    title={CoSENT: Consistent Sentence Embedding via Similarity Ranking},
    year={2024},
    doi={10.1109/TASLP.2024.3402087}
}
"""

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: PairwiseSimilarity = pairwise_cos_sim,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model)
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.gather_across_devices = gather_across_devices

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [(b, d) column A, (b, d) column B]; ``labels``: (b,) scores. Returns a scalar."""
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs a float label (similarity score) per pair.")
        a, b = embeddings[0], embeddings[1]
        if labels.numel() != a.shape[0]:
            raise ValueError(
                f"{type(self).__name__} expects one label per pair ({a.shape[0]}), got shape {tuple(labels.shape)}."
            )
        labels = labels.reshape(-1)
        if labels.dtype == torch.bool:
            labels = labels.to(a.dtype)
        if self.gather_across_devices:
            a, b = all_gather_with_grad(a), all_gather_with_grad(b)
            labels = all_gather_no_grad(labels)
        scores = self.similarity_fct(a, b)
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        return cosent_ranking_loss(scores * self.scale, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "similarity_fct": self.similarity_fct.__name__,
            "gather_across_devices": self.gather_across_devices,
        }
