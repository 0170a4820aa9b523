"""The base class every raystx loss derives from, and the column contract it declares.

A loss is an ``nn.Module`` called by the trainer as ``loss(sentence_features, labels)`` where
``sentence_features`` is a list with one tokenized feature dict per input column (in column order) and
``labels`` is a tensor (or ``None`` when the loss needs no label). It returns a scalar tensor, or a dict of
named scalar tensors whose sum is optimised (each component is logged).

``compute_loss_from_embeddings(embeddings, labels)`` is the pure part: ``embeddings`` is the list of
(batch, dim) tensors the model produced for each input column. Parity tests call it directly.

The ``contract`` class attribute (and ``alternative_contracts``) tells the driver which datasets fit the loss,
so that a mismatch fails before any worker starts. In-batch-negative losses set ``last_num_negatives`` after
each call; the training loop logs it as ``num_negatives``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

LabelKind = Literal["none", "float", "int", "vector", "float_or_vector"]


@dataclass(frozen=True)
class ColumnContract:
    """What a dataset must look like to feed a loss.

    ``min_inputs``/``max_inputs``: number of text (input) columns; ``max_inputs=None`` means unbounded
    (e.g. anchor, positive, negative_1 ... negative_n). ``label``: none (no label column allowed),
    float (a similarity score), int (a class id), vector (a teacher embedding, list of floats) or
    float_or_vector (either, e.g. MarginMSE/DistillKL accept scores or score vectors).
    """

    min_inputs: int
    max_inputs: int | None
    label: LabelKind = "none"

    def describe(self) -> str:
        if self.max_inputs is None:
            n = f"{self.min_inputs} or more input columns"
        elif self.min_inputs == self.max_inputs:
            n = f"exactly {self.min_inputs} input column{'s' if self.min_inputs != 1 else ''}"
        else:
            n = f"{self.min_inputs} to {self.max_inputs} input columns"
        label = {
            "none": "no label column",
            "float": "a float label column (named label/labels/score/scores)",
            "int": "an integer class label column (named label/labels/score/scores)",
            "vector": "a label column holding embedding vectors (list of floats)",
            "float_or_vector": "a label column holding floats or lists of floats",
        }[self.label]
        return f"{n} and {label}"

    def accepts_num_inputs(self, n: int) -> bool:
        return n >= self.min_inputs and (self.max_inputs is None or n <= self.max_inputs)


class RaystxLoss(nn.Module):
    """Base class: holds the model and declares the column contract.

    Subclasses set ``contract`` and implement ``forward`` and (where it makes sense)
    ``compute_loss_from_embeddings``. ``gather_across_devices`` is the switch for in-batch-negative losses
    to span the global batch across Ray Train workers (see ``raystx.distributed``).
    """

    contract: ClassVar[ColumnContract] = ColumnContract(1, None, "none")
    """The column layout the loss is documented with (its first row in the loss docstring's table)."""

    alternative_contracts: tuple[ColumnContract, ...] = ()
    """Other column layouts the loss also accepts, tried in order after ``contract`` (e.g. ``SoftmaxLoss`` also
    takes embedding-vector labels). A class-level tuple; wrapper losses set it per instance from their inner
    loss (``adopt_contracts``). Read through ``raystx.data.columns.contracts_of``."""

    last_num_negatives: float | None = None
    """For in-batch-negative losses: how many negatives each anchor was scored against in the last call (a
    mean where it varies per anchor, e.g. GIST's filtered negatives), across all workers when
    ``gather_across_devices`` is on. ``None`` for losses without in-batch negatives and before the first
    call. The training loop logs it as ``num_negatives``."""

    citation: ClassVar[str | None] = None

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def adopt_contracts(self, inner: nn.Module) -> None:
        """For a wrapper loss: accept exactly the column layouts that the wrapped loss ``inner`` accepts."""
        self.contract = getattr(inner, "contract", type(self).contract)  # type: ignore[misc]
        self.alternative_contracts = tuple(getattr(inner, "alternative_contracts", ()))

    def embed(self, sentence_features: list[dict[str, Tensor]]) -> list[Tensor]:
        """Run the model on each input column and return the sentence embeddings, in column order."""
        return [self.model(features)["sentence_embedding"] for features in sentence_features]

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not expose a loss-from-embeddings form")

    def forward(
        self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor | dict[str, Tensor]:
        return self.compute_loss_from_embeddings(self.embed(sentence_features), labels)

    def get_config_dict(self) -> dict[str, Any]:
        """Constructor arguments worth recording (model card, sweep results)."""
        return {}

    def trainable_modules(self) -> list[nn.Module]:
        """Extra modules with parameters beyond the model (classifier heads, decoders) to optimise and save."""
        return []
