"""CachedMultipleNegativesRankingLoss: MultipleNegativesRankingLoss with GradCache (batch-size-free memory)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from raystx.distributed import is_distributed, local_offset
from raystx.losses._cached_gradcache import GradCacheLoss, global_leaves, local_gradients
from raystx.losses._ranking_infonce import (
    GlobalBatch,
    InfoNCEOptionsMixin,
    gather_columns,
    num_negatives_per_anchor,
)
from raystx.losses.base import ColumnContract
from raystx.losses.multiple_negatives_ranking import Direction, HardnessMode
from raystx.util import cos_sim

GRADCACHE_CITATION = """
@misc{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""


class CachedMultipleNegativesRankingLoss(InfoNCEOptionsMixin, GradCacheLoss):
    """:class:`MultipleNegativesRankingLoss` computed with GradCache, so memory does not grow with the batch.

    The batch is embedded in mini-batches of ``mini_batch_size`` rows without a graph, the InfoNCE loss
    is computed and back-propagated to those cached embeddings (in chunks of ``mini_batch_size`` anchors),
    and when the trainer calls ``.backward()`` each mini-batch is embedded again with a graph (same
    dropout masks, thanks to the recorded RNG state) and receives its cached gradient. The value and the
    gradients equal those of :class:`MultipleNegativesRankingLoss` on the same batch; each mini-batch is
    embedded twice (about 20-40% slower).

    Args:
        model: the SentenceTransformer being trained.
        scale: multiplies the similarities (``scale = 1 / temperature``).
        similarity_fct: similarity function of two (n, d) and (m, d) tensors; ``cos_sim`` by default.
        mini_batch_size: rows per embedding mini-batch and per loss chunk; bounds the memory.
        mini_batch_num_tokens: if set, pack embedding mini-batches by non-padding token count instead.
        gather_across_devices: share candidates across workers. Default ``True``.
        directions: interaction terms, see :class:`MultipleNegativesRankingLoss`.
        partition_mode: ``"joint"`` or ``"per_direction"``, see :class:`MultipleNegativesRankingLoss`.
        show_progress_bar: accepted for compatibility (no progress bar is drawn).
        hardness_mode: hardness weighting of negatives, see :class:`MultipleNegativesRankingLoss`.
        hardness_strength: weight of the hardness penalty.

    Inputs:
        +-------------------------------------------------+--------+
        | Texts                                           | Labels |
        +=================================================+========+
        | (anchor, positive) pairs                        | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative) triplets           | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., negative_n) | none   |
        +-------------------------------------------------+--------+

    Example:
        ::

            from raystx.models import SentenceTransformer
            from raystx.losses import CachedMultipleNegativesRankingLoss

            model = SentenceTransformer("path/to/model")
            loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=16)
            anchors, positives = ["a cat sits"] * 64, ["a cat is sitting"] * 64
            value = loss([model.tokenize(anchors), model.tokenize(positives)], None)
            value.backward()  # re-embeds the mini-batches and fills the parameter gradients
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, None, "none")
    citation: ClassVar[str] = GRADCACHE_CITATION

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        gather_across_devices: bool = True,
        directions: Sequence[Direction] = ("query_to_doc",),
        partition_mode: Literal["joint", "per_direction"] = "joint",
        show_progress_bar: bool = False,
        hardness_mode: HardnessMode | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        super().__init__(model, mini_batch_size, mini_batch_num_tokens, show_progress_bar)
        self.set_infonce_options(
            scale,
            similarity_fct,
            gather_across_devices,
            directions,
            partition_mode,
            hardness_mode,
            hardness_strength,
        )

    def forward(self, sentence_features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) < 2:
            raise ValueError(
                f"Expected at least 2 input columns (anchor, positive), got {len(sentence_features)}"
            )
        return self.forward_cached(sentence_features, labels)

    def calculate_loss(
        self, reps: list[Tensor], labels: Tensor | None, with_backward: bool = False
    ) -> Tensor:
        """InfoNCE over the cached embeddings ``reps`` (one (B, d) leaf per column), in anchor chunks."""
        leaves = global_leaves(reps, self.gather_across_devices)
        local_size = reps[0].shape[0]
        shared = self.gather_across_devices and is_distributed()
        batch = GlobalBatch(
            queries=leaves[0],
            docs=leaves[1:],
            offset=local_offset(local_size) if shared else 0,
            local_size=local_size,
        )
        self.last_num_negatives = num_negatives_per_anchor(batch)
        rows = batch.local_rows()
        total = torch.zeros((), dtype=reps[0].dtype, device=reps[0].device)
        for begin in range(0, local_size, self.mini_batch_size):
            chunk = self.infonce(batch, rows[begin : begin + self.mini_batch_size]).sum() / local_size
            if with_backward:
                chunk.backward()
                chunk = chunk.detach()
            total = total + chunk
        if with_backward:
            local_gradients(reps, leaves, self.gather_across_devices)
        return total

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """Same value as :class:`MultipleNegativesRankingLoss` (no caching; for parity tests)."""
        batch = gather_columns(embeddings, self.gather_across_devices)
        self.last_num_negatives = num_negatives_per_anchor(batch)
        return self.infonce(batch, batch.local_rows()).mean()

    def get_config_dict(self) -> dict[str, Any]:
        config = self.infonce_config()
        config["mini_batch_size"] = self.mini_batch_size
        config["mini_batch_num_tokens"] = self.mini_batch_num_tokens
        return config
