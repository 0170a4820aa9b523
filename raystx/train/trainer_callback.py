"""The callback base classes: ``TrainerState``, ``TrainerCallback`` and the ``CallbackHandler`` the loop uses.

This module imports nothing from the integrations (``raystx.train.integrations`` builds on it);
``raystx.train.callbacks`` is the public entry point that exports both. Callbacks run inside the rank-0
worker (where the loop's state lives), like transformers' callbacks run in the main process. Every hook receives the training arguments and a ``TrainerState`` snapshot; hooks that do not
apply are simply not overridden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raystx.train.args import SentenceTransformerTrainingArguments


@dataclass
class TrainerState:
    """Where training stands, as seen by callbacks."""

    global_step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    num_train_epochs: float = 0.0
    world_size: int = 1
    is_world_process_zero: bool = True
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_model_checkpoint: str | None = None


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


class CallbackHandler:
    """Calls every callback's hook in order; used by the loop on rank 0 only."""

    def __init__(self, callbacks: list[TrainerCallback], enabled: bool) -> None:
        self.callbacks = list(callbacks)
        self.enabled = enabled

    def call(self, hook: str, *args: Any, **kwargs: Any) -> None:
        if not self.enabled:
            return
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(*args, **kwargs)
