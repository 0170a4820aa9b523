"""MegaBatchMarginLoss: margin loss against the hardest in-batch negative (ParaNMT), optionally GradCache'd."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raystx.distributed import is_distributed, local_offset
from raystx.losses._cached_gradcache import GradCacheLoss, global_leaves, local_gradients
from raystx.losses._ranking_infonce import GlobalBatch, gather_columns
from raystx.losses.base import ColumnContract
from raystx.util import cos_sim

CITATION = """
@inproceedings{wieting-gimpel-2018-paranmt,
    title = "{P}ara{NMT}-50{M}: Pushing the Limits of Paraphrastic Sentence Embeddings with Millions of Machine Translations",
    author = "Wieting, John and Gimpel, Kevin",
    booktitle = "Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics (Volume 1: Long Papers)",
    year = "2018",
    address = "Melbourne, Australia",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/P18-1042",
    pages = "451--462",
}
"""


def margin_rows(batch: GlobalBatch, rows: Tensor, positive_margin: float, negative_margin: float) -> Tensor:
    """Per-anchor ``relu(pm - cos(a, p)) + relu(max_{j != i} cos(a, p_j) - nm)`` for the global rows ``rows``."""
    arange = torch.arange(rows.shape[0], device=rows.device)
    scores = cos_sim(batch.queries[rows], batch.docs[0])
    positive = scores[arange, rows]
    own = torch.zeros_like(scores, dtype=torch.bool)
    own[arange, rows] = True
    hardest_negative = scores.masked_fill(own, float("-inf")).max(dim=1).values
    return F.relu(positive_margin - positive) + F.relu(hardest_negative - negative_margin)


class MegaBatchMarginLoss(GradCacheLoss):
    """Margin loss with the hardest negative mined from the other positives of the (global) batch.

    For anchor ``i`` with positive ``p_i`` the hardest negative is the most similar positive of another
    row; the loss is ``relu(positive_margin - cos(a_i, p_i)) + relu(cos(a_i, p_hard) - negative_margin)``,
    averaged over anchors. Large batches give harder negatives: ``use_mini_batched_version=True`` (the
    default) embeds with GradCache so memory does not grow with the batch; the result is the same. With
    ``gather_across_devices=True`` (raystx addition, default) negatives are mined across all workers.

    Args:
        model: the SentenceTransformer being trained.
        positive_margin: ``cos(anchor, positive)`` should exceed it.
        negative_margin: ``cos(anchor, hardest negative)`` should stay below it.
        use_mini_batched_version: embed with GradCache in mini-batches (same loss and gradient).
        mini_batch_size: rows per embedding mini-batch and per loss chunk.
        mini_batch_num_tokens: if set, pack embedding mini-batches by non-padding token count instead.
        show_progress_bar: accepted for compatibility (no progress bar is drawn).
        gather_across_devices: mine negatives across workers. Default ``True``.

    Inputs:
        +---------------------------------------+--------+
        | Texts                                 | Labels |
        +=======================================+========+
        | (anchor, positive) pairs              | none   |
        +---------------------------------------+--------+

    Example:
        ::

            from raystx.models import SentenceTransformer
            from raystx.losses import MegaBatchMarginLoss

            model = SentenceTransformer("path/to/model")
            loss = MegaBatchMarginLoss(model, mini_batch_size=32)
            anchors = [f"sentence number {i}" for i in range(256)]
            positives = [f"this is sentence {i}" for i in range(256)]
            value = loss([model.tokenize(anchors), model.tokenize(positives)], None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "none")
    citation: ClassVar[str] = CITATION

    def __init__(
        self,
        model: nn.Module,
        positive_margin: float = 0.8,
        negative_margin: float = 0.3,
        use_mini_batched_version: bool = True,
        mini_batch_size: int = 50,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model, mini_batch_size, mini_batch_num_tokens, show_progress_bar)
        self.positive_margin = positive_margin
        self.negative_margin = negative_margin
        self.use_mini_batched_version = use_mini_batched_version
        self.uses_gradient_cache = use_mini_batched_version
        self.gather_across_devices = gather_across_devices

    def forward(self, sentence_features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) != 2:
            raise ValueError(
                f"MegaBatchMarginLoss expects exactly 2 input columns (anchor, positive), got "
                f"{len(sentence_features)}; it mines negatives from the other rows' positives"
            )
        if self.use_mini_batched_version:
            return self.forward_cached(sentence_features, labels)
        return self.compute_loss_from_embeddings(self.embed(sentence_features), labels)

    def calculate_loss(
        self, reps: list[Tensor], labels: Tensor | None, with_backward: bool = False
    ) -> Tensor:
        """The loss over cached (anchor, positive) embeddings, in chunks of ``mini_batch_size`` anchors."""
        leaves = global_leaves(reps, self.gather_across_devices)
        local_size = reps[0].shape[0]
        shared = self.gather_across_devices and is_distributed()
        batch = GlobalBatch(leaves[0], leaves[1:], local_offset(local_size) if shared else 0, local_size)
        rows = batch.local_rows()
        total = torch.zeros((), dtype=reps[0].dtype, device=reps[0].device)
        for begin in range(0, local_size, self.mini_batch_size):
            chunk_rows = rows[begin : begin + self.mini_batch_size]
            chunk = (
                margin_rows(batch, chunk_rows, self.positive_margin, self.negative_margin).sum() / local_size
            )
            if with_backward:
                chunk.backward()
                chunk = chunk.detach()
            total = total + chunk
        if with_backward:
            local_gradients(reps, leaves, self.gather_across_devices)
        return total

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """Mean margin loss of this rank's anchors; ``embeddings`` = [anchor, positive]."""
        if len(embeddings) != 2:
            raise ValueError(f"MegaBatchMarginLoss expects 2 embedding columns, got {len(embeddings)}")
        batch = gather_columns(embeddings, self.gather_across_devices)
        return margin_rows(batch, batch.local_rows(), self.positive_margin, self.negative_margin).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "positive_margin": self.positive_margin,
            "negative_margin": self.negative_margin,
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
        }
