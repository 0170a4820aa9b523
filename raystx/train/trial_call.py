"""Calling the user's ``model_init`` and loss factories, with the hyperparameter-search trial when they take it.

transformers' ``Trainer.call_model_init(trial)`` calls ``model_init()`` or ``model_init(trial)`` depending on how many
arguments it takes (``None`` outside a search, e.g. when the trainer is built); sentence-transformers calls a loss
factory as ``loss(model)``. raystx does the same and, as an addition, calls ``loss(model, trial)`` when the factory
takes a second required argument (or one named ``trial``), so a search can also tune loss settings.

In: the callable, the model, the trial (``TrialParams`` inside ``hyperparameter_search``, else ``None``).
Out: the model / the loss module; ``ValueError`` naming the callable when it does not fit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn


class TrialParams(dict):
    """A trial's sampled hyperparameters: a dict (what transformers' Ray backend passes to ``model_init``) that also
    answers ``trial.params`` (what its Optuna backend's ``optuna.Trial`` offers) and ``trial.trial_id``."""

    def __init__(self, params: dict[str, Any], trial_id: str | None = None) -> None:
        super().__init__(params)
        self.trial_id = trial_id

    @property
    def params(self) -> dict[str, Any]:
        return dict(self)


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: assume the plain form
        return []


def call_model_init(model_init: Callable[..., nn.Module], trial: Any = None) -> nn.Module:
    """``model_init()`` or ``model_init(trial)`` (transformers counts its parameters the same way)."""
    count = len(_parameters(model_init))
    if count == 0:
        model = model_init()
    elif count == 1:
        model = model_init(trial)
    else:
        raise ValueError(
            f"model_init {_name(model_init)} takes {count} arguments; it must take none or one (the trial)"
        )
    if model is None:
        raise ValueError(f"model_init {_name(model_init)} returned None; it must return the model to train")
    return model


def takes_trial(factory: Callable[..., Any]) -> bool:
    """Whether a loss factory wants the trial: a parameter named ``trial`` or two required positional ones."""
    params = _parameters(factory)
    if any(p.name == "trial" for p in params):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is inspect.Parameter.empty]
    return len(required) >= 2


def build_loss(factory: Callable[..., nn.Module], model: nn.Module, trial: Any = None) -> nn.Module:
    """The loss a factory builds for ``model``: ``factory(model)``, or ``factory(model, trial)`` when it takes it."""
    if any(p.name == "trial" for p in _parameters(factory)):
        return factory(model, trial=trial)
    if takes_trial(factory):
        return factory(model, trial)
    return factory(model)
