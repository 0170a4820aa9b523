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
        global_batch_size=args.per_device_train_batch_size * config.scaling.num_workers,
        drop_last=args.dataloader_drop_last,  # as the trainer
    )
    if config.evaluator is not None:
        build_evaluator(config.evaluator)
    return sources
