"""MatryoshkaLoss: apply a loss to several prefixes (dimensions) of the embedding at once."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from raystx.losses._ranking_wrappers import LossValue, add_weighted, patched_forward, unwrap_model
from raystx.losses.base import ColumnContract, RaystxLoss

logger = logging.getLogger(__name__)

CITATION = """
@misc{kusupati2024matryoshka,
    title={Matryoshka Representation Learning},
    author={Aditya Kusupati and Gantavya Bhatt and Aniket Rege and Matthew Wallingford and Aditya Sinha and Vivek Ramanujan and William Howard-Snyder and Kaifeng Chen and Sham Kakade and Prateek Jain and Ali Farhadi},
    year={2024},
    eprint={2205.13147},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""


def shrink(embeddings: Tensor, dim: int) -> Tensor:
    """The first ``dim`` features of each row, L2-normalised."""
    if dim > embeddings.shape[-1]:
        raise ValueError(f"Matryoshka dimension {dim} exceeds the embedding dimension {embeddings.shape[-1]}")
    return F.normalize(embeddings[..., :dim], p=2, dim=-1)


class _PrefixForward:
    """Stands in for ``model.forward`` during one MatryoshkaLoss call.

    The first pass (largest selected dimension) runs the real forward and records each output; later
    passes replay the recorded outputs (matched by call order and by the feature dict they were computed
    for) so the model runs once per column whatever the number of dimensions. Every pass returns a copy
    of the output whose ``sentence_embedding`` is shrunk to the current dimension.
    """

    def __init__(self, forward: Callable[..., dict[str, Any]]) -> None:
        self.forward = forward
        self.records: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.dim = 0
        self.recording = True
        self.position = 0

    def start_pass(self, dim: int, first: bool) -> None:
        self.dim, self.recording, self.position = dim, first, 0

    def __call__(self, features: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        output = None
        if not self.recording and self.position < len(self.records):
            seen_features, seen_output = self.records[self.position]
            if seen_features is features:
                output = seen_output
        if output is None:
            output = self.forward(features, *args, **kwargs)
            if self.recording:
                self.records.append((features, output))
        self.position += 1
        return {**output, "sentence_embedding": shrink(output["sentence_embedding"], self.dim)}


class _MatryoshkaCalculateLoss:
    """Wraps a cached loss's ``calculate_loss``: evaluate it on shrunk cached embeddings per dimension.

    With ``with_backward`` each dimension's inner loss back-propagates into detached shrunk copies; that
    gradient is then pushed through the shrink (times the dimension's weight) into the full cached
    embeddings, so the GradCache replay sees the summed gradient of all dimensions.
    """

    def __init__(self, owner: MatryoshkaLoss, inner: Callable[..., Tensor]) -> None:
        self.owner = owner
        self.inner = inner

    def __call__(self, reps: list[Tensor], labels: Tensor | None, with_backward: bool = False) -> Tensor:
        total = None
        for dim, weight in self.owner.selected_dims():
            shrunk = [shrink(r, dim) for r in reps]
            inputs = [s.detach().requires_grad_() for s in shrunk] if with_backward else shrunk
            total = add_weighted(total, self.inner(inputs, labels, with_backward=with_backward), weight)
            if with_backward:
                for full, leaf in zip(shrunk, inputs):
                    if leaf.grad is not None:
                        full.backward(weight * leaf.grad)
        return total  # type: ignore[return-value]


class MatryoshkaLoss(RaystxLoss):
    """Train embeddings whose prefixes are good embeddings too (Matryoshka Representation Learning).

    The wrapped ``loss`` is evaluated on the first ``d`` dimensions (re-normalised) of the embeddings for
    every ``d`` in ``matryoshka_dims``, and the weighted losses are summed. The model runs once per
    column: the embeddings are computed for the largest dimension and re-used for the smaller ones.
    Cached (GradCache) losses are supported too: their cached embeddings are shrunk instead.
    Labels that look like teacher embeddings (last dimension = model dimension) are truncated likewise.

    Args:
        model: the SentenceTransformer being trained.
        loss: the loss to wrap, e.g. :class:`MultipleNegativesRankingLoss` or :class:`CoSENTLoss`.
        matryoshka_dims: embedding dimensions to train, e.g. ``[768, 512, 256, 128, 64]``.
        matryoshka_weights: one weight per dimension (default: all 1).
        n_dims_per_step: if > 0, a random subset of this many dimensions per step (default -1: all).

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
            from raystx.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

            model = SentenceTransformer("path/to/model")
            loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), [768, 512, 256, 128, 64])
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
        n_dims_per_step: int = -1,
    ) -> None:
        super().__init__(model)
        self.loss = loss
        self.adopt_contracts(loss)
        if not matryoshka_dims:
            raise ValueError("matryoshka_dims must name at least one dimension")
        if any(d <= 0 for d in matryoshka_dims):
            raise ValueError(f"matryoshka_dims must be positive, got {list(matryoshka_dims)}")
        if matryoshka_weights is None:
            matryoshka_weights = [1] * len(matryoshka_dims)
        elif len(matryoshka_weights) != len(matryoshka_dims):
            raise ValueError("matryoshka_weights must have one weight per entry of matryoshka_dims")
        model_dim = _embedding_dimension(model)
        if model_dim is not None:
            if any(d > model_dim for d in matryoshka_dims):
                raise ValueError(
                    f"matryoshka_dims {list(matryoshka_dims)} exceed the model dimension {model_dim}"
                )
            if model_dim not in matryoshka_dims:
                logger.warning(
                    "The model dimension %d is not in matryoshka_dims %s: the full embedding is not trained",
                    model_dim,
                    list(matryoshka_dims),
                )
        pairs = sorted(zip(matryoshka_dims, matryoshka_weights), key=lambda pair: pair[0], reverse=True)
        self.matryoshka_dims: tuple[int, ...] = tuple(d for d, _ in pairs)
        self.matryoshka_weights: tuple[float, ...] = tuple(w for _, w in pairs)
        self.n_dims_per_step = n_dims_per_step
        self.uses_gradient_cache = bool(getattr(loss, "uses_gradient_cache", False))
        if self.uses_gradient_cache:
            loss.wrap_calculate_loss(lambda inner: _MatryoshkaCalculateLoss(self, inner))

    def selected_dims(self) -> list[tuple[int, float]]:
        """The ``(dim, weight)`` pairs used this step, largest dimension first."""
        indices = list(range(len(self.matryoshka_dims)))
        if 0 < self.n_dims_per_step < len(indices):
            indices = sorted(random.sample(indices, self.n_dims_per_step))
        return [(self.matryoshka_dims[i], self.matryoshka_weights[i]) for i in indices]

    def _labels_for(self, labels: Tensor | None, dim: int) -> Tensor | None:
        model_dim = _embedding_dimension(self.model)
        if isinstance(labels, Tensor) and labels.dim() in (2, 3) and labels.shape[-1] == model_dim:
            return labels[..., :dim]
        return labels

    def forward(self, sentence_features: list[dict[str, Any]], labels: Tensor | None = None) -> LossValue:
        if self.uses_gradient_cache:
            return self.loss(sentence_features, labels)
        model = unwrap_model(self.model)
        prefix_forward = _PrefixForward(model.forward)
        total: LossValue | None = None
        with patched_forward(model, prefix_forward):
            for position, (dim, weight) in enumerate(self.selected_dims()):
                prefix_forward.start_pass(dim, first=position == 0)
                value = self.loss(sentence_features, self._labels_for(labels, dim))
                total = add_weighted(total, value, weight)
        return total  # type: ignore[return-value]

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None = None
    ) -> LossValue:
        """Weighted sum of the wrapped loss's pure form over the shrunk embeddings."""
        total: LossValue | None = None
        for dim, weight in self.selected_dims():
            shrunk = [shrink(e, dim) for e in embeddings]
            value = self.loss.compute_loss_from_embeddings(shrunk, self._labels_for(labels, dim))
            total = add_weighted(total, value, weight)
        return total  # type: ignore[return-value]

    def trainable_modules(self) -> list[nn.Module]:
        inner = getattr(self.loss, "trainable_modules", None)
        return inner() if callable(inner) else []

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": type(self.loss).__name__,
            "matryoshka_dims": self.matryoshka_dims,
            "matryoshka_weights": self.matryoshka_weights,
            "n_dims_per_step": self.n_dims_per_step,
        }


def _embedding_dimension(model: nn.Module | None) -> int | None:
    for name in ("get_sentence_embedding_dimension", "get_embedding_dimension"):
        getter = getattr(model, name, None)
        if callable(getter):
            return getter()
    return None
