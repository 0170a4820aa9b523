"""GlobalOrthogonalRegularizationLoss: spread embeddings out (mean and second moment of pairwise similarity)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from raystx.distributed import all_gather_with_grad
from raystx.losses._ranking_infonce import similarity_name
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.util import cos_sim

CITATION = """
@misc{zhang2017learningspreadoutlocalfeature,
      title={Learning Spread-out Local Feature Descriptors},
      author={Xu Zhang and Felix X. Yu and Sanjiv Kumar and Shih-Fu Chang},
      year={2017},
      eprint={1708.06320},
      archivePrefix={arXiv},
      primaryClass={cs.CV},
      url={https://arxiv.org/abs/1708.06320},
}
"""


def gor_terms(
    embeddings: Tensor, similarity_fct: Callable[[Tensor, Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """``(M1**2, relu(M2 - 1/d))`` over the off-diagonal similarities of one (n, d) column.

    ``M1`` is the mean and ``M2`` the mean square of the ``n * (n - 1)`` off-diagonal entries (a batch of one
    row gives 0 for both).
    """
    n, dim = embeddings.shape
    sims = similarity_fct(embeddings, embeddings)
    sims = sims.masked_fill(torch.eye(n, dtype=torch.bool, device=sims.device), 0.0)
    pairs = max(n * (n - 1), 1)
    mean_term = (sims.sum() / pairs).pow(2)
    second_moment_term = torch.relu(sims.pow(2).sum() / pairs - 1.0 / dim)
    return mean_term, second_moment_term


class GlobalOrthogonalRegularizationLoss(RaystxLoss):
    """Regulariser that pushes the embeddings of each column to spread over the unit sphere.

    For each input column the pairwise similarities between different rows give two terms: the squared
    mean (``gor_mean``, pushes the average similarity to 0) and the excess of the mean square over ``1/d``
    (``gor_second_moment``). The terms are averaged (or summed) over columns, weighted, and returned as a
    dict of named components; a weight of ``0``/``None`` drops its term. With ``gather_across_devices=True``
    (raystx addition, default) every worker computes the terms over the global batch.

    Args:
        model: the SentenceTransformer being trained.
        similarity_fct: similarity of two (n, d) and (m, d) tensors; ``cos_sim`` by default.
        mean_weight: weight of the mean term (``None``/``0`` disables it).
        second_moment_weight: weight of the second-moment term (``None``/``0`` disables it).
        aggregation: ``"mean"`` or ``"sum"`` over input columns.
        gather_across_devices: compute over the global batch. Default ``True``.

    Inputs:
        +--------+--------+
        | Texts  | Labels |
        +========+========+
        | any    | none   |
        +--------+--------+

    Example:
        ::

            from raystx.models import SentenceTransformer
            from raystx.losses import GlobalOrthogonalRegularizationLoss

            model = SentenceTransformer("path/to/model")
            loss = GlobalOrthogonalRegularizationLoss(model, mean_weight=0.0, aggregation="sum")
            parts = loss([model.tokenize(["a cat", "a dog", "a car"])], None)
            sum(parts.values()).backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(1, None, "none")
    citation: ClassVar[str] = CITATION

    def __init__(
        self,
        model: nn.Module,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        mean_weight: float | None = 1.0,
        second_moment_weight: float | None = 1.0,
        aggregation: Literal["mean", "sum"] = "mean",
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__(model)
        if not mean_weight and not second_moment_weight:
            raise ValueError("At least one of mean_weight or second_moment_weight must be non-zero")
        if aggregation not in ("mean", "sum"):
            raise ValueError(f"aggregation must be 'mean' or 'sum', got {aggregation!r}")
        self.similarity_fct = similarity_fct
        self.mean_weight = mean_weight
        self.second_moment_weight = second_moment_weight
        self.aggregation = aggregation
        self.gather_across_devices = gather_across_devices

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``{"gor_mean": ..., "gor_second_moment": ...}`` (enabled terms only) for the per-column embeddings."""
        if self.gather_across_devices:
            embeddings = [all_gather_with_grad(e) for e in embeddings]
        means, second_moments = zip(*(gor_terms(e, self.similarity_fct) for e in embeddings))

        def combine(terms: tuple[Tensor, ...]) -> Tensor:
            stacked = torch.stack(terms)
            return stacked.sum() if self.aggregation == "sum" else stacked.mean()

        out: dict[str, Tensor] = {}
        if self.mean_weight:
            out["gor_mean"] = self.mean_weight * combine(means)
        if self.second_moment_weight:
            out["gor_second_moment"] = self.second_moment_weight * combine(second_moments)
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "similarity_fct": similarity_name(self.similarity_fct),
            "mean_weight": self.mean_weight,
            "second_moment_weight": self.second_moment_weight,
            "aggregation": self.aggregation,
        }
