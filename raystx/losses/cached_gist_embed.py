"""CachedGISTEmbedLoss: GISTEmbedLoss with GradCache (memory independent of the batch size)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from raystx.distributed import all_gather_no_grad, is_distributed, local_offset
from raystx.losses._cached_gradcache import GradCacheLoss, global_leaves, local_gradients
from raystx.losses._ranking_gist import GIST_CITATION, GuideMixin, gist_rows
from raystx.losses._ranking_infonce import GlobalBatch
from raystx.losses.base import ColumnContract


class CachedGISTEmbedLoss(GuideMixin, GradCacheLoss):
    """:class:`GISTEmbedLoss` computed with GradCache: embed in mini-batches, cache gradients, replay.

    Step 1 embeds every mini-batch with the model (no graph) and with the guide; the GIST loss is then
    computed on the cached embeddings in chunks of ``mini_batch_size`` anchors and back-propagated to them;
    ``.backward()`` on the returned loss re-embeds each mini-batch with a graph (same RNG state) and
    injects the cached gradient. Value and gradients equal :class:`GISTEmbedLoss` on the same batch.

    Args:
        model: the SentenceTransformer being trained.
        guide: a SentenceTransformer used (without gradient) to find false negatives.
        temperature: divides the cosine similarities.
        mini_batch_size: rows per embedding mini-batch and per loss chunk; bounds the memory.
        mini_batch_num_tokens: if set, pack embedding mini-batches by non-padding token count instead.
        show_progress_bar: accepted for compatibility (no progress bar is drawn).
        margin_strategy: ``"absolute"`` or ``"relative"`` false-negative rule, see :class:`GISTEmbedLoss`.
        margin: the margin of that rule.
        contrast_anchors: also push anchors apart from the other anchors.
        contrast_positives: also push positives apart from the other positives.
        gather_across_devices: share anchors and candidates across workers. Default ``True``.

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
            from raystx.losses import CachedGISTEmbedLoss

            model = SentenceTransformer("path/to/model")
            guide = SentenceTransformer("path/to/guide")
            loss = CachedGISTEmbedLoss(model, guide, mini_batch_size=16)
            value = loss([model.tokenize(["a cat sits"] * 64), model.tokenize(["a cat is sitting"] * 64)], None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, None, "none")
    citation: ClassVar[str] = GIST_CITATION

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        temperature: float = 0.01,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
        margin_strategy: Literal["absolute", "relative"] = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model, mini_batch_size, mini_batch_num_tokens, show_progress_bar)
        self.set_gist_options(
            guide,
            temperature,
            margin_strategy,
            margin,
            contrast_anchors,
            contrast_positives,
            gather_across_devices,
        )
        self._guide_parts: list[list[Tensor]] = []

    def forward(self, sentence_features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) < 2:
            raise ValueError(
                f"Expected at least 2 input columns (anchor, positive), got {len(sentence_features)}"
            )
        return self.forward_cached(sentence_features, labels)

    def begin_first_pass(self, num_columns: int) -> None:
        self._guide_parts = [[] for _ in range(num_columns)]

    def on_first_pass_minibatch(self, column: int, features: dict[str, Any]) -> None:
        self._guide_parts[column].append(self.guide_embed(self.guide_features(features)))

    def _run(self, reps: list[Tensor], guide_reps: list[Tensor], with_backward: bool) -> Tensor:
        leaves = global_leaves(reps, self.gather_across_devices)
        local_size = reps[0].shape[0]
        shared = self.gather_across_devices and is_distributed()
        guide_columns = [all_gather_no_grad(g) for g in guide_reps] if shared else list(guide_reps)
        offset = local_offset(local_size) if shared else 0
        batch = GlobalBatch(leaves[0], leaves[1:], offset, local_size)
        guide = GlobalBatch(guide_columns[0], guide_columns[1:], offset, local_size)
        rows = batch.local_rows()
        total = torch.zeros((), dtype=reps[0].dtype, device=reps[0].device)
        kept_total = 0.0
        for begin in range(0, local_size, self.mini_batch_size):
            per_row, kept = gist_rows(
                batch,
                guide,
                rows[begin : begin + self.mini_batch_size],
                self.temperature,
                self.margin_strategy,
                self.margin,
                self.contrast_anchors,
                self.contrast_positives,
            )
            chunk = per_row.sum() / local_size
            kept_total += float(kept.sum())
            if with_backward:
                chunk.backward()
                chunk = chunk.detach()
            total = total + chunk
        self.last_num_negatives = kept_total / local_size
        if with_backward:
            local_gradients(reps, leaves, self.gather_across_devices)
        return total

    def calculate_loss(
        self, reps: list[Tensor], labels: Tensor | None, with_backward: bool = False
    ) -> Tensor:
        """GIST loss over the cached model embeddings ``reps`` and the guide embeddings of step 1."""
        guide_reps = [torch.cat(parts) for parts in self._guide_parts]
        return self._run(reps, guide_reps, with_backward)

    def compute_loss_from_embeddings(
        self,
        embeddings: list[Tensor],
        labels: Tensor | None = None,
        guide_embeddings: list[Tensor] | None = None,
    ) -> Tensor:
        """Mean GIST loss of this rank's anchors (no caching).

        ``embeddings``: [anchor, positive, negative_1, ...] from the model; ``guide_embeddings``: the same
        columns embedded by the guide (required).
        """
        return self.gist_loss(embeddings, guide_embeddings)

    def get_config_dict(self) -> dict[str, Any]:
        config = self.gist_config()
        config["mini_batch_size"] = self.mini_batch_size
        config["mini_batch_num_tokens"] = self.mini_batch_num_tokens
        return config
