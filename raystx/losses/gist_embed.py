"""GISTEmbedLoss: in-batch negatives filtered by a guide model (GISTEmbed)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from raystx.losses._ranking_gist import GIST_CITATION, GuideMixin
from raystx.losses.base import ColumnContract, RaystxLoss


class GISTEmbedLoss(GuideMixin, RaystxLoss):
    """Contrastive loss whose in-batch negatives are filtered by a guide model (GISTEmbed).

    Each anchor is scored (cosine / ``temperature``) against all positives of the global batch, all anchors
    (``contrast_anchors``), the positive-positive similarities (``contrast_positives``) and the hard
    negatives. Any candidate that the ``guide`` model finds more similar to the anchor than the anchor's own
    positive (minus a margin) is treated as a false negative and removed; the loss is the cross-entropy
    with the own positive as the target. With ``gather_across_devices=True`` (the raystx default) anchors
    and candidates of all workers are shared.

    Args:
        model: the SentenceTransformer being trained.
        guide: a SentenceTransformer used (without gradient) to find false negatives; its inputs are
            re-tokenized when its vocabulary or maximum length differs from the model's.
        temperature: divides the cosine similarities (inverse of MNRL's ``scale``).
        margin_strategy: ``"absolute"`` drops candidates with guide score ``> pos - margin``; ``"relative"``
            drops those with ``> pos - |pos| * margin``.
        margin: the margin of that rule (0 keeps everything scored below the own positive).
        contrast_anchors: also push anchors apart from the other anchors.
        contrast_positives: also push positives apart from the other positives.
        gather_across_devices: share anchors and candidates across workers. Default ``True``.

    After each call ``last_num_negatives`` holds the mean number of negatives an anchor kept.

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
            from raystx.losses import GISTEmbedLoss

            model = SentenceTransformer("path/to/model")
            guide = SentenceTransformer("path/to/guide")
            loss = GISTEmbedLoss(model, guide, temperature=0.01)
            value = loss([model.tokenize(["a cat sits"]), model.tokenize(["a cat is sitting"])], None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, None, "none")
    citation: ClassVar[str] = GIST_CITATION

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        temperature: float = 0.01,
        margin_strategy: Literal["absolute", "relative"] = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model)
        self.set_gist_options(
            guide,
            temperature,
            margin_strategy,
            margin,
            contrast_anchors,
            contrast_positives,
            gather_across_devices,
        )

    def forward(self, sentence_features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        guide_inputs = [self.guide_features(f) for f in sentence_features]
        embeddings = self.embed(sentence_features)
        guide_embeddings = [self.guide_embed(f) for f in guide_inputs]
        return self.compute_loss_from_embeddings(embeddings, labels, guide_embeddings=guide_embeddings)

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
        return self.gist_config()
