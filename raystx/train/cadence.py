"""When the step loop logs, evaluates and saves: pure functions of the training arguments and the step.

``due_events(args, step, max_steps, epoch_end, done, has_evaluator, bad_streak)`` -> ``StepEvents``;
``total_optimizer_steps(steps_per_epoch, args)`` -> the run's optimizer steps. Same answers on every rank, so
every rank makes the same collective calls (all-reduce of logged values, reports, checkpoints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raystx.train.args import IntervalStrategy, SentenceTransformerTrainingArguments


@dataclass(frozen=True)
class StepEvents:
    """What is due after an optimizer step."""

    log: bool
    evaluate: bool
    save: bool

    @property
    def any(self) -> bool:
        return self.log or self.evaluate or self.save


def interval_hit(
    strategy: IntervalStrategy, every: float | None, step: int, total: int, epoch_end: bool
) -> bool:
    """Whether ``step`` falls on an interval: every N steps, every fraction of ``total``, or at epoch ends."""
    if strategy is IntervalStrategy.NO:
        return False
    if strategy is IntervalStrategy.EPOCH:
        return epoch_end
    every_steps = int(every) if every and every >= 1 else max(int(math.ceil((every or 1) * total)), 1)
    return step % every_steps == 0


def due_events(
    args: SentenceTransformerTrainingArguments,
    step: int,
    max_steps: int,
    epoch_end: bool,
    done: bool,
    has_evaluator: bool,
    bad_streak: int,
) -> StepEvents:
    """Log at logging steps, the first step (``logging_first_step``) and the end; evaluate at eval steps and the
    end (unless ``eval_strategy='no'``); save at save steps and the end, never during a non-finite streak (a
    checkpoint from a diverging streak must not rotate the last good one out)."""
    log = interval_hit(args.logging_strategy, args.logging_steps, step, max_steps, epoch_end)
    log = log or (args.logging_first_step and step == 1) or done
    evaluate = has_evaluator and (
        interval_hit(args.eval_strategy, args.eval_steps, step, max_steps, epoch_end)
        or (done and args.eval_strategy is not IntervalStrategy.NO)
    )
    save = interval_hit(args.save_strategy, args.save_steps, step, max_steps, epoch_end) or done
    return StepEvents(log=bool(log), evaluate=bool(evaluate), save=bool(save) and not bad_streak)


def total_optimizer_steps(steps_per_epoch: int, args: SentenceTransformerTrainingArguments) -> int:
    """``max_steps`` if set, else the optimizer steps of ``num_train_epochs`` (fractions round up)."""
    if args.max_steps > 0:
        return int(args.max_steps)
    updates_per_epoch = max(steps_per_epoch // args.gradient_accumulation_steps, 1)
    return int(math.ceil(args.num_train_epochs * updates_per_epoch))
