"""The shared core of GISTEmbedLoss and CachedGISTEmbedLoss: guide-filtered in-batch negatives.

For each anchor the candidates are (in this order) all positives of the global batch, all anchors
(``contrast_anchors``), all positives again as seen from the anchor's own positive (``contrast_positives``)
and every hard-negative column. A candidate is dropped (logit ``-inf``) when the *guide* model scores it
above the guide's anchor-positive similarity minus a margin, i.e. it is likely a false negative; the
anchor's own positive is never dropped. The loss is the cross-entropy of ``cos / temperature`` with the
own positive as the target.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from raystx.distributed import all_gather_no_grad, is_distributed
from raystx.losses._ranking_infonce import GlobalBatch, gather_columns
from raystx.util import batch_to_device, cos_sim

MARGIN_STRATEGIES = ("absolute", "relative")

GIST_CITATION = """
@misc{solatorio2024gistembed,
    title={GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding Fine-tuning},
    author={Aivin V. Solatorio},
    year={2024},
    eprint={2402.16829},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""


def gist_rows(
    batch: GlobalBatch,
    guide: GlobalBatch,
    rows: Tensor,
    temperature: float,
    margin_strategy: str,
    margin: float,
    contrast_anchors: bool,
    contrast_positives: bool,
) -> tuple[Tensor, Tensor]:
    """Per-anchor GIST loss for the global rows ``rows``, and how many negatives each anchor kept.

    ``batch`` holds the trained model's embeddings (with gradient), ``guide`` the guide model's embeddings
    of the same rows (no gradient), both as global batches with identical layout.
    """
    n = rows.shape[0]
    arange = torch.arange(n, device=rows.device)
    anchors, guide_anchors = batch.queries[rows], guide.queries[rows]

    guide_ap = cos_sim(guide_anchors, guide.docs[0])
    reference = guide_ap[arange, rows].unsqueeze(1)
    if margin_strategy == "absolute":
        threshold = reference - margin
    else:
        threshold = reference - reference.abs() * margin

    own_positive = torch.zeros_like(guide_ap, dtype=torch.bool)
    own_positive[arange, rows] = True

    def suppressed(scores: Tensor, guide_scores: Tensor, protect: Tensor | None = None) -> Tensor:
        drop = guide_scores > threshold
        if protect is not None:
            drop = drop & ~protect
        return scores.masked_fill(drop, float("-inf"))

    blocks = [suppressed(cos_sim(anchors, batch.docs[0]), guide_ap, own_positive)]
    if contrast_anchors:
        blocks.append(suppressed(cos_sim(anchors, batch.queries), cos_sim(guide_anchors, guide.queries)))
    if contrast_positives:
        blocks.append(
            suppressed(
                cos_sim(batch.docs[0][rows], batch.docs[0]), cos_sim(guide.docs[0][rows], guide.docs[0])
            )
        )
    for column, guide_column in zip(batch.docs[1:], guide.docs[1:]):
        blocks.append(suppressed(cos_sim(anchors, column), cos_sim(guide_anchors, guide_column)))

    logits = torch.cat(blocks, dim=1) / temperature
    per_row = torch.logsumexp(logits, dim=1) - logits[arange, rows]
    kept_negatives = torch.isfinite(logits).sum(dim=1) - 1
    return per_row, kept_negatives


class GuideMixin:
    """Holds the guide model and the GIST options; embeds feature dicts with the guide (no gradient)."""

    model: Any
    guide: Any
    temperature: float
    margin_strategy: str
    margin: float
    contrast_anchors: bool
    contrast_positives: bool
    gather_across_devices: bool
    last_num_negatives: float | None  # declared (with its meaning) on RaystxLoss

    def set_gist_options(
        self,
        guide: Any,
        temperature: float,
        margin_strategy: str,
        margin: float,
        contrast_anchors: bool,
        contrast_positives: bool,
        gather_across_devices: bool,
    ) -> None:
        """Validate and store the options; decide whether the guide needs its own tokenization."""
        if margin_strategy not in MARGIN_STRATEGIES:
            raise ValueError(f"margin_strategy must be one of {MARGIN_STRATEGIES}, got {margin_strategy!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        for name, module in (("model", self.model), ("guide", guide)):
            if getattr(module, "tokenizer", None) is None:
                raise ValueError(f"GIST needs a {name} with a tokenizer attribute")
        self.guide = guide
        self.temperature = temperature
        self.margin_strategy = margin_strategy
        self.margin = margin
        self.contrast_anchors = contrast_anchors
        self.contrast_positives = contrast_positives
        self.gather_across_devices = gather_across_devices
        model_len = getattr(self.model, "max_seq_length", None)
        guide_len = getattr(guide, "max_seq_length", None)
        self.must_retokenize = self.model.tokenizer.get_vocab() != guide.tokenizer.get_vocab() or (
            model_len is not None and guide_len is not None and guide_len < model_len
        )

    def guide_features(self, features: dict[str, Any]) -> dict[str, Any]:
        """Features for the guide: a shallow copy, or the decoded texts re-tokenized by the guide."""
        if not self.must_retokenize:
            return dict(features)
        texts = self.model.tokenizer.batch_decode(features["input_ids"], skip_special_tokens=True)
        return batch_to_device(self.guide.tokenize(texts), self.guide.device)

    @torch.no_grad()
    def guide_embed(self, features: dict[str, Any]) -> Tensor:
        return self.guide(features)["sentence_embedding"].detach()

    def gist_loss(self, embeddings: list[Tensor], guide_embeddings: list[Tensor] | None) -> Tensor:
        """Mean GIST loss of this rank's anchors from per-column model and guide embeddings.

        Sets ``last_num_negatives`` (mean number of negatives an anchor kept). Gradients reach the
        model embeddings through the autograd gather when ``gather_across_devices`` is on.
        """
        if guide_embeddings is None or len(guide_embeddings) != len(embeddings):
            raise ValueError(f"{type(self).__name__} needs guide_embeddings with one tensor per input column")
        batch = gather_columns(embeddings, self.gather_across_devices)
        shared = self.gather_across_devices and is_distributed()
        guide_columns = (
            [all_gather_no_grad(g) for g in guide_embeddings] if shared else list(guide_embeddings)
        )
        guide = GlobalBatch(guide_columns[0], guide_columns[1:], batch.offset, batch.local_size)
        per_row, kept = gist_rows(
            batch,
            guide,
            batch.local_rows(),
            self.temperature,
            self.margin_strategy,
            self.margin,
            self.contrast_anchors,
            self.contrast_positives,
        )
        self.last_num_negatives = float(kept.float().mean())
        return per_row.mean()

    def gist_config(self) -> dict[str, Any]:
        return {
            "guide": _guide_name(self.guide),
            "temperature": self.temperature,
            "margin_strategy": self.margin_strategy,
            "margin": self.margin,
            "contrast_anchors": self.contrast_anchors,
            "contrast_positives": self.contrast_positives,
            "gather_across_devices": self.gather_across_devices,
        }


def _guide_name(guide: Any) -> str:
    card = getattr(guide, "model_card_data", None)
    base_model = card.get("base_model") if callable(getattr(card, "get", None)) else None
    if base_model:
        return str(base_model)
    return type(guide).__name__
