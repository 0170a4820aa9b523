"""The per-worker training loop: the same code on every Ray Train worker (or in one process).

Input is a ``WorkerPayload`` (model, losses per dataset, training arguments, data sources, evaluator) and a
``Runtime``. Each global step draws one dataset from the pure ``EpochPlan`` (identical on all ranks); each rank
tokenizes its slice in a prefetch thread, runs the dataset's loss (which gathers in-batch candidates across
ranks), and gradients are averaged in one flat all-reduce. Logging, evaluation (rank 0) and checkpoints happen
at the steps the arguments ask for, through ``runtime.report`` (the only barrier besides the all-reduce).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raystx.data.collate import BatchCollator, Prefetcher, thread_private_tokenize
from raystx.data.schedule import Consumed, EpochPlan
from raystx.train.args import IntervalStrategy, SentenceTransformerTrainingArguments
from raystx.train.callbacks import CallbackHandler, TrainerState, integration_callbacks
from raystx.train.checkpoint import (
    CorruptCheckpointError,
    restore_checkpoint,
    sorted_checkpoints,
    write_checkpoint,
)
from raystx.train.optim import (
    GradientSync,
    build_optimizer,
    build_scheduler,
    row_sparse_flags,
    unique_parameters,
)
from raystx.train.position import DATA_POSITION_FILE, decode_consumed, encode_consumed
from raystx.train.runtime import Runtime

logger = logging.getLogger("raystx.train")

# Row ids already trained this epoch (bitmaps), written into a checkpoint for the non-default batch samplers.


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss was NaN/inf for too many consecutive steps."""


@dataclass
class WorkerPayload:
    """Everything a worker needs, shipped from the driver in one pickle (so losses keep sharing the model)."""

    model: nn.Module
    losses: dict[str, nn.Module]
    args: SentenceTransformerTrainingArguments
    sources: dict[str, Any]
    label_kinds: dict[str, str]
    evaluator: Any = None
    resume_from: str | None = None
    callbacks: list[Any] = field(default_factory=list)
    best_metric_key: str | None = None
    greater_is_better: bool = True
    run_dir: str | None = None


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def total_optimizer_steps(steps_per_epoch: int, args: SentenceTransformerTrainingArguments) -> int:
    if args.max_steps > 0:
        return int(args.max_steps)
    updates_per_epoch = max(steps_per_epoch // args.gradient_accumulation_steps, 1)
    return int(math.ceil(args.num_train_epochs * updates_per_epoch))


def _interval_hit(
    strategy: IntervalStrategy, every: float | None, step: int, total: int, epoch_end: bool
) -> bool:
    if strategy is IntervalStrategy.NO:
        return False
    if strategy is IntervalStrategy.EPOCH:
        return epoch_end
    every_steps = int(every) if every and every >= 1 else max(int(math.ceil((every or 1) * total)), 1)
    return step % every_steps == 0


def _to_device(
    features: list[dict[str, torch.Tensor]], device: torch.device
) -> list[dict[str, torch.Tensor]]:
    return [
        {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in f.items()}
        for f in features
    ]


class TrainLoop:
    """State and steps of one worker's training run."""

    def __init__(self, payload: WorkerPayload, runtime: Runtime) -> None:
        self.p = payload
        self.rt = runtime
        self.args = payload.args
        args = self.args
        set_seed(args.seed)
        self.model = payload.model.to(runtime.device)
        self.losses = {name: loss.to(runtime.device) for name, loss in payload.losses.items()}
        if args.gradient_checkpointing and hasattr(self.model, "gradient_checkpointing_enable"):
            self.model.gradient_checkpointing_enable()
        named = unique_parameters([self.model, *self.losses.values()])
        self.params = [p for _, p in named]
        self.grad_sync = GradientSync(
            self.params, row_sparse_flags([self.model, *self.losses.values()], self.params)
        )
        self.optimizer = build_optimizer(named, args)
        self.opened = {name: src.open() for name, src in payload.sources.items()}
        # The data position: the epoch's plan may start after rows an earlier run (with another global batch
        # size) already trained in that epoch; see ``_restore`` and ``EpochPlan``'s ``consumed``.
        self._start_epoch = -1
        self._start_consumed: dict[str, Consumed] = {}
        self._start_round_robin = 0
        self._plan_cache: tuple[int, EpochPlan] | None = None
        self._last_report = -math.inf
        self.steps_per_epoch = len(self._plan(0))  # exact for the default sampler; epoch 0's count otherwise
        if self.steps_per_epoch < args.gradient_accumulation_steps:
            raise ValueError(
                f"One epoch has {self.steps_per_epoch} global batches of "
                f"{args.per_device_train_batch_size} x {runtime.world_size} workers, fewer than "
                f"gradient_accumulation_steps={args.gradient_accumulation_steps}"
            )
        self.max_steps = total_optimizer_steps(self.steps_per_epoch, args)
        self.scheduler = build_scheduler(self.optimizer, args, self.max_steps)
        self.scaler = torch.amp.GradScaler("cuda") if args.fp16 else None
        self.autocast_dtype = torch.bfloat16 if args.bf16 else (torch.float16 if args.fp16 else None)
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.log_history: list[dict[str, Any]] = []
        self.best_metric: float | None = None
        self.consecutive_bad = 0
        self._saved_for_preemption = False
        self._restore()
        is_zero = runtime.rank == 0
        self.callbacks = CallbackHandler(
            [*payload.callbacks, *(integration_callbacks(args) if is_zero else [])], enabled=is_zero
        )

    def trainer_state(self) -> TrainerState:
        return TrainerState(
            global_step=self.global_step,
            max_steps=self.max_steps,
            epoch=self._epoch_progress(),
            num_train_epochs=self.args.num_train_epochs,
            world_size=self.rt.world_size,
            is_world_process_zero=self.rt.rank == 0,
            log_history=list(self.log_history),
            best_metric=self.best_metric,
        )

    # ------------------------------------------------------------------ resume
    def _checkpoint_candidates(self) -> list[Path]:
        """Where to resume from, best first: Ray's latest, an explicit path, then the run's checkpoints, newest first."""
        latest = self.rt.latest_checkpoint()
        candidates = [latest] if latest else []
        if self.p.resume_from:
            candidates.append(Path(self.p.resume_from))
        # A run never starts over checkpoints it did not write (the driver refuses or clears them), so complete
        # checkpoints in the run folder are this run's: after a worker failure they also cover a checkpoint that
        # was persisted but not yet registered by Ray's controller when the group died.
        if self.p.run_dir and Path(self.p.run_dir).is_dir():
            candidates.extend(sorted_checkpoints(Path(self.p.run_dir)))
        return candidates

    def _restore(self) -> None:
        path = state = None
        for candidate in self._checkpoint_candidates():
            try:
                state = restore_checkpoint(
                    candidate,
                    rank=self.rt.rank,
                    model=self.model,
                    losses=self.losses,
                    optimizer=self.optimizer,
                    scheduler=self.scheduler,
                )
                path = candidate
                break
            except CorruptCheckpointError as exc:
                logger.warning("Skipping checkpoint %s: %s; trying the previous one", candidate, exc)
        if state is None:
            return
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self._restore_data_position(state, Path(path))
        self.log_history = list(state.get("log_history", []))
        self.best_metric = state.get("best_metric")
        if self.rt.rank == 0:
            logger.info(
                "Resumed from %s at step %d (epoch %d, batch %d)",
                path,
                self.global_step,
                self.epoch,
                self.step_in_epoch,
            )

    # ------------------------------------------------------------------ data
    def _plan(self, epoch: int) -> EpochPlan:
        """This worker's plan of ``epoch`` (cached for the current epoch)."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        resumed = epoch == self._start_epoch
        plan = self._make_plan(
            epoch,
            self.args.per_device_train_batch_size * self.rt.world_size,
            self._start_consumed if resumed else None,
            self._start_round_robin if resumed else 0,
        )
        self._plan_cache = (epoch, plan)
        return plan

    def _make_plan(
        self,
        epoch: int,
        global_batch_size: int,
        consumed: dict[str, Consumed] | None = None,
        round_robin_start: int = 0,
    ) -> EpochPlan:
        """The plan of ``epoch`` for a global batch size (a plan's batches depend only on that, not on the split
        into workers), starting after ``consumed`` rows. ``rows(step, rank)`` needs the real per-device size."""
        args = self.args
        per_device = args.per_device_train_batch_size
        split = global_batch_size % per_device == 0
        return EpochPlan(
            {n: s.num_rows for n, s in self.p.sources.items()},
            per_device if split else global_batch_size,
            global_batch_size // per_device if split else 1,
            args.data_seed if args.data_seed is not None else args.seed,
            epoch,
            args.multi_dataset_batch_sampler.value,
            args.multi_dataset_weights,
            batch_sampler=args.batch_sampler.value,
            columns=self._columns,
            consumed=consumed,
            round_robin_start=round_robin_start,
        )

    def _data_position(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The data position for a checkpoint: JSON-able state plus row-id arrays (non-default samplers)."""
        plan = self._plan(self.epoch)
        resumed = self.epoch == self._start_epoch
        start = self._start_consumed if resumed else {}
        consumed = plan.consumed_through(self.step_in_epoch)
        names = list(self.p.sources)
        sizes = {n: src.num_rows for n, src in self.p.sources.items()}
        arrays: dict[str, np.ndarray] = {}

        def encode(values: dict[str, Consumed], key: str) -> dict[str, int]:
            return encode_consumed(values, key, names, sizes, arrays)

        position = {
            "epoch": self.epoch,
            "global_batch_size": plan.global_batch_size,
            "datasets": names,
            "plan_start": encode(start, "plan_start"),
            "plan_round_robin_start": self._start_round_robin if resumed else 0,
            "rows_consumed": encode(consumed, "rows_consumed"),
            "round_robin_next": plan.round_robin_next(self.step_in_epoch),
            "row_sets": DATA_POSITION_FILE if arrays else None,
        }
        return position, arrays

    def _restore_data_position(self, state: dict[str, Any], path: Path) -> None:
        """Put the data position of a checkpoint in place, for the same or another global batch size.

        Same global batch size: the epoch's plan is rebuilt as it was and ``step_in_epoch`` continues in it (bit
        for bit the uninterrupted run). Another one (other worker count or per-device batch): the rest of the
        epoch is planned from the rows the checkpoint says were trained (``EpochPlan``'s ``consumed``: exact for
        one dataset with the default sampler, every row at most once otherwise), and, for a run set by
        ``num_train_epochs``, ``max_steps`` and the LR schedule are recomputed for the new steps per epoch.
        Checkpoints without a recorded position (older ones) get it recomputed from the plan they trained on.
        """
        args = self.args
        new_global = args.per_device_train_batch_size * self.rt.world_size
        saved_world = int(state.get("world_size", self.rt.world_size))
        position = state.get("data_position")
        if position and int(position.get("epoch", -1)) != self.epoch:
            position = None
        old_global = int(
            position["global_batch_size"]
            if position
            else state.get("global_batch_size", args.per_device_train_batch_size * saved_world)
        )
        start = consumed = None
        round_robin_start = round_robin_next = 0
        if position:
            arrays: dict[str, np.ndarray] = {}
            if position.get("row_sets"):
                with np.load(path / position["row_sets"], allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
            start = self._decode_rows(position, "plan_start", arrays)
            consumed = self._decode_rows(position, "rows_consumed", arrays)
            round_robin_start = int(position.get("plan_round_robin_start", 0))
            round_robin_next = int(position.get("round_robin_next", 0))
        if old_global == new_global:
            if start and any(not isinstance(v, int) or v for v in start.values()):
                self._set_start(self.epoch, start, round_robin_start)  # the resumed plan it was in, again
                self._recount_max_steps()
            return
        if consumed is None:  # an older checkpoint: the plan it trained on, from its own global batch size
            old_plan = self._make_plan(self.epoch, old_global)
            consumed = old_plan.consumed_through(self.step_in_epoch)
            round_robin_next = old_plan.round_robin_next(self.step_in_epoch)
        old_step = self.step_in_epoch
        self._set_start(self.epoch, consumed, round_robin_next)
        self.step_in_epoch = 0
        logger.warning(
            "Resuming with a global batch of %d (%d workers; the checkpoint had %d on %d): epoch %d continues "
            "after the %s rows trained in its first %d steps, in %d new steps",
            new_global,
            self.rt.world_size,
            old_global,
            saved_world,
            self.epoch,
            {n: (v if isinstance(v, int) else len(v)) for n, v in consumed.items()},
            old_step,
            len(self._plan(self.epoch)),
        )
        self._recount_max_steps()

    def _recount_max_steps(self) -> None:
        """For an epoch budget (``max_steps`` not set) in a resumed, shortened epoch: the optimizer steps left are
        the rest of this epoch plus the later epochs, in the current global batches; the LR schedule follows."""
        args = self.args
        if args.max_steps > 0:
            return
        left = len(self._plan(self.epoch)) - self.step_in_epoch
        remaining = left + (args.num_train_epochs - self.epoch - 1) * self.steps_per_epoch
        self.max_steps = self.global_step + max(
            math.ceil(remaining / args.gradient_accumulation_steps - 1e-9), 0
        )
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        saved = self.scheduler.state_dict()
        self.scheduler = build_scheduler(self.optimizer, args, self.max_steps)
        self.scheduler.load_state_dict(saved)
        lambdas = getattr(self.scheduler, "lr_lambdas", None)
        if lambdas is not None:  # the next step's rate on the new schedule, not the old one's
            step = self.scheduler.last_epoch
            lrs = [base * fn(step) for base, fn in zip(self.scheduler.base_lrs, lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr

    def _decode_rows(
        self, position: dict[str, Any], key: str, arrays: dict[str, np.ndarray]
    ) -> dict[str, Consumed]:
        return decode_consumed(position, key, {n: s.num_rows for n, s in self.p.sources.items()}, arrays)

    def _set_start(self, epoch: int, consumed: dict[str, Consumed], round_robin_start: int) -> None:
        self._start_epoch, self._start_consumed = epoch, dict(consumed)
        self._start_round_robin = round_robin_start
        self._plan_cache = None

    def _columns(self, name: str) -> tuple[list[tuple], list | None]:
        """Row texts (all input columns) and labels of a dataset, for the duplicate-/label-aware samplers."""
        source, data = self.p.sources[name], self.opened[name]
        texts = list(zip(*(list(data[c]) for c in source.input_columns)))
        labels = list(data[source.label_column]) if source.label_column else None
        if self.args.batch_sampler.value == "group_by_label" and labels is None:
            raise ValueError(
                f"batch_sampler='group_by_label' needs a label column; dataset {name!r} has none"
            )
        return texts, labels

    def _batch_maker(self, plan: EpochPlan):
        collate = BatchCollator(
            thread_private_tokenize(self.model),
            {n: s.input_columns for n, s in self.p.sources.items()},
            {n: s.label_column for n, s in self.p.sources.items()},
            self.p.label_kinds,
            self.args.prompts,
        )
        rank = self.rt.rank

        def make(step: int):
            name, rows = plan.rows(step, rank)
            data = self.opened[name][[int(i) for i in rows]]
            features, labels = collate(name, data)
            return name, features, labels, rows

        return make

    # ------------------------------------------------------------------ training
    def run(self) -> dict[str, Any]:
        args = self.args
        self.model.train()
        for loss in self.losses.values():
            loss.train()
        running: dict[str, torch.Tensor] = {}
        running_steps = 0
        micro = 0
        started = time.perf_counter()
        done = self.global_step >= self.max_steps
        self.callbacks.call("on_train_begin", args, self.trainer_state(), model=self.model)
        while not done:
            plan = self._plan(self.epoch)
            if self.step_in_epoch >= len(plan):  # resumed at an epoch's end (or with a shorter epoch)
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
                continue
            prefetch = Prefetcher(
                range(self.step_in_epoch, len(plan)),
                self._batch_maker(plan),
                depth=args.dataloader_prefetch_batches,
            )
            try:
                for step, (name, features, labels, _rows) in prefetch:
                    components = self._forward_backward(name, features, labels)
                    for key, value in components.items():
                        running[key] = running.get(key, 0.0) + value
                    running_steps += 1 if components else 0
                    micro += 1
                    self.step_in_epoch = step + 1
                    epoch_end = self.step_in_epoch >= len(plan)
                    if micro % args.gradient_accumulation_steps and not epoch_end:
                        continue
                    self._optimizer_step()
                    self.global_step += 1
                    if epoch_end:
                        self.epoch += 1
                        self.step_in_epoch = 0
                    done = self.global_step >= self.max_steps
                    self._maybe_log_eval_save(running, running_steps, epoch_end, done, started)
                    if self._logged:
                        running, running_steps = {}, 0
                    if done:
                        break
            finally:
                prefetch.close()
        self.callbacks.call("on_train_end", args, self.trainer_state(), model=self.model)
        return {"global_step": self.global_step, "log_history": self.log_history}

    def _forward_backward(self, name, features, labels) -> dict[str, torch.Tensor]:
        features = _to_device(features, self.rt.device)
        if labels is not None:
            labels = labels.to(self.rt.device)
        device_type = self.rt.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            out = self.losses[name](features, labels)
        components = out if isinstance(out, dict) else {"loss": out}
        total = sum(components.values())
        self._bad = not bool(torch.isfinite(total.detach()).item())
        if not self._bad:
            scaled = total / self.args.gradient_accumulation_steps
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        logged = {"loss": total.detach().float()}
        negatives = getattr(self.losses[name], "last_num_negatives", None)
        if negatives is not None:  # in-batch negatives each anchor saw (across all workers when gathering)
            logged["num_negatives"] = torch.as_tensor(float(negatives))
        if len(components) > 1:
            logged.update({f"loss_{k}": v.detach().float() for k, v in components.items()})
        return logged if not self._bad else {}

    def _optimizer_step(self) -> bool:
        """Sync grads, clip, step. Returns False (and zeroes grads) when any rank's loss was non-finite."""
        any_bad = self.grad_sync.sync(self._bad)
        if any_bad:
            self.grad_sync.zero_grad(self.optimizer)
            self.consecutive_bad += 1
            if self.rt.rank == 0:
                logger.warning(
                    "Non-finite loss at step %d: step skipped (%d in a row)",
                    self.global_step + 1,
                    self.consecutive_bad,
                )
            if self.consecutive_bad >= self.args.max_consecutive_bad_steps:
                raise NonFiniteLossError(
                    f"The loss was NaN/inf for {self.consecutive_bad} consecutive steps (up to step "
                    f"{self.global_step + 1}); stopping. The last good checkpoint is kept. Lower learning_rate, "
                    "check the labels for NaN, or raise max_consecutive_bad_steps."
                )
            self.scheduler.step()
            return False
        self.consecutive_bad = 0
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.grad_sync.zero_grad(self.optimizer)
        return True

    # ------------------------------------------------------------------ log / eval / save
    def _maybe_log_eval_save(self, running, running_steps, epoch_end, done, started) -> None:
        args, step = self.args, self.global_step
        log = _interval_hit(args.logging_strategy, args.logging_steps, step, self.max_steps, epoch_end)
        log = log or (args.logging_first_step and step == 1) or done
        evaluate = self.p.evaluator is not None and (
            _interval_hit(args.eval_strategy, args.eval_steps, step, self.max_steps, epoch_end)
            or (done and args.eval_strategy is not IntervalStrategy.NO)
        )
        save = _interval_hit(args.save_strategy, args.save_steps, step, self.max_steps, epoch_end) or done
        if self.consecutive_bad:
            save = False  # never let a checkpoint from a diverging streak rotate the last good one out
        if not save and not self._saved_for_preemption and step % max(args.preemption_check_steps, 1) == 0:
            if self.rt.preemption_pending():  # a barrier: every rank calls it at the same steps
                logger.warning(
                    "Preemption announced: saving a checkpoint at step %d before the node goes", step
                )
                save = self._saved_for_preemption = True
        self._logged = log
        if not (log or evaluate or save):
            return
        metrics: dict[str, Any] = {"step": step, "epoch": round(self._epoch_progress(), 4)}
        report_due = False
        if log and running_steps:
            from raystx.distributed import all_reduce_mean

            keys = sorted(running)
            # Rank 0's "a metrics-only report is due" rides along, so every rank makes the same report calls.
            due = self.rt.rank == 0 and time.monotonic() - self._last_report >= self.rt.min_report_interval_s
            stacked = [torch.as_tensor(running[k]).float().cpu() for k in keys]
            values = all_reduce_mean(torch.stack([*stacked, torch.tensor(float(due))]))
            report_due, values = bool(values[-1] > 0), values[:-1]
            metrics.update({k: float(v) / running_steps for k, v in zip(keys, values)})
            metrics["learning_rate"] = float(self.scheduler.get_last_lr()[0])
            metrics["elapsed_s"] = round(time.perf_counter() - started, 4)
            metrics["samples_per_second"] = round(
                step
                * args.per_device_train_batch_size
                * self.rt.world_size
                * args.gradient_accumulation_steps
                / max(time.perf_counter() - started, 1e-9),
                3,
            )
        if evaluate:
            eval_metrics = self._evaluate()
            metrics.update(eval_metrics)
            self._track_best(eval_metrics)
            self.callbacks.call("on_evaluate", args, self.trainer_state(), eval_metrics, model=self.model)
        if self.rt.rank == 0:
            self.log_history.append(dict(metrics))
            self.callbacks.call("on_log", args, self.trainer_state(), dict(metrics), model=self.model)
            logger.info(
                "step %d/%d %s",
                step,
                self.max_steps,
                " ".join(
                    f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in metrics.items()
                    if k not in ("step",)
                ),
            )
        checkpoint_dir = None
        name = None
        if save:
            name = f"checkpoint-{step}"
            checkpoint_dir = self._write_checkpoint(metrics)
            self.callbacks.call("on_save", args, self.trainer_state(), checkpoint_dir, model=self.model)
        metrics["done"] = bool(done)
        # Logs reach the driver through the progress channel; a metrics-only Ray report is only sent once per
        # controller poll interval (it would block the step otherwise). Eval, checkpoint and final reports always go.
        if save or evaluate or done or report_due:
            self.rt.report(metrics, checkpoint_dir, name)
            self._last_report = time.monotonic()

    def _track_best(self, eval_metrics: dict[str, float]) -> None:
        key = self.p.best_metric_key
        if not key or key not in eval_metrics:
            return
        value = eval_metrics[key]
        greater = self.p.greater_is_better
        if self.best_metric is None or (value > self.best_metric if greater else value < self.best_metric):
            self.best_metric = value

    def _epoch_progress(self) -> float:
        step = self.step_in_epoch
        if self.epoch == self._start_epoch:  # a resumed epoch's plan covers only the steps that were left
            step += max(self.steps_per_epoch - len(self._plan(self.epoch)), 0)
        return self.epoch + step / max(self.steps_per_epoch, 1)

    def _evaluate(self) -> dict[str, float]:
        if self.rt.rank != 0:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            results = self.p.evaluator(self.model)
        finally:
            self.model.train(was_training)
        metrics = {f"eval_{k}": float(v) for k, v in results.items()}
        return metrics

    def _write_checkpoint(self, metrics: dict[str, Any]) -> Path:
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix=f"raystx-ckpt-{self.rt.rank}-"))
        position, row_sets = self._data_position()
        if row_sets and self.rt.rank == 0:  # before write_checkpoint, so its manifest covers the file
            np.savez_compressed(directory / DATA_POSITION_FILE, **row_sets)
        state = {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "max_steps": self.max_steps,
            "world_size": self.rt.world_size,
            "global_batch_size": position["global_batch_size"],
            "data_position": position,
            "metrics": metrics,
            "log_history": self.log_history,
            "best_metric": self.best_metric,
        }
        write_checkpoint(
            directory,
            rank=self.rt.rank,
            model=self.model,
            losses=self.losses,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            trainer_state=state,
        )
        return directory


def train_worker(payload: WorkerPayload, runtime: Runtime) -> dict[str, Any]:
    """Run the loop to the end; used by the Ray entry point and by single-process runs."""
    loop = TrainLoop(payload, runtime)
    try:
        return loop.run()
    finally:
        runtime.close()
