"""``fit()``: the sentence-transformers v2 training API, mapped onto ``SentenceTransformerTrainer``.

A v2 script (``InputExample`` lists in ``DataLoader``s, one loss per loader, ``model.fit(...)``) runs with its
imports changed and, to use more than one worker, a ``scaling_config``. The mapping follows
sentence-transformers v3+'s own ``fit``:

* each ``(DataLoader, loss)`` objective becomes a dataset ``_dataset_{i}`` (1-based) with columns
  ``sentence_0, sentence_1, ...`` and ``label`` (left out when every label is 0), trained with its loss; several
  objectives are drawn round-robin (``multi_dataset_batch_sampler="round_robin"``);
* the batch size is the loaders' ``batch_size`` (per worker); a ``NoDuplicatesDataLoader`` selects
  ``batch_sampler="no_duplicates"``, a ``SentenceLabelDataset`` ``"group_by_label"``;
* ``scheduler`` names map to ``lr_scheduler_type`` (``WarmupLinear`` -> ``linear`` ...), ``optimizer_params`` to
  ``learning_rate``/``adam_epsilon``/``adam_beta*``; ``steps_per_epoch`` with ``epochs == 1`` sets ``max_steps``;
* the evaluator runs every ``evaluation_steps`` steps, or at every epoch end when that is 0;
* ``output_path`` receives the best model by the evaluator's primary metric (``save_best_model``), or the final
  model when there is no evaluator; ``checkpoint_path`` receives resumable checkpoints every
  ``checkpoint_save_steps`` steps.

The evaluator, ``callback(score, epoch, steps)`` and the best-model saving run in the rank-0 worker (as
callbacks run inside sentence-transformers' training process); the driver's ``model`` holds the final weights
when ``fit`` returns.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from raystx.data.input_example import examples_to_columns
from raystx.train.args import BatchSamplers, MultiDatasetBatchSamplers, SentenceTransformerTrainingArguments
from raystx.train.callbacks import TrainerCallback, TrainerState
from raystx.train.scratch import owned_temp_dir

if TYPE_CHECKING:
    from raystx.evaluation.protocol import Evaluator

logger = logging.getLogger("raystx.train")

SCHEDULERS = {
    "constantlr": "constant",
    "warmupconstant": "constant_with_warmup",
    "warmuplinear": "linear",
    "warmupcosine": "cosine",
    "warmupcosinewithhardrestarts": "cosine_with_restarts",
}
DEFAULT_OPTIMIZER_PARAMS = {"lr": 2e-5}


# ------------------------------------------------------------------------------------------------ callbacks
def _primary_key(evaluator: Evaluator, metrics: dict[str, float]) -> str | None:
    """The metrics key of the evaluator's primary metric (keys carry an ``eval_`` prefix in the loop)."""
    primary = getattr(evaluator, "primary_metric", None) or "evaluator"
    for key in metrics:
        if key.endswith(primary):
            return key
    return None


class SaveBestModelCallback(TrainerCallback):
    """Saves the model to ``output_path`` whenever the evaluator's primary metric improves (rank 0)."""

    def __init__(self, output_path: str, evaluator: Evaluator) -> None:
        self.output_path = output_path
        self.evaluator = evaluator
        self.best: float | None = None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if getattr(self.evaluator, "greater_is_better", True):
            return value > self.best
        return value < self.best

    def on_evaluate(self, args, state: TrainerState, metrics: dict[str, float], **kwargs: Any) -> None:
        key = _primary_key(self.evaluator, metrics)
        model = kwargs.get("model")
        if key is None or model is None:
            return
        value = float(metrics[key])
        if self._better(value):
            self.best = value
            model.save(self.output_path)
            logger.info(
                "Saved the best model so far (%s=%.6g, step %d) to %s",
                key,
                value,
                state.global_step,
                self.output_path,
            )


class ScoreCallback(TrainerCallback):
    """Calls a v2 ``callback(score, epoch, steps)`` after every evaluation with the primary metric (rank 0)."""

    def __init__(self, callback: Callable[[float, float, int], Any], evaluator: Evaluator) -> None:
        self.callback = callback
        self.evaluator = evaluator

    def on_evaluate(self, args, state: TrainerState, metrics: dict[str, float], **kwargs: Any) -> None:
        key = _primary_key(self.evaluator, metrics)
        if key is not None:
            self.callback(metrics[key], state.epoch, state.global_step)


# ------------------------------------------------------------------------------------------------ mapping
@dataclass
class FitPlan:
    """What ``fit`` hands to the trainer: datasets and losses by name, arguments, callbacks, resume point."""

    datasets: dict[str, Any]
    losses: dict[str, nn.Module]
    args: SentenceTransformerTrainingArguments
    callbacks: list[TrainerCallback] = field(default_factory=list)
    resume_from_checkpoint: str | None = None
    # set when no checkpoint_path was given: ``fit`` then trains in a temporary folder of its own, removed after
    temporary_output_dir: str | None = None


def _is_named(obj: Any, class_name: str) -> bool:
    return any(cls.__name__ == class_name for cls in type(obj).__mro__)


def _loader_examples(loader: Any) -> list[Any]:
    """The ``InputExample``s a v2 data loader yields, in iteration order (collation switched off meanwhile)."""
    if _is_named(loader, "NoDuplicatesDataLoader"):
        return list(loader.train_examples)
    previous = getattr(loader, "collate_fn", None)
    try:
        loader.collate_fn = _identity
    except (AttributeError, ValueError):
        previous = None
    try:
        examples: list[Any] = []
        for batch in loader:
            examples.extend(batch if isinstance(batch, (list, tuple)) else [batch])
    finally:
        if previous is not None:
            loader.collate_fn = previous
    return examples


def _identity(batch: Any) -> Any:
    return batch


def _loader_batch_size(loader: Any, index: int) -> int | None:
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
        logger.warning(
            "The data loader of training objective %d uses a custom batch_sampler; fit() keeps only its batch "
            "size, not its batch grouping. Use SentenceTransformerTrainer for full control.",
            index,
        )
    return int(size) if size else None


def _optimizer_arguments(optimizer_class: Any, optimizer_params: dict[str, Any]) -> dict[str, Any]:
    if getattr(optimizer_class, "__name__", "") != "AdamW":
        raise ValueError(
            f"optimizer_class={getattr(optimizer_class, '__name__', optimizer_class)!r} is not supported: raystx "
            "trains with AdamW (decoupled weight decay). Use SentenceTransformerTrainer for other optimizers."
        )
    out: dict[str, Any] = {}
    unknown = []
    for key, value in optimizer_params.items():
        if key == "lr":
            out["learning_rate"] = float(value)
        elif key == "eps":
            out["adam_epsilon"] = float(value)
        elif key == "betas":
            out["adam_beta1"], out["adam_beta2"] = (float(v) for v in value)
        elif key == "correct_bias":
            if not value:
                logger.warning(
                    "optimizer_params correct_bias=False is ignored: AdamW always corrects the bias"
                )
        elif key == "weight_decay":
            logger.warning("optimizer_params weight_decay is ignored; fit()'s weight_decay argument sets it")
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"optimizer_params {sorted(unknown)} are not supported by fit(); use lr, eps, betas (and the "
            "weight_decay argument)"
        )
    return out


def _latest_checkpoint(directory: str) -> str | None:
    root = Path(directory)
    if not root.is_dir():
        logger.warning("Checkpoint directory %s does not exist; starting from scratch", directory)
        return None
    from raystx.train.checkpoint import sorted_checkpoints

    found = sorted_checkpoints(root)  # newest first
    if not found:
        logger.warning("No checkpoints found in %s; starting from scratch", directory)
        return None
    return str(found[0])


def _objective_datasets(
    objectives: list[tuple[Any, nn.Module]],
) -> tuple[dict[str, Any], dict[str, nn.Module], int, BatchSamplers]:
    """One named dataset and loss per ``(DataLoader, loss)`` objective, the batch size (the last loader's) and the
    batch sampler the loaders imply (``NoDuplicatesDataLoader``, a ``SentenceLabelDataset``)."""
    import datasets

    batch_size = 8
    batch_sampler = BatchSamplers.BATCH_SAMPLER
    train_datasets: dict[str, Any] = {}
    losses: dict[str, nn.Module] = {}
    sizes = []
    for index, (loader, loss) in enumerate(objectives, start=1):
        if _is_named(loader, "NoDuplicatesDataLoader"):
            batch_sampler = BatchSamplers.NO_DUPLICATES
        elif _is_named(getattr(loader, "dataset", None), "SentenceLabelDataset"):
            batch_sampler = BatchSamplers.GROUP_BY_LABEL
        size = _loader_batch_size(loader, index)
        if size is not None:
            if sizes and size != sizes[-1]:
                logger.warning(
                    "The training objectives use different batch sizes (%s); all train with the last one, %d",
                    [*sizes, size],
                    size,
                )
            batch_size = size
            sizes.append(size)
        name = f"_dataset_{index}"
        train_datasets[name] = datasets.Dataset.from_dict(examples_to_columns(_loader_examples(loader)))
        losses[name] = loss

    return train_datasets, losses, batch_size, batch_sampler


def _max_steps(steps_per_epoch: int | None, epochs: int) -> int:
    """fit()'s ``steps_per_epoch`` as ``max_steps`` (one epoch only; -1: the full datasets)."""
    if steps_per_epoch is None or steps_per_epoch <= 0:
        return -1
    if epochs == 1:
        return int(steps_per_epoch)
    logger.warning("steps_per_epoch is ignored when epochs > 1: every epoch covers the full datasets")
    return -1


def _amp_flags(use_amp: bool, use_gpu: bool) -> tuple[bool, bool]:
    """``(fp16, bf16)`` for fit()'s ``use_amp``: fp16 on GPU workers, bfloat16 autocast on CPU ones."""
    fp16, bf16 = bool(use_amp and use_gpu), bool(use_amp and not use_gpu)
    if bf16:
        logger.warning("use_amp=True on CPU workers trains in bfloat16 autocast (fp16 needs GPUs)")
    return fp16, bf16


def prepare_fit(
    model: nn.Module,
    train_objectives: Iterable[tuple[Any, nn.Module]],
    evaluator: Evaluator | None = None,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    scheduler: str = "WarmupLinear",
    warmup_steps: int = 10000,
    optimizer_class: Any = None,
    optimizer_params: dict[str, Any] | None = None,
    weight_decay: float = 0.01,
    evaluation_steps: int = 0,
    output_path: str | None = None,
    save_best_model: bool = True,
    max_grad_norm: float = 1,
    use_amp: bool = False,
    callback: Callable[[float, float, int], Any] | None = None,
    show_progress_bar: bool = True,
    checkpoint_path: str | None = None,
    checkpoint_save_steps: int = 500,
    checkpoint_save_total_limit: int = 0,
    resume_from_checkpoint: bool = False,
    use_gpu: bool = False,
) -> FitPlan:
    """Turn ``fit`` arguments into the trainer's datasets, losses, arguments and callbacks (no training).

    Arguments are those of ``fit`` (``use_gpu``: whether the workers have GPUs, for ``use_amp``).
    """
    import torch

    objectives = list(train_objectives)
    if not objectives:
        raise ValueError("fit() needs at least one (DataLoader, loss) training objective")
    scheduler_type = SCHEDULERS.get(str(scheduler).lower())
    if scheduler_type is None:
        raise ValueError(
            f"Unknown scheduler {scheduler!r}; use one of ConstantLR, WarmupConstant, WarmupLinear, WarmupCosine, WarmupCosineWithHardRestarts"
        )
    optimizer_args = _optimizer_arguments(
        optimizer_class or torch.optim.AdamW,
        dict(DEFAULT_OPTIMIZER_PARAMS if optimizer_params is None else optimizer_params),
    )

    train_datasets, losses, batch_size, batch_sampler = _objective_datasets(objectives)
    max_steps = _max_steps(steps_per_epoch, epochs)

    temporary = None
    if checkpoint_path is None:  # a name only: ``fit`` makes its own folder for the run and removes it after
        temporary = os.path.join(tempfile.gettempdir(), f"raystx-fit-{uuid.uuid4().hex}")
    output_dir = os.path.abspath(checkpoint_path) if checkpoint_path else temporary
    fp16, bf16 = _amp_flags(use_amp, use_gpu)
    eval_strategy = "no"
    if evaluator is not None:
        eval_strategy = "steps" if evaluation_steps and evaluation_steps > 0 else "epoch"
    args = SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        batch_sampler=batch_sampler,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.ROUND_ROBIN,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        num_train_epochs=epochs,
        max_steps=max_steps,
        lr_scheduler_type=scheduler_type,
        warmup_steps=int(warmup_steps) if scheduler_type != "constant" else 0,
        weight_decay=float(weight_decay),
        eval_strategy=eval_strategy,
        eval_steps=evaluation_steps if eval_strategy == "steps" else None,
        max_grad_norm=float(max_grad_norm),
        fp16=fp16,
        bf16=bf16,
        disable_tqdm=not show_progress_bar,
        save_strategy="steps" if checkpoint_path is not None else "no",
        save_steps=checkpoint_save_steps,
        save_total_limit=checkpoint_save_total_limit or None,
        **optimizer_args,
    )

    callbacks: list[TrainerCallback] = []
    if evaluator is not None and output_path is not None and save_best_model:
        callbacks.append(SaveBestModelCallback(os.path.abspath(output_path), evaluator))
    if evaluator is not None and callback is not None:
        callbacks.append(ScoreCallback(callback, evaluator))
    resume = _latest_checkpoint(checkpoint_path) if checkpoint_path and resume_from_checkpoint else None
    return FitPlan(train_datasets, losses, args, callbacks, resume, temporary)


def fit(
    model: nn.Module,
    train_objectives: Iterable[tuple[Any, nn.Module]],
    evaluator: Evaluator | None = None,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    scheduler: str = "WarmupLinear",
    warmup_steps: int = 10000,
    optimizer_class: Any = None,
    optimizer_params: dict[str, Any] | None = None,
    weight_decay: float = 0.01,
    evaluation_steps: int = 0,
    output_path: str | None = None,
    save_best_model: bool = True,
    max_grad_norm: float = 1,
    use_amp: bool = False,
    callback: Callable[[float, float, int], Any] | None = None,
    show_progress_bar: bool = True,
    checkpoint_path: str | None = None,
    checkpoint_save_steps: int = 500,
    checkpoint_save_total_limit: int = 0,
    resume_from_checkpoint: bool = False,
    scaling_config: Any = None,
    run_config: Any = None,
) -> Any:
    """Train ``model`` the sentence-transformers v2 way, on Ray Train workers; returns the ``TrainOutput``.

    Args:
        model: the ``raystx.models.SentenceTransformer`` every loss wraps; holds the final weights afterwards.
        train_objectives: ``[(DataLoader of InputExample, loss), ...]``; several are trained round-robin.
        evaluator: run every ``evaluation_steps`` steps (or each epoch end when 0) on rank 0.
        epochs / steps_per_epoch: training length (``steps_per_epoch`` only applies when ``epochs == 1``).
        scheduler / warmup_steps: ConstantLR, WarmupConstant, WarmupLinear, WarmupCosine,
            WarmupCosineWithHardRestarts with that many warmup steps.
        optimizer_class / optimizer_params / weight_decay: AdamW with ``lr`` (``eps``, ``betas``).
        output_path / save_best_model: where the best model (or, without evaluator, the final one) is saved.
        max_grad_norm: gradient clipping. use_amp: fp16 on GPU workers, bf16 autocast on CPU workers.
        callback: ``callback(score, epoch, steps)`` after each evaluation (called in the rank-0 worker).
        show_progress_bar: progress bars on/off.
        checkpoint_path / checkpoint_save_steps / checkpoint_save_total_limit: resumable checkpoints (0 = keep all).
        resume_from_checkpoint: continue from the newest ``checkpoint-*`` under ``checkpoint_path``.
        scaling_config / run_config: Ray Train configs (default: one CPU worker).
    """
    from raystx.train.trainer import SentenceTransformerTrainer

    plan = prepare_fit(
        model,
        train_objectives,
        evaluator=evaluator,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        scheduler=scheduler,
        warmup_steps=warmup_steps,
        optimizer_class=optimizer_class,
        optimizer_params=optimizer_params,
        weight_decay=weight_decay,
        evaluation_steps=evaluation_steps,
        output_path=output_path,
        save_best_model=save_best_model,
        max_grad_norm=max_grad_norm,
        use_amp=use_amp,
        callback=callback,
        show_progress_bar=show_progress_bar,
        checkpoint_path=checkpoint_path,
        checkpoint_save_steps=checkpoint_save_steps,
        checkpoint_save_total_limit=checkpoint_save_total_limit,
        resume_from_checkpoint=resume_from_checkpoint,
        use_gpu=bool(getattr(scaling_config, "use_gpu", False)),
    )
    if plan.temporary_output_dir is not None:  # made now, owned by this process: swept later if it is killed
        owned = owned_temp_dir("fit")
        plan.args.output_dir, plan.temporary_output_dir = str(owned / "run"), str(owned)
    try:
        trainer = SentenceTransformerTrainer(
            model=model,
            args=plan.args,
            train_dataset=plan.datasets,
            loss=plan.losses,
            evaluator=evaluator,
            callbacks=plan.callbacks,
            scaling_config=scaling_config,
            run_config=run_config,
        )
        output = trainer.train(resume_from_checkpoint=plan.resume_from_checkpoint)
    finally:
        if plan.temporary_output_dir is not None:
            shutil.rmtree(plan.temporary_output_dir, ignore_errors=True)
    if output_path is not None and evaluator is None:
        model.save(output_path)
    return output


class FitMixin:
    """Adds the v2 ``fit(...)`` method to a model class (``class M(FitMixin, SentenceTransformer)``)."""

    def fit(self, train_objectives: Iterable[tuple[Any, nn.Module]], **kwargs: Any) -> Any:
        return fit(self, train_objectives, **kwargs)
