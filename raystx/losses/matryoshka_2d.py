"""Matryoshka2dLoss: AdaptiveLayerLoss over a MatryoshkaLoss (fewer layers x fewer dimensions, 2DMSE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import nn

from raystx.losses.adaptive_layer import CITATION, AdaptiveLayerLoss, LayerWeighting
from raystx.losses.base import ColumnContract
from raystx.losses.matryoshka import MatryoshkaLoss


class Matryoshka2dLoss(AdaptiveLayerLoss):
    """2D Matryoshka: train embeddings that work with fewer layers *and* fewer dimensions.

    Shorthand for ``AdaptiveLayerLoss(model, MatryoshkaLoss(model, loss, matryoshka_dims, ...), ...)``: at each
    step the wrapped loss is computed at the final layer and at ``n_layers_per_step`` sampled earlier layers,
    each time at ``n_dims_per_step`` sampled Matryoshka dimensions.

    Args:
        model: the SentenceTransformer being trained.
        loss: the loss to wrap, e.g. :class:`MultipleNegativesRankingLoss` (not a cached loss).
        matryoshka_dims: embedding dimensions to train.
        matryoshka_weights: one weight per dimension (default: all 1).
        n_layers_per_step: earlier layers sampled per step (-1: all).
        n_dims_per_step: dimensions sampled per step (-1: all).
        last_layer_weight: weight of the final layer's loss.
        prior_layers_weight: weight of the earlier layers' loss.
        kl_div_weight: weight of the KL self-distillation term.
        kl_temperature: temperature of the KL term (0 disables it).
        layer_weighting: ``"uniform"``, ``"log"``, ``"linear"`` or a callable, see :class:`AdaptiveLayerLoss`.

    Inputs:
        +--------+--------+
        | Texts  | Labels |
        +========+========+
        | any    | any    |
        +--------+--------+

    The accepted inputs and labels are those of the wrapped loss (``contract`` is taken from it).

    Example:
        ::

            from raystx.models import SentenceTransformer
            from raystx.losses import Matryoshka2dLoss, MultipleNegativesRankingLoss

            model = SentenceTransformer("path/to/model")
            loss = Matryoshka2dLoss(model, MultipleNegativesRankingLoss(model), [768, 512, 256, 128, 64])
            value = loss([model.tokenize(["a cat sits"]), model.tokenize(["a cat is sitting"])], None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(1, None, "none")
    citation: ClassVar[str] = CITATION

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_layers_per_step: int = 1,
        n_dims_per_step: int = 1,
        last_layer_weight: float = 1.0,
        prior_layers_weight: float = 1.0,
        kl_div_weight: float = 1.0,
        kl_temperature: float = 0.3,
        layer_weighting: LayerWeighting = "uniform",
    ) -> None:
        matryoshka = MatryoshkaLoss(
            model,
            loss,
            matryoshka_dims,
            matryoshka_weights=matryoshka_weights,
            n_dims_per_step=n_dims_per_step,
        )
        super().__init__(
            model,
            matryoshka,
            n_layers_per_step=n_layers_per_step,
            last_layer_weight=last_layer_weight,
            prior_layers_weight=prior_layers_weight,
            kl_div_weight=kl_div_weight,
            kl_temperature=kl_temperature,
            layer_weighting=layer_weighting,
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), **self.loss.get_config_dict()}
