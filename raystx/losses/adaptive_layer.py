"""AdaptiveLayerLoss: make the outputs of earlier transformer layers usable embeddings too."""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raystx.losses._ranking_wrappers import LossValue, add_weighted, patched_forward, unwrap_model
from raystx.losses.base import ColumnContract, RaystxLoss

CITATION = """
@misc{li20242d,
    title={2D Matryoshka Sentence Embeddings},
    author={Xianming Li and Zongxi Li and Jing Li and Haoran Xie and Qing Li},
    year={2024},
    eprint={2402.14776},
    archivePrefix={arXiv},
    primaryClass={cs.CL}
}
"""

LayerWeighting = Literal["uniform", "log", "linear"] | Callable[[int], float]


class _LayerOutputs:
    """Stands in for the first module's (Transformer) forward during one AdaptiveLayerLoss call.

    With ``layer is None`` it runs the real forward with ``output_hidden_states`` switched on, which leaves
    every layer's token embeddings in ``features["all_layer_embeddings"]``. With ``layer = i`` it returns a
    copy of the features whose ``token_embeddings`` are layer ``i``'s, without running the transformer.
    """

    def __init__(self, transformer: nn.Module, forward: Callable[..., dict[str, Any]]) -> None:
        self.transformer = transformer
        self.forward = forward
        self.layer: int | None = None
        self.num_layers = 0

    def __call__(self, features: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.layer is not None:
            return {**features, "token_embeddings": features["all_layer_embeddings"][self.layer]}
        config = self.transformer.auto_model.config
        previous = config.output_hidden_states
        config.output_hidden_states = True
        try:
            output = self.forward(features, *args, **kwargs)
        finally:
            config.output_hidden_states = previous
        self.num_layers = len(output["all_layer_embeddings"])
        return output


class _EmbeddingRecorder:
    """Stands in for ``model.forward``: runs it and keeps each ``sentence_embedding`` it returns."""

    def __init__(self, forward: Callable[..., dict[str, Any]]) -> None:
        self.forward = forward
        self.embeddings: list[Tensor] = []

    def __call__(self, features: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        output = self.forward(features, *args, **kwargs)
        self.embeddings.append(output["sentence_embedding"])
        return output

    def take(self) -> Tensor:
        """All embeddings recorded since the last call, concatenated along rows."""
        out = torch.cat(self.embeddings, dim=0)
        self.embeddings = []
        return out


class AdaptiveLayerLoss(RaystxLoss):
    """Apply a loss to the final layer and to sampled earlier layers, with self-distillation (2DMSE).

    The wrapped ``loss`` runs normally (final layer, weight ``last_layer_weight``); then for
    ``n_layers_per_step`` randomly chosen earlier layers (index 0 is the embedding layer) the same loss is
    computed on embeddings pooled from that layer's token embeddings (no extra transformer pass), weighted by
    ``layer_weighting`` and ``prior_layers_weight`` and averaged over the sampled layers. A KL term
    (temperature ``kl_temperature``, weight ``kl_div_weight``) pulls each earlier layer's embedding
    distribution towards the final layer's (which is not trained by it). The model's first module must be a
    ``Transformer``. Cached (GradCache) losses cannot be wrapped.

    Args:
        model: the SentenceTransformer being trained.
        loss: the loss to wrap, e.g. :class:`MultipleNegativesRankingLoss`.
        n_layers_per_step: earlier layers sampled per step (-1: all).
        last_layer_weight: weight of the final layer's loss.
        prior_layers_weight: weight of the earlier layers' (averaged) loss.
        kl_div_weight: weight of the KL self-distillation term.
        kl_temperature: temperature of the KL term (0 disables it).
        layer_weighting: ``"uniform"``, ``"log"`` (``1 / (1 + ln(1 + i))``), ``"linear"`` (``1 / (1 + i)``)
            or a callable ``layer index -> weight`` for the earlier layers' losses.

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
            from raystx.losses import AdaptiveLayerLoss, MultipleNegativesRankingLoss

            model = SentenceTransformer("path/to/model")
            loss = AdaptiveLayerLoss(model, MultipleNegativesRankingLoss(model), n_layers_per_step=1)
            value = loss([model.tokenize(["a cat sits"]), model.tokenize(["a cat is sitting"])], None)
            value.backward()
    """

    contract: ClassVar[ColumnContract] = ColumnContract(1, None, "none")
    citation: ClassVar[str] = CITATION

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        n_layers_per_step: int = 1,
        last_layer_weight: float = 1.0,
        prior_layers_weight: float = 1.0,
        kl_div_weight: float = 1.0,
        kl_temperature: float = 0.3,
        layer_weighting: LayerWeighting = "uniform",
    ) -> None:
        super().__init__(model)
        if not callable(layer_weighting) and layer_weighting not in ("uniform", "log", "linear"):
            raise ValueError(
                f"layer_weighting must be 'uniform', 'log', 'linear' or a callable, got {layer_weighting!r}"
            )
        first = unwrap_model(model)[0]
        if not hasattr(first, "auto_model"):
            raise ValueError("AdaptiveLayerLoss needs a model whose first module is a Transformer")
        if getattr(loss, "uses_gradient_cache", False):
            warnings.warn(
                f"AdaptiveLayerLoss is not compatible with {type(loss).__name__}, which back-propagates "
                "from a hook after the layer patch is removed",
                stacklevel=2,
            )
        self.loss = loss
        self.adopt_contracts(loss)
        self.n_layers_per_step = n_layers_per_step
        self.last_layer_weight = last_layer_weight
        self.prior_layers_weight = prior_layers_weight
        self.kl_div_weight = kl_div_weight
        self.kl_temperature = kl_temperature
        self.layer_weighting = layer_weighting

    def get_layer_weight(self, layer_idx: int) -> float:
        """Weight of the loss at earlier layer ``layer_idx`` (0 = embedding layer output)."""
        if callable(self.layer_weighting):
            return float(self.layer_weighting(layer_idx))
        if self.layer_weighting == "log":
            return 1.0 / (1.0 + math.log(1 + layer_idx))
        if self.layer_weighting == "linear":
            return 1.0 / (1 + layer_idx)
        return 1.0

    def _sample_layers(self, num_prior: int) -> list[int]:
        layers = list(range(num_prior))
        if 0 < self.n_layers_per_step < num_prior:
            layers = random.sample(layers, self.n_layers_per_step)
        return layers

    def _kl(self, embeddings: Tensor, teacher: Tensor) -> Tensor:
        log_probs = F.log_softmax(embeddings / self.kl_temperature, dim=-1)
        return F.kl_div(log_probs, teacher, reduction="batchmean") * self.kl_temperature * self.kl_div_weight

    def forward(self, sentence_features: list[dict[str, Any]], labels: Tensor | None = None) -> LossValue:
        model = unwrap_model(self.model)
        transformer = model[0]
        layer_outputs = _LayerOutputs(transformer, transformer.forward)
        recorder = _EmbeddingRecorder(model.forward)
        with patched_forward(transformer, layer_outputs), patched_forward(model, recorder):
            total = add_weighted(None, self.loss(sentence_features, labels), self.last_layer_weight)
            teacher = None
            if self.kl_temperature > 0:
                teacher = F.softmax(recorder.take() / self.kl_temperature, dim=-1).detach()
            layers = self._sample_layers(layer_outputs.num_layers - 1)
            for layer in layers:
                layer_outputs.layer = layer
                weight = self.get_layer_weight(layer) / len(layers) * self.prior_layers_weight
                total = add_weighted(total, self.loss(sentence_features, labels), weight)
                if teacher is not None:
                    kl = self._kl(recorder.take(), teacher)
                    total = add_weighted(
                        total, {"adaptive_layer_kl": kl} if isinstance(total, dict) else kl, 1.0
                    )
                else:
                    recorder.embeddings = []
        return total

    def trainable_modules(self) -> list[nn.Module]:
        inner = getattr(self.loss, "trainable_modules", None)
        return inner() if callable(inner) else []

    def get_config_dict(self) -> dict[str, Any]:
        weighting = self.layer_weighting
        if not isinstance(weighting, str):
            weighting = getattr(weighting, "__name__", "custom")
        return {
            "loss": type(self.loss).__name__,
            "n_layers_per_step": self.n_layers_per_step,
            "last_layer_weight": self.last_layer_weight,
            "prior_layers_weight": self.prior_layers_weight,
            "kl_div_weight": self.kl_div_weight,
            "kl_temperature": self.kl_temperature,
            "layer_weighting": weighting,
        }
