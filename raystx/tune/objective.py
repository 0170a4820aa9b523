"""Which metric(s) a sweep optimizes and in which direction.

The default is the evaluator's primary metric as the trainer logs it (``eval_{name}_{primary}``) with the
evaluator's ``greater_is_better``; a sweep may name any ``eval_*`` key instead, or several for a multi-objective
search (one mode each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raystx.evaluation.protocol import Evaluator

MODES = ("max", "min")


@dataclass(frozen=True)
class Objective:
    """``metrics[i]`` is optimized in ``modes[i]`` (``max``/``min``); one metric is a single-objective sweep."""

    metrics: tuple[str, ...]
    modes: tuple[str, ...]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def metric(self) -> str:
        """The first (or only) metric: the one the schedulers stop trials on."""
        return self.metrics[0]

    @property
    def mode(self) -> str:
        return self.modes[0]

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` beats ``b`` on the first metric."""
        return a > b if self.mode == "max" else a < b


def evaluator_metric(evaluator: Evaluator | None) -> tuple[str | None, bool]:
    """``(eval_ key of the evaluator's primary metric, greater_is_better)``; ``(None, True)`` without one."""
    if evaluator is None:
        return None, True
    primary = getattr(evaluator, "primary_metric", None)
    if not primary:
        return None, True
    name = getattr(evaluator, "name", "") or ""
    if name and not primary.startswith(name + "_"):
        primary = f"{name}_{primary}"
    key = primary if primary.startswith("eval_") else "eval_" + primary
    return key, bool(getattr(evaluator, "greater_is_better", True))


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def resolve_objective(metric: Any, mode: Any, evaluator: Evaluator | None) -> Objective:
    """The sweep objective from the ``metric``/``mode`` settings (str or list, None = the evaluator's default).

    Errors say what to set. ``minimize``/``maximize`` are accepted as modes (transformers' ``direction``).
    """
    metrics = _as_tuple(metric)
    modes = tuple(_normal_mode(m) for m in _as_tuple(mode))
    if not metrics:
        key, greater = evaluator_metric(evaluator)
        if key is None:
            raise ValueError(
                "the sweep has no metric: set tune.metric to an eval_* key, or give the config an evaluator "
                "(its primary metric is the default objective)"
            )
        metrics = (key,)
        modes = modes or ("max" if greater else "min",)
    metrics = tuple(m if m.startswith("eval_") or m.startswith("objective") else "eval_" + m for m in metrics)
    if not modes:
        if len(metrics) == 1:
            key, greater = evaluator_metric(evaluator)
            default = "max" if (greater if key == metrics[0] else not metrics[0].endswith("loss")) else "min"
            modes = (default,)
        else:
            modes = tuple("min" if m.endswith("loss") else "max" for m in metrics)
    if len(modes) == 1 and len(metrics) > 1:
        modes = modes * len(metrics)
    if len(modes) != len(metrics):
        raise ValueError(f"tune.mode lists {len(modes)} mode(s) for {len(metrics)} metric(s) {list(metrics)}")
    return Objective(metrics, modes)


def _normal_mode(mode: Any) -> str:
    text = str(mode).lower()
    text = {"maximize": "max", "minimize": "min"}.get(text, text)
    if text not in MODES:
        raise ValueError(f"mode {mode!r} is not one of max, min (or maximize, minimize)")
    return text
