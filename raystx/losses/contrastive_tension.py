"""Contrastive Tension (CT): two copies of the encoder must agree on identical sentences.

``ContrastiveTensionLoss`` — In: pairs ``(sentence_A, sentence_B)`` that are sometimes identical (label 1,
derived from the token ids) and otherwise different (label 0). Out: summed binary cross-entropy of the dot
product of ``model1(A)`` and ``model2(B)``.

``ContrastiveTensionLossInBatchNegatives`` — In: single sentences. Out: symmetric in-batch cross-entropy
between ``model1`` and ``model2`` embeddings of the same sentences (other rows are the negatives).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from raystx.distributed import all_gather_with_grad, local_offset
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.util import cos_sim

CITATION = r"""
@inproceedings{carlsson2021semantic,
    title={Semantic Re-tuning with Contrastive Tension},
    author={Fredrik Carlsson and Amaru Cuba Gyllensten and Evangelia Gogoulou and Erik Ylip{\"a}{\"a} Hellqvist and Magnus Sahlgren},
    booktitle={International Conference on Learning Representations},
    year={2021},
    url={https://openreview.net/forum?id=Ov_sMNau-PF}
}
"""


def identical_rows(features_a: dict[str, Tensor], features_b: dict[str, Tensor]) -> Tensor:
    """(b,) float: 1 where both tokenized sentences have the same non-padding token ids, else 0."""
    ids_a, ids_b = features_a["input_ids"], features_b["input_ids"]
    mask_a, mask_b = features_a.get("attention_mask"), features_b.get("attention_mask")
    if mask_a is None or mask_b is None:
        return (ids_a == ids_b).all(dim=1).float()
    same = [torch.equal(a[m.bool()], b[n.bool()]) for a, m, b, n in zip(ids_a, mask_a, ids_b, mask_b)]
    return torch.tensor(same, dtype=torch.float32, device=ids_a.device)


class ContrastiveTensionLoss(RaystxLoss):
    """CT with sampled pairs: ``BCEWithLogits(<model1(A), model2(B)>, label)`` summed over the batch.

    ``model2`` is the model passed in (the one kept for inference); ``model1`` is an independent copy made
    at construction, trained too (:meth:`trainable_modules`). The label is 1 when A and B are the same
    sentence (compared on token ids), else 0; an explicit label column is also accepted by ``forward``.
    Build batches with about one identical pair per seven different ones.

    Args:
        model: the SentenceTransformer to train (becomes ``model2``).

    Inputs:
        +--------------------------------+--------+
        | Texts                          | Labels |
        +================================+========+
        | (sentence_A, sentence_B) pairs | none   |
        +--------------------------------+--------+

    Example:
        ::

            from raystx.losses import ContrastiveTensionLoss

            loss = ContrastiveTensionLoss(model)  # columns text1, text2 (text2 == text1 for ~1 in 8 rows)
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "none")
    citation: ClassVar[str | None] = CITATION

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.model1 = copy.deepcopy(model)

    @property
    def model2(self) -> nn.Module:
        """The model passed in (kept for inference)."""
        return self.model

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: [model1(A) (b, d), model2(B) (b, d)]; ``labels``: (b,) 1 identical / 0 different."""
        if labels is None:
            raise ValueError(
                "ContrastiveTensionLoss needs 1/0 labels here; forward derives them from token ids."
            )
        logits = (embeddings[0] * embeddings[1]).sum(dim=-1)
        return F.binary_cross_entropy_with_logits(
            logits, labels.reshape(-1).to(logits.dtype), reduction="sum"
        )

    def forward(self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features_a, features_b = sentence_features
        embeddings = [
            self.model1(features_a)["sentence_embedding"],
            self.model(features_b)["sentence_embedding"],
        ]
        if labels is None:
            labels = identical_rows(features_a, features_b)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    def trainable_modules(self) -> list[nn.Module]:
        return [self.model1]


class LogitScale(nn.Module):
    """A learnable log inverse temperature: ``scale = exp(logit_scale)``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def forward(self) -> Tensor:
        return self.logit_scale.exp()


class ContrastiveTensionLossInBatchNegatives(RaystxLoss):
    """CT with in-batch negatives: sentence ``i`` embedded by ``model1`` must match ``model2``'s embedding of
    the same sentence against every other sentence of the batch, and vice versa.

    ``loss = (CE(S, I) + CE(S^T, I)) / 2`` with ``S = similarity_fct(model1(x), model2(x)) * exp(logit_scale)``.
    ``logit_scale`` starts at ``log(scale)`` and is learned (:meth:`trainable_modules`, with ``model1``).
    With ``gather_across_devices=True`` the negatives are the sentences of all workers; each worker scores
    its own rows, so the mean over workers equals the single-process loss on the global batch.

    Args:
        model: the SentenceTransformer to train (becomes ``model2``).
        scale: initial inverse temperature.
        similarity_fct: similarity matrix function, default ``cos_sim`` (with ``dot_score`` use scale 1).
        gather_across_devices: take negatives from all workers.

    Inputs:
        +---------------+--------+
        | Texts         | Labels |
        +===============+========+
        | single inputs | none   |
        +---------------+--------+

    Example:
        ::

            from raystx.losses import ContrastiveTensionLossInBatchNegatives

            loss = ContrastiveTensionLossInBatchNegatives(model, scale=20.0)  # one text column
    """

    contract: ClassVar[ColumnContract] = ColumnContract(1, 1, "none")
    citation: ClassVar[str | None] = CITATION

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model)
        self.model1 = copy.deepcopy(model)
        self.similarity_fct = similarity_fct
        self.scale_module = LogitScale(scale)
        self.gather_across_devices = gather_across_devices

    @property
    def model2(self) -> nn.Module:
        """The model passed in (kept for inference)."""
        return self.model

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.scale_module.logit_scale

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """``embeddings``: [model1(x) (b, d), model2(x) (b, d)] of the same sentences. Returns a scalar."""
        first, second = embeddings
        all_first, all_second = first, second
        if self.gather_across_devices:
            all_first, all_second = all_gather_with_grad(first), all_gather_with_grad(second)
        scale = self.scale_module()
        targets = torch.arange(first.shape[0], device=first.device) + local_offset(first.shape[0])
        rows = self.similarity_fct(first, all_second) * scale  # my model1 rows vs every model2 row
        columns = (
            self.similarity_fct(all_first, second).transpose(0, 1) * scale
        )  # my model2 rows vs every model1 row
        return (F.cross_entropy(rows, targets) + F.cross_entropy(columns, targets)) / 2

    def forward(self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = sentence_features[0]
        embeddings = [self.model1(features)["sentence_embedding"], self.model(features)["sentence_embedding"]]
        return self.compute_loss_from_embeddings(embeddings)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": float(self.logit_scale.exp().item()),
            "similarity_fct": getattr(self.similarity_fct, "__name__", type(self.similarity_fct).__name__),
            "gather_across_devices": self.gather_across_devices,
        }

    def trainable_modules(self) -> list[nn.Module]:
        return [self.model1, self.scale_module]
