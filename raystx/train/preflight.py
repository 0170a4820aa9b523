"""``raystx validate``: check a config as ``raystx train`` would before its workers start, without Ray.

``check_config(config)`` runs, cheapest first: the losses' and evaluator's kwargs against their constructors,
the training arguments (with the final GPU setting) and ``report_to``, then loads the model, builds the losses
and the evaluator, reads each dataset's facts and a sample of rows with pyarrow (``raystx.data.local``) and
checks them against the losses (``validate_sources``, as the trainer does). Returns ``{name: source}``; raises
``ConfigError``, ``ValueError`` (arguments) or the data plane's ``DatasetValidationError``/``DatasetReadError``.
"""

from __future__ import annotations

from typing import Any

from raystx.config import ExperimentConfig
from raystx.train.workers import max_workers


def check_config(config: ExperimentConfig) -> dict[str, Any]:
    """Everything ``raystx train`` checks on the driver, with no Ray instance, worker or output written."""
    from raystx.data.local import Transform, scan_source
    from raystx.data.sources import validate_sources
    from raystx.train.build import build_args, build_evaluator, build_losses, build_model, check_components
    from raystx.train.integrations import check_report_to

    check_components(config)
    args = build_args(config)
    args.validate(use_gpu=config.scaling.use_gpu)
    check_report_to(args)
    sources = {
        name: scan_source(
            name, dc.path, dc.columns, Transform(rename=dc.rename, limit=dc.limit, score_scale=dc.score_scale)
        )
        for name, dc in config.train_data.items()
    }
    model = build_model(config)
    losses = build_losses(config, model)
    validate_sources(
        sources,
        losses,
        global_batch_size=args.per_device_train_batch_size * max_workers(config.scaling),
        drop_last=args.dataloader_drop_last,  # as the trainer
    )
    evaluator = build_evaluator(config.evaluator) if config.evaluator is not None else None
    from raystx.train.metric_names import check_metric_for_best_model

    check_metric_for_best_model(args.metric_for_best_model, evaluator, model, None)
    return sources


def check_output_dir_is_folder(run_dir: str) -> None:
    """Raise ``NotADirectoryError`` when the run folder (or a folder above it) is an existing file."""
    from pathlib import Path

    from raystx.train.storage import is_uri

    if is_uri(run_dir):
        return
    for path in (Path(run_dir), *Path(run_dir).parents):
        if path.exists():
            if not path.is_dir():
                raise NotADirectoryError(
                    f"output_dir {run_dir}: {path} is an existing file, not a folder, so the run cannot write "
                    "its checkpoints there; choose another output_dir (or move the file away)"
                )
            return


def check_run_start(trainer: Any, run_dir: str) -> None:
    """The trainer's checks that need no data (before staging, before any worker starts):

    the run folder is not a file; the workers fit the cluster (``raystx.train.resources``; Ray must be up);
    some parameter is trainable; ``metric_for_best_model`` is a key the run logs (``raystx.train.metric_names``); a resumed checkpoint was
    written by this model and these losses (``raystx.train.resume_check``)."""
    from raystx.train.metric_names import check_metric_for_best_model
    from raystx.train.resources import check_scaling_fits
    from raystx.train.resume_check import check_resume_compatible, resumed_checkpoint

    check_output_dir_is_folder(run_dir)
    if not any(p.requires_grad for p in trainer.model.parameters()):  # losses are built only then
        check_trainable_parameters(trainer.model, _losses_or_none(trainer))
    check_scaling_fits(trainer._scaling())
    eval_names = None
    if trainer.eval_dataset is not None:
        eval_names = list(trainer.eval_dataset) if isinstance(trainer.eval_dataset, dict) else []
    check_metric_for_best_model(
        trainer.args.metric_for_best_model, trainer.evaluator, trainer.model, eval_names
    )
    checkpoint = resumed_checkpoint(run_dir, trainer.args.resume_from_checkpoint)
    if checkpoint is not None and checkpoint.is_dir():
        check_resume_compatible(checkpoint, trainer.model, _losses_or_none(trainer))


def check_trainable_parameters(model: Any, losses: dict[str, Any] | None) -> None:
    """``ValueError`` when neither the model nor the losses have a parameter with ``requires_grad`` (a run would
    change nothing): e.g. a model whose PEFT adapter was loaded for inference, as ``load_adapter`` does."""
    modules = [model, *(losses or {}).values()]
    if any(p.requires_grad for m in modules for p in m.parameters()):
        return
    hint = ""
    if getattr(model, "transformers_model", None) is not None and getattr(
        model.transformers_model, "peft_config", None
    ):
        hint = (
            " The model's PEFT adapter is frozen (a loaded adapter is for inference, as in sentence-transformers):"
            " call model.set_adapter(name) or model.load_adapter(path, is_trainable=True) to train it."
        )
    raise ValueError(
        f"No parameter of the model or the losses requires a gradient: training would change nothing.{hint}"
    )


def _losses_or_none(trainer: Any) -> dict[str, Any] | None:
    """The run's losses by dataset name, or ``None`` when the names cannot be known before staging."""
    from raystx.train.trainer import DEFAULT_DATASET_NAME

    if isinstance(trainer.loss, dict):
        names = list(trainer.loss)
    elif isinstance(trainer.train_dataset, dict):
        names = list(trainer.train_dataset)
    else:
        names = [DEFAULT_DATASET_NAME]
    try:
        return trainer._losses_by_dataset(names)
    except Exception:  # noqa: BLE001 - the pairing error is reported by the data checks that follow
        return None
