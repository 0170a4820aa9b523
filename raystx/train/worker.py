"""A worker's side of a run: what the driver ships (``WorkerPayload``) and how the step loop is assembled from it.

``train_worker(payload, runtime)`` is the entry point on every Ray Train worker (through the trainer's
``_ray_train_fn``) and in one plain process (``LocalRuntime``: tests, ``bench/gpu_check.sh``). It waits for data
staged while the workers started (``raystx.train.staged_wait``), seeds, puts the model and losses on the runtime's
device, builds the parameter strategy, optimizer, data cursor and schedule,
restores the newest complete checkpoint if any, and runs ``TrainLoop``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from raystx.data.collate import BatchCollator, thread_private_tokenize
from raystx.data.read_stats import write_stats
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.cadence import total_optimizer_steps
from raystx.train.callbacks import CallbackHandler, integration_callbacks
from raystx.train.cursor import DataCursor
from raystx.train.eval_loss import EvalDataset, EvalLoss
from raystx.train.fsdp_meta_load import load_sharded, to_device
from raystx.train.loop import LoopParts, LoopState, NonFiniteLossError, TrainLoop
from raystx.train.optim import build_optimizer, build_scheduler
from raystx.train.resume import checkpoint_candidates, recount_schedule, restore_latest
from raystx.train.runtime import Runtime
from raystx.train.staged_wait import await_staged_data
from raystx.train.strategy import build_strategy

logger = logging.getLogger("raystx.train")

__all__ = ["NonFiniteLossError", "WorkerPayload", "build_loop", "set_seed", "train_worker"]


@dataclass
class WorkerPayload:
    """Everything a worker needs, shipped from the driver in one pickle (so losses keep sharing the model)."""

    model: nn.Module
    losses: dict[str, nn.Module]
    args: SentenceTransformerTrainingArguments
    sources: dict[str, Any]
    label_kinds: dict[str, str]
    evaluator: Any = None
    eval_datasets: dict[str, EvalDataset] = field(default_factory=dict)
    eval_label_kinds: dict[str, str] = field(default_factory=dict)
    resume_from: str | None = None
    callbacks: list[Any] = field(default_factory=list)
    best_metric_key: str | None = None
    greater_is_better: bool = True
    run_dir: str | None = None
    # Tags the workers' temporary folders, so the driver removes this run's on its node at the end
    # (``raystx.train.scratch``); ``driver.launch`` sets a fresh one.
    scratch_tag: str | None = None
    # The driver renders progress from rank 0's log records, so workers keep their per-step lines at DEBUG.
    driver_shows_progress: bool = False
    # A saved model directory to load the weights from after sharding, when ``model`` has its parameters on the
    # meta device (FSDP only; rank 0 alone reads it, see ``raystx.train.fsdp_meta_load``).
    initial_weights: str | None = None
    # ``SentenceTransformer`` keyword arguments to read ``initial_weights`` with (trust_remote_code, model_kwargs...)
    initial_weights_kwargs: dict[str, Any] = field(default_factory=dict)
    # The global batch size the driver checks datasets with; datasets staged while the workers started
    # (``raystx.train.staged_wait``) are checked on the workers with the same one.
    data_check_batch_size: int = 1


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_loop(payload: WorkerPayload, runtime: Runtime) -> TrainLoop:
    """Assemble the step loop on this worker, resumed from the newest complete checkpoint if there is one.

    Data staged while the workers started is awaited and checked first (``await_staged_data``)."""
    await_staged_data(payload, runtime.rank)
    args = payload.args
    set_seed(args.seed)
    model = to_device(payload.model, runtime.device)
    losses = {name: to_device(loss, runtime.device) for name, loss in payload.losses.items()}
    if args.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
    collate = _collator(
        payload, model
    )  # before sharding: it shallow-copies the first module for its tokenizer
    strategy = build_strategy(args, model, losses, runtime.device, runtime.rank)
    if payload.initial_weights is not None:  # before the optimizer: only now do the shards exist
        load_sharded(model, payload.initial_weights, runtime.device, strategy, payload.initial_weights_kwargs)
    optimizer = build_optimizer(strategy.named_parameters(), args)
    cursor = DataCursor(payload.sources, args, runtime.rank, runtime.world_size)
    if cursor.steps_per_epoch < args.gradient_accumulation_steps:
        raise ValueError(
            f"One epoch has {cursor.steps_per_epoch} global batches of {args.per_device_train_batch_size} x "
            f"{runtime.world_size} workers, fewer than gradient_accumulation_steps="
            f"{args.gradient_accumulation_steps}"
        )
    state = LoopState(max_steps=total_optimizer_steps(cursor.steps_per_epoch, args))
    scheduler = build_scheduler(optimizer, args, state.max_steps)
    restored = restore_latest(
        checkpoint_candidates(runtime, payload.resume_from, payload.run_dir),
        rank=runtime.rank,
        model=model,
        losses=losses,
        optimizer=optimizer,
        scheduler=scheduler,
        weights=strategy.weights,
    )
    if restored is not None:
        checkpoint, path = restored
        state.global_step = checkpoint.global_step
        state.log_history = list(checkpoint.log_history)
        state.best_metric = checkpoint.best_metric
        if cursor.restore(checkpoint, path) and args.max_steps <= 0:
            steps_left = cursor.steps_left(args.num_train_epochs)
            state.max_steps, scheduler = recount_schedule(
                args, state.global_step, steps_left, optimizer, scheduler
            )
        _log_resumed(runtime, path, state, cursor)
    parts = LoopParts(
        model=model,
        losses=losses,
        args=args,
        cursor=cursor,
        strategy=strategy,
        optimizer=optimizer,
        scheduler=scheduler,
        collate=collate,
        callbacks=_callbacks(payload, runtime),
        evaluator=payload.evaluator,
        eval_loss=_eval_loss(payload, model, runtime),
        best_metric_key=payload.best_metric_key,
        greater_is_better=payload.greater_is_better,
        step_log_level=logging.DEBUG if payload.driver_shows_progress else logging.INFO,
    )
    return TrainLoop(parts, runtime, state)


def _log_resumed(runtime: Runtime, path: Any, state: LoopState, cursor: DataCursor) -> None:
    if runtime.rank == 0:
        logger.info(
            "Resumed from %s at step %d (epoch %d, batch %d)",
            path,
            state.global_step,
            cursor.epoch,
            cursor.step_in_epoch,
        )


def _collator(payload: WorkerPayload, model: nn.Module) -> BatchCollator:
    sources = payload.sources
    return BatchCollator(
        thread_private_tokenize(model),
        {n: s.input_columns for n, s in sources.items()},
        {n: s.label_column for n, s in sources.items()},
        payload.label_kinds,
        payload.args.prompts,
        payload.args.router_mapping,
    )


def _eval_loss(payload: WorkerPayload, model: nn.Module, runtime: Runtime) -> EvalLoss | None:
    """The sharded ``eval_dataset`` loss (None without an eval dataset)."""
    if not payload.eval_datasets:
        return None
    sources = {n: d.source for n, d in payload.eval_datasets.items()}
    collate = BatchCollator(
        thread_private_tokenize(model),
        {n: s.input_columns for n, s in sources.items()},
        {n: s.label_column for n, s in sources.items()},
        payload.eval_label_kinds,
        payload.args.prompts,
    )
    return EvalLoss(
        payload.eval_datasets,
        payload.args.per_device_eval_batch_size,
        collate,
        runtime.rank,
        runtime.world_size,
    )


def _callbacks(payload: WorkerPayload, runtime: Runtime) -> CallbackHandler:
    """User callbacks plus the ``report_to`` integrations; they run on rank 0 only."""
    is_zero = runtime.rank == 0
    integrations = integration_callbacks(payload.args) if is_zero else []
    return CallbackHandler([*payload.callbacks, *integrations], enabled=is_zero)


def train_worker(payload: WorkerPayload, runtime: Runtime) -> dict[str, Any]:
    """Run the loop to the end; used by the Ray entry point and by single-process runs."""
    loop = None
    try:
        loop = build_loop(payload, runtime)
        return loop.run()
    finally:
        if loop is not None:
            write_stats(runtime.rank, loop.parts.cursor.read_stats())  # only with RAYSTX_DATA_STATS_DIR set
        runtime.close()
