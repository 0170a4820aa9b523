"""Finding the checkpoint a worker resumes from, and loading it.

``checkpoint_candidates(runtime, resume_from, run_dir)`` lists where to resume from, best first: the checkpoint
Ray hands a restarted worker, an explicit path, then the run folder's complete checkpoints, newest first.
``restore_latest(candidates, ...)`` loads the first one that is complete into the model, losses, optimizer and
scheduler (skipping corrupt ones with a warning) and returns its ``CheckpointState`` and path, or ``None``.
``recount_schedule(...)`` re-derives ``max_steps`` and the LR schedule for an epoch budget after the epoch was
re-planned for another global batch size.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.checkpoint import CorruptCheckpointError, restore_checkpoint, sorted_checkpoints
from raystx.train.optim import build_scheduler
from raystx.train.runtime import Runtime
from raystx.train.state import CheckpointState

logger = logging.getLogger("raystx.train")


def checkpoint_candidates(runtime: Runtime, resume_from: str | None, run_dir: str | None) -> list[Path]:
    """Where to resume from, best first (see the module docstring)."""
    latest = runtime.latest_checkpoint()
    candidates = [latest] if latest else []
    if resume_from:
        candidates.append(Path(resume_from))
    # A run never starts over checkpoints it did not write (the driver refuses or clears them), so complete
    # checkpoints in the run folder are this run's: after a worker failure they also cover a checkpoint that
    # was persisted but not yet registered by Ray's controller when the group died.
    if run_dir and Path(run_dir).is_dir():
        candidates.extend(sorted_checkpoints(Path(run_dir)))
    return candidates


def restore_latest(
    candidates: list[Path],
    *,
    rank: int,
    model: nn.Module,
    losses: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    weights: Any = None,
) -> tuple[CheckpointState, Path] | None:
    """Load the first complete checkpoint of ``candidates``; ``None`` when there is none. ``weights`` is the
    parameter strategy's checkpoint reader (see ``raystx.train.strategy``)."""
    for candidate in candidates:
        try:
            state = restore_checkpoint(
                candidate,
                rank=rank,
                model=model,
                losses=losses,
                optimizer=optimizer,
                scheduler=scheduler,
                weights=weights,
            )
        except CorruptCheckpointError as exc:
            logger.warning("Skipping checkpoint %s: %s; trying the previous one", candidate, exc)
            continue
        return state, Path(candidate)
    return None


def recount_schedule(
    args: SentenceTransformerTrainingArguments,
    global_step: int,
    steps_left: float,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> tuple[int, Any]:
    """For an epoch budget in a re-planned epoch: the optimizer steps left are ``steps_left`` micro-batches in
    the current global batches; returns the new ``max_steps`` and a scheduler for it, at the same position and
    with the next step's learning rate on the new schedule."""
    max_steps = global_step + max(math.ceil(steps_left / args.gradient_accumulation_steps - 1e-9), 0)
    lrs = [group["lr"] for group in optimizer.param_groups]
    saved = scheduler.state_dict()
    scheduler = build_scheduler(optimizer, args, max_steps)
    scheduler.load_state_dict(saved)
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is not None:
        step = scheduler.last_epoch
        lrs = [base * fn(step) for base, fn in zip(scheduler.base_lrs, lambdas)]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    return max_steps, scheduler
