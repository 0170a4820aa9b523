"""Forward the rank-0 worker's evaluation reports from a trial's Ray Train run to Ray Tune.

``SweepReportCallback`` is Ray's ``TuneReportCallback`` (a Train ``UserCallback`` that runs in the Train controller)
with three changes that a sweep needs:

* only reports that carry evaluator metrics (``eval_*``) reach Tune, so every Tune result holds the objective and
  Tune's ``training_iteration`` counts evaluations (what the schedulers' ``grace_period``/``max_t`` are in);
* the last report (the loop's ``done=True``) is held back: the trial function reports it itself once the final
  model is saved (``final_result``), because Tune may stop a trial on any result (``done=True``, a scheduler at
  ``max_t``) and that must not kill the trial before its model is on disk; ``done`` becomes ``train_done``;
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
    """The Tune result for one worker report; None when the report holds no evaluation or is the last one
    (``done=True``: the trial reports that one after saving its model, see ``final_result``)."""
    if not any(k.startswith("eval_") for k in metrics) or metrics.get("done"):
        return None
    out = dict(metrics)
    out.pop("done", None)
    out["train_done"] = False
    if compute_objective is not None:
        add_objective(out, compute_objective)
    return out


def final_result(
    history: list[dict[str, Any]], compute_objective: Callable | None = None
) -> dict[str, Any] | None:
    """The Tune result of a finished training run: its last evaluation entry, marked ``train_done=True``."""
    evals = [h for h in history if any(k.startswith("eval_") for k in h)]
    if not evals:
        return None
    out = {k: v for k, v in evals[-1].items() if k != "done"}
    out["train_done"] = True
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
