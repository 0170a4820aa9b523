"""The callback base classes: ``TrainerState``, ``TrainerControl``, ``TrainerCallback`` and the ``CallbackHandler``.

This module imports nothing from the integrations (``raystx.train.integrations`` builds on it);
``raystx.train.callbacks`` is the public entry point that exports both. Callbacks run inside the rank-0 worker
(where the loop's state lives), like transformers' callbacks run in the main process.

Two callback forms run side by side:

* raystx's: ``hook(args, state, *extra, **kwargs)`` (``on_log(args, state, logs)``, ``on_evaluate(args, state,
  metrics)``, ``on_save(args, state, checkpoint_dir)``);
* transformers': a ``transformers.TrainerCallback`` (or any callback whose hooks take ``(args, state, control,
  ...)``), called as transformers does, ``hook(args, state, control, logs=..., metrics=..., model=..., ...)``; it may
  set ``control.should_training_stop / should_save / should_evaluate / should_log`` (or return a control), and
  ``transformers.EarlyStoppingCallback`` runs unchanged. When the loop reads the control is documented in
  ``raystx.train.control``.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raystx.train.args import SentenceTransformerTrainingArguments


@dataclass
class TrainerState:
    """Where training stands, as seen by callbacks (transformers' ``TrainerState`` field names, plus
    ``world_size``)."""

    global_step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    num_train_epochs: float = 0.0
    world_size: int = 1
    is_world_process_zero: bool = True
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_model_checkpoint: str | None = None
    best_global_step: int | None = None
    logging_steps: float = 500
    eval_steps: float | None = 500
    save_steps: float = 500
    train_batch_size: int | None = None
    num_input_tokens_seen: int = 0
    total_flos: float = 0.0
    is_local_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None
    stateful_callbacks: dict[str, Any] = field(default_factory=dict)


CONTROL_FLAGS = ("should_training_stop", "should_epoch_stop", "should_save", "should_evaluate", "should_log")


@dataclass
class TrainerControl:
    """transformers' ``TrainerControl``: switches callbacks set to steer the loop (see ``raystx.train.control`` for
    when the loop reads them)."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False

    def _new_training(self) -> None:
        self.should_training_stop = False

    def _new_epoch(self) -> None:
        self.should_epoch_stop = False

    def _new_step(self) -> None:
        self.should_save = self.should_evaluate = self.should_log = False

    def flags(self) -> list[bool]:
        return [bool(getattr(self, name)) for name in CONTROL_FLAGS]

    def set_flags(self, values: list[bool]) -> None:
        for name, value in zip(CONTROL_FLAGS, values):
            setattr(self, name, bool(value))


class TrainerCallback:
    """Base class; override the hooks you need. All are called on the rank-0 worker."""

    def on_train_begin(
        self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any
    ) -> None:
        pass

    def on_log(
        self,
        args: SentenceTransformerTrainingArguments,
        state: TrainerState,
        logs: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        pass

    def on_evaluate(
        self,
        args: SentenceTransformerTrainingArguments,
        state: TrainerState,
        metrics: dict[str, float],
        **kwargs: Any,
    ) -> None:
        pass

    def on_save(
        self,
        args: SentenceTransformerTrainingArguments,
        state: TrainerState,
        checkpoint_dir: Path,
        **kwargs: Any,
    ) -> None:
        pass

    def on_train_end(
        self, args: SentenceTransformerTrainingArguments, state: TrainerState, **kwargs: Any
    ) -> None:
        pass


# The positional extra of raystx-form hooks, passed by keyword to transformers-form ones.
_EXTRA_NAMES = {"on_log": "logs", "on_evaluate": "metrics", "on_save": "checkpoint_dir"}


def takes_control(callback: Any, method: Any) -> bool:
    """Whether a hook has transformers' form ``(args, state, control, ...)``: a ``transformers.TrainerCallback``,
    or a hook whose third positional parameter is named ``control``."""
    hf = sys.modules.get("transformers.trainer_callback")
    if hf is not None and isinstance(callback, hf.TrainerCallback):
        return True
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    return len(positional) >= 3 and positional[2].name == "control"


class CallbackHandler:
    """Calls every callback's hook in order, in either form; used by the loop on rank 0 only."""

    def __init__(self, callbacks: list[Any], enabled: bool) -> None:
        self.callbacks = list(callbacks)
        self.enabled = enabled
        self._forms: dict[tuple[int, str], bool] = {}

    def has(self, hook: str) -> bool:
        """Whether any callback would run for ``hook`` (so the loop can skip building the state)."""
        return self.enabled and any(getattr(cb, hook, None) is not None for cb in self.callbacks)

    def call(
        self, hook: str, args: Any, state: TrainerState, control: TrainerControl, *extra: Any, **kwargs: Any
    ) -> TrainerControl:
        """Run ``hook`` on every callback; returns the control (a transformers callback may return a new one)."""
        if not self.enabled:
            return control
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is None:
                continue
            key = (id(cb), hook)
            if key not in self._forms:
                self._forms[key] = takes_control(cb, method)
            if not self._forms[key]:
                method(args, state, *extra, **kwargs)
                continue
            named = dict(kwargs)
            if extra:
                named[_EXTRA_NAMES.get(hook, "value")] = extra[0]
            result = method(args, state, control, **named)
            if result is not None and all(hasattr(result, f) for f in CONTROL_FLAGS):
                control.set_flags([getattr(result, f) for f in CONTROL_FLAGS])
        return control
