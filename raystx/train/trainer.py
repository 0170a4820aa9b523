"""``SentenceTransformerTrainer``: the sentence-transformers trainer API, run on Ray Train workers.

Driver side only: validates arguments, data and losses before any worker starts, ships one payload (model,
losses, arguments, data sources, evaluator) to a ``TorchTrainer`` whose workers run ``raystx.train.worker``
(``raystx.train.driver``),
then loads the final (or best) checkpoint back into the driver's ``model`` object in place, so
``model.save_pretrained(...)`` and ``evaluator(model)`` after ``train()`` behave as in sentence-transformers.

Checkpoints land in ``{output_dir}/checkpoint-{step}`` (Ray's storage path is the parent of ``output_dir``
unless a ``RunConfig`` says otherwise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from raystx.data.pairing import pairing_problems
from raystx.losses.base import RaystxLoss
from raystx.ray_init import ensure_ray
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.driver import BestCheckpoint, TrainOutput, collect, launch, ray_train_logging
from raystx.train.fsdp_ship import ship_model
from raystx.train.trial_call import build_loss, call_model_init
from raystx.train.worker import WorkerPayload
from raystx.train.workers import max_workers, trained_world_size

logger = logging.getLogger("raystx.train")

DEFAULT_DATASET_NAME = "train"
RAY_RUN_SNAPSHOT = "checkpoint_manager_snapshot.json"
STAGING_DIR = ".raystx-data"  # the staged copy of the datasets, in the run folder

__all__ = ["DEFAULT_DATASET_NAME", "SentenceTransformerTrainer", "TrainOutput"]


class SentenceTransformerTrainer:
    """Train a ``raystx.SentenceTransformer`` with one loss per dataset on Ray Train workers.

    Args:
        model: the model to train; updated in place with the trained weights when ``train()`` returns.
        args: ``SentenceTransformerTrainingArguments``.
        train_dataset: a ``datasets.Dataset``/``DatasetDict``/``IterableDataset``, a ``ray.data.Dataset``, a file
            path/glob, or a dict of any of these keyed by dataset name.
        eval_dataset: same forms; evaluated at ``eval_strategy`` steps by all workers together with the loss of
            the training dataset of the same name (or the single loss): ``eval_loss``, or ``eval_{name}_loss``
            per dataset of a dict (``raystx.train.eval_loss``).
        loss: a loss, a dict of losses keyed by dataset name, or a callable ``model -> loss`` (or
            ``(model, trial) -> loss``, called with the trial in ``hyperparameter_search``). Default:
            ``CoSENTLoss``, as in sentence-transformers.
        evaluator: a ``SentenceEvaluator`` run by rank 0 at ``eval_strategy`` steps.
        callbacks: objects with ``on_*`` hooks: raystx's form or ``transformers.TrainerCallback`` subclasses
            (``EarlyStoppingCallback`` included) whose ``TrainerControl`` the loop honours (see
            ``raystx.train.callbacks`` and ``raystx.train.control``).
        scaling_config: ``ray.train.ScalingConfig`` (default 1 CPU worker).
        run_config: ``ray.train.RunConfig`` (default: storage under ``output_dir``'s parent, name = its basename).
        select_columns: columns to keep, in order (per dataset name when a dict); others are an error otherwise.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: SentenceTransformerTrainingArguments | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        loss: RaystxLoss | dict[str, RaystxLoss] | Callable[[nn.Module], RaystxLoss] | None = None,
        evaluator: Any = None,
        callbacks: list[Any] | None = None,
        scaling_config: Any = None,
        run_config: Any = None,
        model_init: Callable[..., nn.Module] | None = None,
        select_columns: list[str] | dict[str, list[str]] | None = None,
    ) -> None:
        if model is None and model_init is None:
            raise ValueError("SentenceTransformerTrainer needs a model (or model_init)")
        self.model_init = model_init
        # transformers calls model_init(trial) with trial=None outside a search; hyperparameter_search sets the trial
        self.trial: Any = None
        self.model = model if model is not None else call_model_init(model_init, None)
        self.args = args or SentenceTransformerTrainingArguments()
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.evaluator = evaluator
        self.callbacks = list(callbacks or [])
        self.scaling_config = scaling_config
        self.run_config = run_config
        self.select_columns = select_columns
        if loss is None:  # sentence-transformers' default loss
            from raystx.losses import CoSENTLoss

            loss = CoSENTLoss(self.model)
            logger.info("No `loss` passed, using `CoSENTLoss` as a default option.")
        self.loss = loss
        self.state: TrainOutput | None = None
        self.timings: dict[str, float] = {}
        self._staging: Any = None  # the run's background staging passes (raystx.data.background.StagingJob)

    # ------------------------------------------------------------------ driver-side preparation
    def _losses_by_dataset(self, names: list[str]) -> dict[str, nn.Module]:
        loss = self.loss
        if isinstance(loss, dict):
            problems = pairing_problems(loss, names)
            if problems:
                raise ValueError(
                    "Losses and datasets do not pair up: " + "; ".join(problems) + ". Give one loss per "
                    "dataset name, or a single loss for all."
                )
            built = {
                n: (build_loss(loss[n], self.model, self.trial) if _is_loss_factory(loss[n]) else loss[n])
                for n in names
            }
        else:
            single = build_loss(loss, self.model, self.trial) if _is_loss_factory(loss) else loss
            built = dict.fromkeys(names, single)
        for name, value in built.items():
            if not isinstance(value, nn.Module):
                raise TypeError(f"The loss for dataset {name!r} is {type(value).__name__}, not a loss module")
            if getattr(value, "model", self.model) is not self.model:
                raise ValueError(
                    f"The loss for dataset {name!r} wraps a different model object than the trainer's model; "
                    "construct the loss with the same model you pass to the trainer"
                )
        return built

    def _scaling(self):
        from ray.train import ScalingConfig

        return self.scaling_config or ScalingConfig(num_workers=1, use_gpu=False)

    def _run_config(self):
        from ray.train import CheckpointConfig, RunConfig

        from raystx.train.storage import is_uri

        args = self.args
        metric, mode = self._best_metric()
        ckpt = CheckpointConfig(
            num_to_keep=args.save_total_limit,
            checkpoint_score_attribute=metric if args.load_best_model_at_end else None,
            checkpoint_score_order=mode,
        )
        if self.run_config is None:
            if is_uri(args.output_dir):  # s3://bucket/runs/x -> storage s3://bucket/runs, name x
                parent, name = str(args.output_dir).rstrip("/").rsplit("/", 1)
            else:
                output_dir = Path(args.output_dir).absolute()
                parent, name = str(output_dir.parent), output_dir.name
            return RunConfig(
                storage_path=parent, name=name, checkpoint_config=ckpt, logging_config=ray_train_logging()
            )
        rc = self.run_config
        if rc.checkpoint_config is None or (
            rc.checkpoint_config.num_to_keep is None and args.save_total_limit
        ):
            rc.checkpoint_config = ckpt
        if rc.logging_config is None or rc.logging_config.log_level == "INFO":  # Ray's default: quieter
            rc.logging_config = ray_train_logging()
        return rc

    def _best_metric(self) -> tuple[str | None, str]:
        args = self.args
        metric = args.metric_for_best_model
        if metric is None and self.evaluator is not None and getattr(self.evaluator, "primary_metric", None):
            metric = self.evaluator.primary_metric
            name = getattr(self.evaluator, "name", "")
            if name and not metric.startswith(name + "_"):
                metric = f"{name}_{metric}"  # evaluators prefix their keys with their name when called
        if metric is None:
            return None, "max"
        if not metric.startswith("eval_"):
            metric = "eval_" + metric
        greater = args.greater_is_better
        if greater is None:  # a loss is minimized (transformers' rule), an evaluator metric goes its own way
            greater = not metric.endswith("loss") and bool(getattr(self.evaluator, "greater_is_better", True))
        return metric, "max" if greater else "min"

    def _check_output_dir(self, run_dir: str) -> None:
        from raystx.train.storage import checkpoint_names

        existing = checkpoint_names(run_dir)
        if self.args.resume_from_checkpoint is True and not existing:
            raise FileNotFoundError(
                f"resume_from_checkpoint=True but {run_dir} holds no checkpoint-* folder to resume from; "
                "check output_dir / the run's storage path, or start a new run without resuming"
            )
        if isinstance(self.args.resume_from_checkpoint, str):
            from raystx.train.checkpoint import read_trainer_state

            read_trainer_state(self.args.resume_from_checkpoint)  # fails early if missing or incomplete
        if existing and not self.args.resume_from_checkpoint and not self.args.overwrite_output_dir:
            raise FileExistsError(
                f"{run_dir} already holds checkpoints from an earlier run ({existing[-1]}). "
                "Pass resume_from_checkpoint=True to continue it, choose another output_dir, or set "
                "overwrite_output_dir=True to start over (the old checkpoints are then deleted)."
            )

    # ------------------------------------------------------------------ validate / train
    def _prepare(
        self, staging: str | Path, defer: bool = False
    ) -> tuple[dict[str, Any], dict[str, nn.Module]]:
        """Read/stage the datasets and check them against the losses (driver side, before any worker).

        ``defer``: large file and ``IterableDataset`` inputs are checked on their first rows and come back
        pending; their full staging pass is started by ``_stage`` (``raystx.data.background``)."""
        from raystx.data.sources import prepare_sources, validate_sources
        from raystx.models.router import check_router_mapping
        from raystx.train.eval_data import prepare_eval_datasets
        from raystx.train.integrations import check_report_to
        from raystx.train.storage import is_uri

        scaling = self._scaling()
        self.args.validate(use_gpu=bool(getattr(scaling, "use_gpu", False)))
        check_report_to(self.args)
        check_router_mapping(self.model, self.args.router_mapping)
        if not is_uri(self.args.output_dir):
            self.args.output_dir = str(Path(self.args.output_dir).absolute())  # workers run in other folders
        ensure_ray()
        sources = prepare_sources(
            self.train_dataset,
            staging_dir=str(staging),
            name=DEFAULT_DATASET_NAME,
            select_columns=self.select_columns,
            defer=defer,
        )
        losses = self._losses_by_dataset(list(sources))
        matched = validate_sources(
            sources,
            losses,
            global_batch_size=self._check_batch_size(),
            drop_last=self.args.dataloader_drop_last,
        )
        _check_fsdp(self.args, losses, self.eval_dataset is not None, int(scaling.num_workers or 1))
        self._label_kinds = {n: matched[n].label for n in sources}  # the contract each dataset matched
        self._eval, self._eval_label_kinds = prepare_eval_datasets(
            self.eval_dataset,
            losses=losses,
            loss_is_dict=isinstance(self.loss, dict),
            staging_dir=str(staging),
            select_columns=self.select_columns,
            batch_size=self.args.per_device_eval_batch_size,
        )
        return sources, losses

    def validate(self) -> dict[str, Any]:
        """Check arguments, data and losses as ``train()`` would, without starting workers or writing output."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="raystx-validate-") as tmp:
            sources, _ = self._prepare(Path(tmp) / "data")
        return sources

    def train(self, resume_from_checkpoint: str | bool | None = None) -> TrainOutput:
        """Validate, run the workers, and load the trained weights back into ``self.model``.

        Before anything is written: the run folder is checked (not a file), the workers against the cluster's
        resources, ``metric_for_best_model`` against the metrics the run logs, a resumed checkpoint against the
        model and losses (``raystx.train.preflight.check_run_start``). The run then holds the run folder's lock
        (``raystx.train.run_lock``; a second run on it fails at once); SIGTERM/SIGINT stop it with
        ``RunInterrupted`` (``raystx.train.signals``). At the end the staged data copy and every node's cache of it
        (``raystx.data.cache_cleanup``) are removed unless ``keep_staged_data``.
        """
        from raystx.data.cache_cleanup import new_cache_tag, remove_run_caches
        from raystx.ray_init import ensure_ray
        from raystx.train.preflight import check_run_start
        from raystx.train.run_lock import RunLock
        from raystx.train.signals import interrupt_handlers
        from raystx.train.storage import delete_tree, is_uri, join

        if resume_from_checkpoint is not None:
            self.args.resume_from_checkpoint = resume_from_checkpoint
        run_config = self._run_config()
        run_dir = join(run_config.storage_path, run_config.name)
        self._cache_tag = new_cache_tag()  # the nodes' caches of this run's staged data, removed at the end
        ensure_ray()  # first: ray.init installs its own SIGTERM handler, which the block below overrides
        created = not is_uri(run_dir) and not Path(run_dir).exists()
        with interrupt_handlers(self.args.output_dir):
            check_run_start(self, run_dir)
            try:
                with RunLock(run_dir):
                    try:
                        return self._train(resume_from_checkpoint)
                    finally:  # staged data is re-staged by any later run (a resume too)
                        if not self.args.keep_staged_data:
                            delete_tree(join(run_dir, STAGING_DIR))
                            remove_run_caches(self._cache_tag)
            except BaseException:
                if created:
                    _remove_if_only_bookkeeping(Path(run_dir))
                raise

    def _train(self, resume_from_checkpoint: str | bool | None = None) -> TrainOutput:
        """The run itself (``train()`` without its pre-start checks, lock and signal handling).

        ``self.timings`` then holds the driver's phases in seconds: ``prepare`` (checks, ``ray.init``, data
        staging and validation; for a large CSV/JSON/``IterableDataset`` input only the check of its first rows,
        its full staging then overlaps the next phase), ``workers`` (``TorchTrainer.fit``: worker start, the
        step loop, the final checkpoint, teardown), ``load_result`` (weights back into ``model``) and
        ``finish`` (summary, card).
        """
        from raystx.train.storage import delete_tree, join

        clock = _PhaseClock()
        if resume_from_checkpoint is not None:
            self.args.resume_from_checkpoint = resume_from_checkpoint
        run_config = self._run_config()
        run_dir = join(run_config.storage_path, run_config.name)
        self._check_output_dir(run_dir)
        sources, losses = self._stage(run_dir)
        if self.args.overwrite_output_dir and not self.args.resume_from_checkpoint:
            from raystx.train.storage import checkpoint_names

            for old in checkpoint_names(run_dir):
                delete_tree(join(run_dir, old))
            # Ray's record of the old run's checkpoints; left behind, it makes the new run's controller refuse
            # the folder as "corrupted" since the checkpoints it names are gone.
            delete_tree(join(run_dir, RAY_RUN_SNAPSHOT))
        clock.mark("prepare")
        show_progress = not self.args.disable_tqdm
        result = self._launch(sources, losses, run_dir, run_config, show_progress)
        sources = self._staging.resolved(sources)  # sources staged while the workers started: their full form
        clock.mark("workers")
        metric, mode = self._best_metric()
        best = BestCheckpoint(metric, mode, enabled=bool(self.args.load_best_model_at_end))
        out = self.state = collect(result, self.model, losses, best)
        clock.mark("load_result")
        if show_progress:
            from raystx.train.progress import summary_table

            print(summary_table(out.log_history, clock.total()), flush=True)
        self._attach_model_card(sources, losses, out, clock.total())
        clock.mark("finish")
        self.timings = clock.phases
        return out

    def _stage(self, run_dir: str) -> tuple[dict[str, Any], dict[str, nn.Module]]:
        """``_prepare`` into the run's staging folder, then the background staging of large inputs started
        (``self._staging``; unless ``_overlap_staging`` says no). On failure nothing is left behind (no staged
        data, no empty run folder this call created)."""
        from raystx.data.background import StagingJob, start_staging
        from raystx.train.storage import delete_tree, is_uri, join

        local_run_dir = None if is_uri(run_dir) else Path(run_dir)
        created_run_dir = local_run_dir is not None and not local_run_dir.exists()
        staging = join(run_dir, STAGING_DIR)
        self._staging = StagingJob()
        try:
            spare = self._spare_cpus()
            sources, losses = self._prepare(staging, defer=spare >= 1 and self._overlap_staging(run_dir))
            self._staging = start_staging(sources, concurrency=int(spare))
            return sources, losses
        except BaseException:
            delete_tree(staging)
            if created_run_dir and local_run_dir.is_dir() and not any(local_run_dir.iterdir()):
                local_run_dir.rmdir()
            raise

    def _check_batch_size(self) -> int:
        """The global batch size datasets are checked against (driver, and workers for data staged while they
        started): the one of the most workers the run may have, the strictest."""
        return self.args.per_device_train_batch_size * max_workers(self._scaling())

    def _spare_cpus(self) -> float:
        """CPUs of the cluster the workers do not reserve (``raystx.data.background.spare_cpus``)."""
        from raystx.data.background import spare_cpus
        from raystx.train.resources import scaling_need

        return spare_cpus(scaling_need(self._scaling()).get("CPU", 0.0))

    def _overlap_staging(self, run_dir: str) -> bool:
        """Whether large inputs are staged while the workers start (given CPUs the workers leave free: else
        staging would only compete with their start). Not with ``RAYSTX_STAGE_BEFORE_START=1``; not when the
        run is about to delete an earlier run's checkpoints (``overwrite_output_dir``): a data error found
        after the start must not cost them."""
        from raystx.data.background import overlap_enabled
        from raystx.train.storage import checkpoint_names

        if not overlap_enabled():
            return False
        overwrites = self.args.overwrite_output_dir and not self.args.resume_from_checkpoint
        return not (overwrites and checkpoint_names(run_dir))

    def _launch(
        self,
        sources: dict[str, Any],
        losses: dict[str, nn.Module],
        run_dir: str,
        run_config: Any,
        progress: bool,
    ) -> Any:
        """``driver.launch`` of this run's payload. If it fails, staging still running in the background is
        cancelled; a staged copy that is partial (a failed or cancelled pass) or that the workers' check of the
        whole dataset refused is removed, ``keep_staged_data`` or not (as ``_stage`` does on the driver)."""
        from raystx.data.errors import DatasetValidationError
        from raystx.train.storage import delete_tree, join

        try:
            return launch(
                self._payload(sources, losses, run_dir),
                self._scaling(),
                run_config,
                progress,
                max_pending_s=self.args.max_pending_s,
            )
        except BaseException as exc:
            partial = self._staging.stop()
            if partial or (self._staging.refs and isinstance(exc, DatasetValidationError)):
                delete_tree(join(run_dir, STAGING_DIR))
            raise

    def _payload(self, sources: dict[str, Any], losses: dict[str, nn.Module], run_dir: str) -> WorkerPayload:
        from raystx.train.storage import is_uri

        resume_path = None
        if isinstance(self.args.resume_from_checkpoint, str):
            resume_path = str(Path(self.args.resume_from_checkpoint).absolute())
        metric, mode = self._best_metric()
        tag = getattr(self, "_cache_tag", None)
        if tag:
            from raystx.data.cache_cleanup import tag_sources

            tag_sources(
                [*sources.values(), *(self._eval or {}).values()], tag, self.args.data_cache_max_bytes
            )
        # under FSDP, a weightless model when the workers can read the weights themselves (fsdp_ship)
        shipped = ship_model(self.model, losses, self.args)
        return WorkerPayload(
            model=shipped.model,
            losses=shipped.losses,
            initial_weights=shipped.initial_weights,
            initial_weights_kwargs=shipped.loader_kwargs,
            args=self.args,
            sources=sources,
            label_kinds=self._label_kinds,
            evaluator=self.evaluator,
            eval_datasets=self._eval,
            eval_label_kinds=self._eval_label_kinds,
            resume_from=resume_path,
            callbacks=list(self.callbacks),
            run_dir=None if is_uri(run_dir) else run_dir,
            best_metric_key=metric,
            greater_is_better=mode == "max",
            data_check_batch_size=self._check_batch_size(),
        )

    def hyperparameter_search(
        self,
        hp_space: Any = None,
        compute_objective: Callable[[dict[str, float]], float] | None = None,
        n_trials: int = 20,
        direction: str | list[str] | None = None,
        backend: str | None = "ray",
        hp_name: Callable[[Any], str] | None = None,
        **kwargs: Any,
    ):
        """transformers' ``Trainer.hyperparameter_search`` signature, run as Ray Tune + Optuna trials that each
        train on their own multi-worker TorchTrainer (see ``raystx.tune.hpo``). Needs ``model_init``."""
        from raystx.tune.hpo import hyperparameter_search

        return hyperparameter_search(
            self, hp_space, compute_objective, n_trials, direction, backend, hp_name, **kwargs
        )

    def _attach_model_card(self, sources, losses, out: TrainOutput, seconds: float) -> None:
        """Make ``model.save_pretrained`` write a card describing this training run."""
        from raystx.train.model_card import attach_model_card, collect_trainer_info

        best_step = None
        if self.args.load_best_model_at_end and out.checkpoint_path:
            suffix = Path(out.checkpoint_path).name.rsplit("-", 1)[-1]
            best_step = int(suffix) if suffix.isdigit() else None
        try:
            info = collect_trainer_info(
                sources=sources,
                losses=losses,
                args=self.args,
                log_history=out.log_history,
                evaluator=self.evaluator,
                world_size=out.world_size or trained_world_size(out.checkpoint_path, self._scaling()),
                training_time_s=seconds,
                best_step=best_step,
            )
            attach_model_card(self.model, info)
        except Exception as exc:  # noqa: BLE001 - a card problem must not fail a finished training run
            logger.warning("Could not prepare the model card: %s", exc)


# What Ray Train writes into a run folder before any checkpoint: a run that fails before its first checkpoint
# leaves a folder this call created empty again, so it can be reused as if nothing had happened.
RAY_BOOKKEEPING = (".validate_storage_marker", RAY_RUN_SNAPSHOT)


def _remove_if_only_bookkeeping(run_dir: Path) -> None:
    if not run_dir.is_dir() or any(p.name not in RAY_BOOKKEEPING for p in run_dir.iterdir()):
        return
    for name in RAY_BOOKKEEPING:
        (run_dir / name).unlink(missing_ok=True)
    run_dir.rmdir()


class _PhaseClock:
    """Seconds spent in consecutive named phases (``mark(name)`` closes the phase running since the last mark)."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 3)
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.started


def _is_loss_factory(obj: Any) -> bool:
    return callable(obj) and not isinstance(obj, nn.Module)


def _check_fsdp(args: Any, losses: dict[str, nn.Module], has_eval: bool, num_workers: int) -> None:
    """FSDP's driver-side checks (``raystx.train.fsdp_options.check_fsdp_run``); its warnings are logged."""
    from raystx.train.fsdp_options import check_fsdp_run, parse_fsdp

    options = parse_fsdp(args.fsdp, args.fsdp_config)
    for warning in check_fsdp_run(options, losses, has_eval, num_workers, args.dataloader_drop_last):
        logger.warning(warning)
