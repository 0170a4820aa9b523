"""MultipleNegativesRankingLoss (InfoNCE with in-batch negatives) spanning the global batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from raystx.losses._ranking_infonce import InfoNCEOptionsMixin, gather_columns, num_negatives_per_anchor
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.util import cos_sim

Direction = Literal["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"]
HardnessMode = Literal["in_batch_negatives", "hard_negatives", "all_negatives"]

INFONCE_CITATION = """
@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019},
      eprint={1807.03748},
      archivePrefix={arXiv},
      primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}
"""


class MultipleNegativesRankingLoss(InfoNCEOptionsMixin, RaystxLoss):
    """Contrastive ranking loss: each anchor must score its own positive above every other candidate.

    For anchor ``i`` the candidates are the positives of all rows of the global batch plus every hard
    negative column (``negative_1 .. negative_n``) of all rows. The loss is the cross-entropy of the scaled
    similarities with the own positive as the target (InfoNCE). With ``gather_across_devices=True`` (the
    raystx default) the candidates come from every Ray Train worker, so 2 workers x 16 rows behave like one
    worker with 32 rows; each worker scores only its own anchors.

    Args:
        model: the SentenceTransformer being trained.
        scale: multiplies the similarities (``scale = 1 / temperature``).
        similarity_fct: similarity function of two (n, d) and (m, d) tensors; ``cos_sim`` by default.
        gather_across_devices: share candidates across workers (gather with gradient). Default ``True``.
        directions: which interaction terms join the softmax: ``query_to_doc`` (required), ``query_to_query``,
            ``doc_to_query`` (symmetric term), ``doc_to_doc`` (other rows' documents).
        partition_mode: ``"joint"`` (one softmax over all directions) or ``"per_direction"`` (one log-sum-exp
            per direction, averaged; only for ``query_to_doc``/``doc_to_query``).
        hardness_mode: add ``hardness_strength * stop_grad(sim)`` to the logits of the in-batch negatives
            (``"in_batch_negatives"``), the explicit hard negatives (``"hard_negatives"``) or both
            (``"all_negatives"``); ``None`` turns it off.
        hardness_strength: the weight of that penalty (non-negative).

    After each call ``last_num_negatives`` holds how many negatives every anchor was scored against.

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
            from raystx.losses import MultipleNegativesRankingLoss

            model = SentenceTransformer("path/to/model")
            loss = MultipleNegativesRankingLoss(model, scale=20.0)
            features = [model.tokenize(["a cat sits"]), model.tokenize(["a cat is sitting"])]
            value = loss(features, None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, None, "none")
    citation: ClassVar[str] = INFONCE_CITATION

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        gather_across_devices: bool = True,
        directions: Sequence[Direction] = ("query_to_doc",),
        partition_mode: Literal["joint", "per_direction"] = "joint",
        hardness_mode: HardnessMode | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        super().__init__(model)
        self.set_infonce_options(
            scale,
            similarity_fct,
            gather_across_devices,
            directions,
            partition_mode,
            hardness_mode,
            hardness_strength,
        )

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """Mean InfoNCE loss of this rank's anchors; ``embeddings`` = [anchor, positive, negative_1, ...]."""
        batch = gather_columns(embeddings, self.gather_across_devices)
        self.last_num_negatives = num_negatives_per_anchor(batch)
        return self.infonce(batch, batch.local_rows()).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return self.infonce_config()
