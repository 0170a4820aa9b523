"""Forward the rank-0 worker's evaluation reports from a trial's Ray Train run to Ray Tune.

``SweepReportCallback`` is Ray's ``TuneReportCallback`` (a Train ``UserCallback`` that runs in the Train controller)
with three changes that a sweep needs:

* only reports that carry evaluator metrics (``eval_*``) reach Tune, so every Tune result holds the objective and
  Tune's ``training_iteration`` counts evaluations (what the schedulers' ``grace_period``/``max_t`` are in);
* the loop's ``done`` flag is renamed ``train_done``: Tune treats ``done=True`` as "stop this trial now", which would
  kill the trial before it saves its final model;
* an optional ``compute_objective(metrics) -> float | list[float]`` adds ``objective`` (``objective_{i}`` for a
  list), as in transformers' ``hyperparameter_search``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.integration.ray_train import TuneReportCallback

OBJECTIVE = "objective"


def objective_keys(n: int) -> list[str]:
    """Names ``compute_objective`` values are reported under: ``objective`` or ``objective_0..n-1``."""
    return [OBJECTIVE] if n == 1 else [f"{OBJECTIVE}_{i}" for i in range(n)]


def add_objective(metrics: dict[str, Any], compute_objective: Callable[[dict[str, float]], Any]) -> None:
    """Add ``compute_objective``'s value(s) over the ``eval_*`` metrics to ``metrics`` in place."""
    value = compute_objective({k: v for k, v in metrics.items() if k.startswith("eval_")})
    if isinstance(value, (list, tuple)):
        for key, item in zip(objective_keys(len(value)), value):
            metrics[key] = float(item)
    else:
        metrics[OBJECTIVE] = float(value)


def tune_result(metrics: dict[str, Any], compute_objective: Callable | None = None) -> dict[str, Any] | None:
    """The Tune result for one worker report, or None when the report holds no evaluation."""
    if not any(k.startswith("eval_") for k in metrics):
        return None
    out = dict(metrics)
    out["train_done"] = bool(out.pop("done", False))
    if compute_objective is not None:
        add_objective(out, compute_objective)
    return out


class SweepReportCallback(TuneReportCallback):
    """``TuneReportCallback`` forwarding evaluation reports only, with ``done`` renamed (see module docstring).

    Construct it inside the Tune trial (it binds to the trial's result queue), pass it in the Train ``RunConfig``.
    """

    def __init__(self, compute_objective: Callable[[dict[str, float]], Any] | None = None) -> None:
        super().__init__()
        self.compute_objective = compute_objective

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        result = tune_result(metrics[0], self.compute_objective)
        if result is not None:
            super().after_report(run_context, [result, *metrics[1:]], checkpoint)
