"""The interface the trainer, the sweep and the model card need from an evaluator.

Every ``raystx.evaluation`` class (``SentenceEvaluator`` subclasses) implements it, and so does any user object
with these members; annotate with ``Evaluator`` wherever an evaluator is taken, instead of ``Any``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Evaluator(Protocol):
    """``evaluator(model, output_path=None, epoch=-1, steps=-1) -> {metric key: value}``.

    After a call ``primary_metric`` is the full (prefixed) metric key used for model selection and
    ``greater_is_better`` its direction.
    """

    primary_metric: str | None
    greater_is_better: bool

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]: ...
