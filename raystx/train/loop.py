"""The step loop: the same code on every Ray Train worker (or in one process).

``TrainLoop.run()`` reads like a plain training loop: get this rank's batch from the ``DataCursor``, forward and
backward through the dataset's loss (which gathers in-batch candidates across ranks), sync gradients through the
``ParameterStrategy``, step the optimizer, then log, evaluate and save when ``due_events`` says so. Every rank
makes the same collective calls in the same order: the gradient sync, the all-reduce of logged values, the
sharded ``eval_dataset`` loss and evaluator encodes, the sharing of rank 0's callback ``TrainerControl`` at
steps where something is due (``raystx.train.control``) and ``runtime.report`` (Ray's barrier, which also
persists checkpoints).

The loop is assembled (model on device, optimizer, schedule, restored checkpoint) by ``raystx.train.worker``.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raystx.evaluation.sharded import run_evaluator
from raystx.train.args import IntervalStrategy, SentenceTransformerTrainingArguments
from raystx.train.cadence import StepEvents, due_events
from raystx.train.callbacks import CallbackHandler, TrainerControl, TrainerState
from raystx.train.checkpoint import write_checkpoint
from raystx.train.control import share_control
from raystx.train.cursor import Batch, DataCursor
from raystx.train.eval_loss import EvalLoss
from raystx.train.runtime import Runtime
from raystx.train.state import DATA_POSITION_FILE, CheckpointState
from raystx.train.strategy import ParameterStrategy
from raystx.util import batch_to_device

logger = logging.getLogger("raystx.train")


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss was NaN/inf for too many consecutive steps."""


@dataclass
class LoopState:
    """The loop's counters and history (restored from a checkpoint on resume)."""

    max_steps: int
    global_step: int = 0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    consecutive_bad: int = 0


@dataclass
class StepResult:
    """One micro-batch's outcome: the values to log (loss, components, negatives) and whether it was finite."""

    values: dict[str, torch.Tensor]
    finite: bool


class RunningMeans:
    """Sums of the logged values since the last log line (finite micro-batches only).

    ``seen`` counts every micro-batch and the keys are recorded for non-finite ones too (adding nothing), so
    every rank holds the same keys and the same ``seen`` whatever its own losses were: the ranks then make the
    same collective calls when they log (a rank whose only micro-batches were non-finite still takes part)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.steps = 0
        self.seen = 0

    def add(self, result: StepResult) -> None:
        self.seen += 1
        for key, value in result.values.items():
            self.sums[key] = self.sums.get(key, 0.0) + (value if result.finite else 0.0)
        self.steps += int(result.finite)


@dataclass
class LoopParts:
    """What the loop trains and with what (assembled by ``raystx.train.worker.build_loop``)."""

    model: nn.Module
    losses: dict[str, nn.Module]
    args: SentenceTransformerTrainingArguments
    cursor: DataCursor
    strategy: ParameterStrategy
    optimizer: torch.optim.Optimizer
    scheduler: Any
    collate: Any
    callbacks: CallbackHandler
    evaluator: Any = None
    eval_loss: EvalLoss | None = None
    best_metric_key: str | None = None
    greater_is_better: bool = True
    step_log_level: int = logging.INFO


class TrainLoop:
    """One worker's training run over ``LoopParts``, reporting through a ``Runtime``."""

    def __init__(self, parts: LoopParts, runtime: Runtime, state: LoopState) -> None:
        self.parts = parts
        self.rt = runtime
        self.state = state
        self.args = parts.args
        self.cursor = parts.cursor
        self.scaler = torch.amp.GradScaler("cuda") if self.args.fp16 else None
        self.autocast_dtype = (
            torch.bfloat16 if self.args.bf16 else (torch.float16 if self.args.fp16 else None)
        )
        self._last_report = float("-inf")
        self._saved_for_preemption = False
        self.control = TrainerControl()
        self.has_eval = parts.evaluator is not None or parts.eval_loss is not None
        # what callbacks see as ``args``: transformers resolves greater_is_better from the best metric (as we do)
        self.callback_args = copy.copy(self.args)
        if self.callback_args.greater_is_better is None and parts.best_metric_key:
            self.callback_args.greater_is_better = parts.greater_is_better

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train to ``max_steps`` (or until a callback stops training); returns ``{"global_step", "log_history"}``."""
        args, state, cursor = self.args, self.state, self.cursor
        self._set_train_mode()
        self._callback("on_train_begin")
        stopped = False
        if args.eval_on_start and self.has_eval and state.global_step == 0:
            stopped = self.evaluate_on_start()
        means, micro, any_bad = RunningMeans(), 0, False
        started = time.perf_counter()
        while state.global_step < state.max_steps and not stopped:
            if cursor.at_epoch_end():  # resumed at an epoch's end (or with a shorter epoch)
                cursor.next_epoch()
                continue
            if cursor.step_in_epoch == 0:
                self._callback("on_epoch_begin")
            batches = cursor.batches(self.parts.collate, depth=args.dataloader_prefetch_batches)
            try:
                for step, batch in batches:
                    if micro % args.gradient_accumulation_steps == 0:
                        self._callback("on_step_begin")
                    result = self.forward_backward(batch)
                    means.add(result)
                    any_bad = any_bad or not result.finite
                    micro += 1
                    epoch_end = cursor.advance(step)
                    if micro % args.gradient_accumulation_steps and not epoch_end:
                        continue
                    self.optimizer_step(any_bad)
                    any_bad = False
                    state.global_step += 1
                    if epoch_end:
                        self._callback("on_epoch_end")
                        cursor.next_epoch()
                    done = state.global_step >= state.max_steps
                    logged, stopped = self.after_step(means, epoch_end, done, started)
                    if logged:
                        means = RunningMeans()
                    if done or stopped:
                        break
            finally:
                batches.close()
        self._callback("on_train_end")
        return {"global_step": state.global_step, "log_history": state.log_history}

    # ------------------------------------------------------------------ one step
    def forward_backward(self, batch: Batch) -> StepResult:
        """Loss of this rank's micro-batch and its backward (skipped in one process when the loss is not finite)."""
        device = self.rt.device
        features = [batch_to_device(f, device) for f in batch.features]
        labels = batch.labels.to(device) if batch.labels is not None else None
        loss_fn = self.parts.losses[batch.dataset]
        dtype = self.autocast_dtype
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = loss_fn(features, labels)
        components = out if isinstance(out, dict) else {"loss": out}
        total = sum(components.values())
        finite = bool(torch.isfinite(total.detach()).item())
        # With several ranks every backward runs, finite or not: gathered embeddings all-reduce their gradients
        # and sharded parameters reduce-scatter theirs, so a rank that skipped its backward would leave the
        # others' collectives unmatched. The shared bad-step flag then skips the step and zeroes the gradients.
        if finite or self.parts.strategy.collective_forward or self.rt.world_size > 1:
            scaled = total / self.args.gradient_accumulation_steps
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        values = {"loss": total.detach().float()}
        negatives = getattr(loss_fn, "last_num_negatives", None)
        if negatives is not None:  # in-batch negatives each anchor saw (across all workers when gathering)
            values["num_negatives"] = torch.as_tensor(float(negatives))
        if len(components) > 1:
            values.update({f"loss_{k}": v.detach().float() for k, v in components.items()})
        return StepResult(values, finite)

    def optimizer_step(self, local_bad: bool) -> bool:
        """Sync grads, clip, step. Returns False (grads zeroed, step skipped) when any rank's loss was
        non-finite; raises ``NonFiniteLossError`` after ``max_consecutive_bad_steps`` such steps in a row."""
        parts, state = self.parts, self.state
        if parts.strategy.sync(local_bad):
            parts.strategy.zero_grad(parts.optimizer)
            state.consecutive_bad += 1
            self._on_bad_step()
            parts.scheduler.step()
            return False
        state.consecutive_bad = 0
        if self.scaler is not None:
            self.scaler.unscale_(parts.optimizer)
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            parts.strategy.clip_grad_norm(self.args.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(parts.optimizer)
            self.scaler.update()
        else:
            parts.optimizer.step()
        parts.scheduler.step()
        parts.strategy.zero_grad(parts.optimizer)
        return True

    def _on_bad_step(self) -> None:
        bad, step = self.state.consecutive_bad, self.state.global_step + 1
        if self.rt.rank == 0:
            logger.warning("Non-finite loss at step %d: step skipped (%d in a row)", step, bad)
        if bad >= self.args.max_consecutive_bad_steps:
            raise NonFiniteLossError(
                f"The loss was NaN/inf for {bad} consecutive steps (up to step {step}); stopping. The last "
                "good checkpoint is kept. Lower learning_rate, check the labels for NaN, or raise "
                "max_consecutive_bad_steps."
            )

    # ------------------------------------------------------------------ log / evaluate / save
    def after_step(
        self, means: RunningMeans, epoch_end: bool, done: bool, started: float
    ) -> tuple[bool, bool]:
        """Log, evaluate and save as due (and as rank 0's callbacks ask, see ``raystx.train.control``); returns
        (whether this was a logging step, so the means restart; whether a callback stopped training)."""
        state = self.state
        self._callback("on_step_end")
        events = due_events(
            self.args,
            state.global_step,
            state.max_steps,
            epoch_end,
            done,
            self.has_eval,
            state.consecutive_bad,
        )
        events = self._with_preemption_save(events)
        stop = False
        if events.any:  # a step where every rank acts anyway: rank 0's control decisions join in
            events, stop = self._apply_control(events)
        if not events.any:
            return False, False
        metrics: dict[str, Any] = {"step": state.global_step, "epoch": round(self.cursor.epoch_progress(), 4)}
        report_due = False
        if events.log and means.seen:
            logged, report_due = self._reduce_means(means)
            metrics.update(logged)
            metrics.update(self._throughput(started))
        if events.evaluate:
            metrics.update(self.evaluate())
            control = share_control(self.control, self.rt.rank, self.rt.device)  # what on_evaluate decided
            if control.should_training_stop and not stop:  # e.g. EarlyStoppingCallback: stop here, saved
                stop = True
                events = replace(events, save=not state.consecutive_bad)
            if control.should_save:
                control.should_save = False
                events = replace(events, save=events.save or not state.consecutive_bad)
        if self.rt.rank == 0:
            self._record(metrics)
        checkpoint_dir = self.save(metrics) if events.save else None
        done = done or stop
        metrics["done"] = bool(done)
        # Logs reach the driver through the progress channel; a metrics-only Ray report goes at most once per
        # controller poll interval (it would block the step otherwise). Eval, checkpoint and final reports always go.
        if events.save or events.evaluate or done or report_due:
            name = f"checkpoint-{state.global_step}" if checkpoint_dir else None
            self.rt.report(metrics, checkpoint_dir, name)
            self._last_report = time.monotonic()
        return events.log, stop

    def _apply_control(self, events: StepEvents) -> tuple[StepEvents, bool]:
        """Share rank 0's control, add the events it asks for (then clear them); whether to stop after this step.
        A stop saves a final checkpoint (never during a non-finite streak)."""
        control = share_control(self.control, self.rt.rank, self.rt.device)
        stop = control.should_training_stop
        no_streak = not self.state.consecutive_bad
        events = StepEvents(
            log=events.log or control.should_log or stop,
            evaluate=events.evaluate or (control.should_evaluate and self.has_eval),
            save=events.save or ((control.should_save or stop) and no_streak),
        )
        control._new_step()
        return events, stop

    def evaluate_on_start(self) -> bool:
        """``eval_on_start``: evaluate before the first step (logged at step 0); whether a callback then stopped."""
        metrics: dict[str, Any] = {"step": 0, "epoch": 0.0}
        metrics.update(self.evaluate())
        if self.rt.rank == 0:
            self._record(metrics)
        stop = share_control(self.control, self.rt.rank, self.rt.device).should_training_stop
        self.rt.report(metrics, None, None)
        self._last_report = time.monotonic()
        return stop

    def _with_preemption_save(self, events: StepEvents) -> StepEvents:
        """Also save when the cluster announced a preemption (checked every ``preemption_check_steps``)."""
        step = self.state.global_step
        if events.save or self._saved_for_preemption or step % max(self.args.preemption_check_steps, 1):
            return events
        if not self.rt.preemption_pending():  # a barrier: every rank calls it at the same steps
            return events
        logger.warning("Preemption announced: saving a checkpoint at step %d before the node goes", step)
        self._saved_for_preemption = True
        return StepEvents(log=events.log, evaluate=events.evaluate, save=True)

    def _reduce_means(self, means: RunningMeans) -> tuple[dict[str, float], bool]:
        """The logged values averaged over the finite micro-batches of all ranks (none when every one was
        non-finite), and whether a metrics-only report is due (rank 0's clock decides; its flag rides along so
        every rank makes the same report calls). Every rank calls this at every logging step."""
        from raystx.distributed import all_reduce_mean

        keys = sorted(means.sums)
        due = self.rt.rank == 0 and time.monotonic() - self._last_report >= self.rt.min_report_interval_s
        stacked = [torch.as_tensor(means.sums[k]).float().cpu() for k in keys]
        extra = torch.tensor([float(means.steps), float(due)])
        values = all_reduce_mean(torch.cat([torch.stack(stacked), extra]) if stacked else extra)
        steps = float(values[-2])  # mean finite micro-batches per rank; the sums are means over ranks too
        out = {k: float(v) / steps for k, v in zip(keys, values[:-2])} if steps > 0 else {}
        out["learning_rate"] = float(self.parts.scheduler.get_last_lr()[0])
        return out, bool(values[-1] > 0)

    def _throughput(self, started: float) -> dict[str, float]:
        args, elapsed = self.args, time.perf_counter() - started
        samples = (
            self.state.global_step
            * args.per_device_train_batch_size
            * self.rt.world_size
            * args.gradient_accumulation_steps
        )
        return {"elapsed_s": round(elapsed, 4), "samples_per_second": round(samples / max(elapsed, 1e-9), 3)}

    def _record(self, metrics: dict[str, Any]) -> None:
        """Rank 0: append to the history, call ``on_log`` and write the log line."""
        self.state.log_history.append(dict(metrics))
        self._callback("on_log", dict(metrics))
        shown = " ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items() if k != "step"
        )
        step, total = self.state.global_step, self.state.max_steps
        logger.log(self.parts.step_log_level, "step %d/%d %s", step, total, shown)

    def evaluate(self) -> dict[str, float]:
        """The ``eval_dataset`` losses, then the evaluator (both sharded over every rank, see
        ``raystx.evaluation.sharded``; rank 0's metrics count); ``eval_``-prefixed metrics. As in transformers,
        ``on_evaluate`` sees the best metric so far, then the best is updated."""
        parts = self.parts
        metrics: dict[str, float] = {}
        if parts.eval_loss is not None:
            metrics.update(parts.eval_loss(parts.model, parts.losses, self.rt.device, self.autocast_dtype))
        results = self._run_evaluator() if parts.evaluator is not None else None
        if self.rt.rank != 0:
            return metrics
        if results is not None:
            metrics.update({f"eval_{k}": float(v) for k, v in results.items()})
        self._callback("on_evaluate", metrics)
        self._track_best(metrics)
        return metrics

    def _run_evaluator(self) -> dict[str, Any] | None:
        """The evaluator's results on the model in eval mode (the previous mode restored); every rank calls it.

        Replicated: ``run_evaluator`` splits a built-in evaluator's encodes across the ranks (others run on rank
        0 alone); the results are rank 0's, None elsewhere. Sharded parameters (``collective_forward``): every
        rank runs the whole evaluator unsharded, since each forward all-gathers parameters with the other ranks
        and sharded encodes could give the ranks different numbers of forwards."""
        model = self.parts.model
        was_training = model.training
        model.eval()
        try:
            if self.parts.strategy.collective_forward:
                return self.parts.evaluator(model)
            return run_evaluator(self.parts.evaluator, model)
        finally:
            model.train(was_training)

    def _track_best(self, metrics: dict[str, float]) -> None:
        key = self.parts.best_metric_key
        if not key or key not in metrics:
            return
        value, best = metrics[key], self.state.best_metric
        if best is None or (value > best if self.parts.greater_is_better else value < best):
            self.state.best_metric = value

    def save(self, metrics: dict[str, Any]) -> Path:
        """Write this rank's share of a checkpoint to a temporary folder (the runtime persists and removes it;
        ``Runtime.close`` removes it if the run ends before)."""
        directory = self.rt.checkpoint_dir()
        position, row_sets = self.cursor.position()
        if row_sets and self.rt.rank == 0:  # before write_checkpoint, so its manifest covers the file
            np.savez_compressed(directory / DATA_POSITION_FILE, **row_sets)
        state = self.state
        checkpoint_state = CheckpointState(
            global_step=state.global_step,
            epoch=self.cursor.epoch,
            step_in_epoch=self.cursor.step_in_epoch,
            max_steps=state.max_steps,
            world_size=self.rt.world_size,
            global_batch_size=position.global_batch_size,
            data_position=position,
            metrics=metrics,
            log_history=state.log_history,
            best_metric=state.best_metric,
            resumable=not (self.args.save_only_model or self.args.save_strategy is IntervalStrategy.NO),
        )
        parts = self.parts
        write_checkpoint(
            directory,
            rank=self.rt.rank,
            model=parts.model,
            losses=parts.losses,
            optimizer=parts.optimizer,
            scheduler=parts.scheduler,
            trainer_state=checkpoint_state,
            weights=parts.strategy.weights,
        )
        self._callback("on_save", directory)
        return directory

    # ------------------------------------------------------------------ helpers
    def trainer_state(self) -> TrainerState:
        """The snapshot callbacks receive (transformers' ``TrainerState`` fields)."""
        args = self.args
        return TrainerState(
            global_step=self.state.global_step,
            max_steps=self.state.max_steps,
            epoch=self.cursor.epoch_progress(),
            num_train_epochs=args.num_train_epochs,
            world_size=self.rt.world_size,
            is_world_process_zero=self.rt.rank == 0,
            is_local_process_zero=self.rt.local_rank == 0,
            log_history=list(self.state.log_history),
            best_metric=self.state.best_metric,
            logging_steps=args.logging_steps,
            eval_steps=args.eval_steps,
            save_steps=args.save_steps,
            train_batch_size=args.per_device_train_batch_size,
        )

    def _callback(self, hook: str, *extra: Any) -> None:
        """Run ``hook`` on rank 0's callbacks (raystx's or transformers' form) with this rank's control."""
        handler, parts = self.parts.callbacks, self.parts
        if not handler.has(hook):
            return
        self.control = handler.call(
            hook,
            self.callback_args,
            self.trainer_state(),
            self.control,
            *extra,
            model=parts.model,
            optimizer=parts.optimizer,
            lr_scheduler=parts.scheduler,
        )

    def _set_train_mode(self) -> None:
        self.parts.model.train()
        for loss in self.parts.losses.values():
            loss.train()
