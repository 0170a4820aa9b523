"""SequentialEvaluator: run several evaluators one after the other and merge their metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from raystx.evaluation.base import SentenceEvaluator
from raystx.evaluation.sharded import run_child


class SequentialEvaluator(SentenceEvaluator):
    """Call each evaluator in turn; returns all their metrics plus ``sequential_score`` (primary), which is
    ``main_score_function`` applied to the list of each evaluator's primary score (default: the last one).

    An evaluator returning a bare float contributes ``evaluator_{index}``. In a sharded evaluation each child
    follows ``raystx.evaluation.sharded.run_child``: a child that is not shardable runs on rank 0 alone, and the
    other ranks (whose result is discarded) count it as NaN.
    """

    def __init__(
        self,
        evaluators: Iterable[SentenceEvaluator],
        main_score_function: Callable[[list[float]], float] = lambda scores: scores[-1],
    ) -> None:
        super().__init__()
        self.evaluators = list(evaluators)
        self.main_score_function = main_score_function

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Run every evaluator; returns the merged metrics and ``sequential_score``."""
        results: dict[str, float] = {}
        scores: list[float] = []
        for index, evaluator in enumerate(self.evaluators):
            evaluation = run_child(evaluator, model, output_path, epoch, steps)
            if evaluation is None:  # another rank's share of a child that only rank 0 runs
                scores.append(float("nan"))
                continue
            if not isinstance(evaluation, dict):
                scores.append(evaluation)
                evaluation = {f"evaluator_{index}": evaluation}
            else:
                key = getattr(evaluator, "primary_metric", None)
                scores.append(evaluation[key] if key is not None else next(iter(evaluation.values())))
            results.update(evaluation)
        self.primary_metric = "sequential_score"
        results["sequential_score"] = self.main_score_function(scores) if scores else 0.0
        return results
