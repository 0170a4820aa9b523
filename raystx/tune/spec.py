"""A sweep described by a YAML experiment config plus ``search:`` and ``tune:`` sections.

``load_sweep(path, overrides)`` reads the file, applies ``--set`` overrides, validates the training part as an
``ExperimentConfig`` and parses the search space and the tune settings. ``prepare_trials(spec, staging_dir)`` then
does on the driver, before any trial starts, everything that is the same for many trials:

* every combination of categorical choices (the loss, and datasets that come with it through ``set:`` options) is
  turned into a config and validated (unknown keys, bad loss arguments, datasets that do not fit the loss): a bad
  option fails the sweep here, naming the option;
* each distinct ``train_data``/``evaluator`` pair is read and staged once (Parquet under the sweep directory) and
  its evaluator built once; trials open the staged copy memory-mapped instead of re-reading the files.

Trials get a ``ConfigTrainerFactory`` that builds their ``SentenceTransformerTrainer`` from the patched config and
those prepared data.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from raystx.config import (
    ConfigError,
    ExperimentConfig,
    ScalingSection,
    format_errors,
    read_raw,
    validate_experiment,
)
from raystx.train.workers import max_workers
from raystx.tune.settings import TuneSettings
from raystx.tune.space import SearchSpace, SearchSpaceError, apply_assignments

DATA_SECTIONS = ("train_data", "evaluator")


def experiment_from_raw(raw: dict[str, Any], base_dir: Path, where: str) -> ExperimentConfig:
    """Validate a raw training config (paths relative to ``base_dir``); errors name ``where`` and the keys."""
    return validate_experiment(raw, base_dir, where)


@dataclass
class SweepSpec:
    """A parsed sweep: the raw training config, its folder, the search space and the tune settings."""

    raw: dict[str, Any]
    base_dir: Path
    space: SearchSpace
    settings: TuneSettings
    path: Path | None = None
    base: ExperimentConfig | None = None

    def experiment(self, assignments: dict[str, Any], where: str = "config") -> ExperimentConfig:
        return experiment_from_raw(apply_assignments(self.raw, assignments), self.base_dir, where)

    def default_name(self) -> str:
        if self.settings.name:
            return self.settings.name
        return self.path.stem if self.path is not None else "sweep"

    def default_storage(self) -> str:
        """``tune.storage_path`` (a URI as given, a local path relative to the sweep file's folder), else a
        ``sweeps`` folder next to ``args.output_dir`` (relative to the current folder, or on its object store)."""
        from raystx.train.storage import join, parent, resolve

        if self.settings.storage_path:
            return resolve(self.settings.storage_path, self.base_dir)
        output_dir = resolve(str(self.raw.get("args", {}).get("output_dir", "outputs")))
        return join(parent(output_dir), "sweeps")


def sweep_from_dict(raw: dict[str, Any], base_dir: str | Path = ".", path: Path | None = None) -> SweepSpec:
    """Split a raw sweep dict into training config / ``search`` / ``tune`` and validate each part."""
    raw = copy.deepcopy(dict(raw))
    search = raw.pop("search", None) or {}
    tune = raw.pop("tune", None) or {}
    where = str(path) if path else "sweep config"
    try:
        settings = TuneSettings.model_validate(tune)
    except ValidationError as exc:
        raise format_errors(exc, f"tune section of {where}", section="tune") from None
    try:
        space = SearchSpace(search)
    except SearchSpaceError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    base_dir = Path(base_dir).absolute()
    base = experiment_from_raw(raw, base_dir, where)
    return SweepSpec(raw=raw, base_dir=base_dir, space=space, settings=settings, path=path, base=base)


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Read a sweep YAML (a training config plus ``search:`` and ``tune:``) with ``--set`` overrides and
    ``${VAR}`` references expanded, exactly as ``load_config`` reads a training config."""
    path = Path(path)
    return sweep_from_dict(read_raw(path, overrides, what="sweep file"), path.parent, path)


# ------------------------------------------------------------------------------------------ prepared data


def data_key(config: ExperimentConfig) -> str:
    """A short hash of the config's data sections (train_data + evaluator): equal keys share staged data."""
    payload = config.model_dump(include=set(DATA_SECTIONS))
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class PreparedData:
    """Staged training sources (``{name: TrainingSource}``), the built evaluator of one data variant, and the
    evaluator's metrics on the untrained model (``baseline``; running it once also names its primary metric)."""

    sources: dict[str, Any]
    evaluator: Any = None
    baseline: dict[str, float] | None = None


@dataclass
class ConfigTrainerFactory:
    """Build a trial's ``SentenceTransformerTrainer`` from the sweep's raw config patched with the trial's
    assignments, using data prepared on the driver (``prepared[data_key(config)]``)."""

    raw: dict[str, Any]
    base_dir: Path
    prepared: dict[str, PreparedData]
    scaling_override: ScalingSection | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, assignments: dict[str, Any], where: str = "trial config") -> ExperimentConfig:
        return experiment_from_raw(apply_assignments(self.raw, assignments), self.base_dir, where)

    def __call__(self, assignments: dict[str, Any], params: dict[str, Any]) -> Any:
        from raystx.train.build import build_trainer

        config = self.config(assignments, f"trial config {params}")
        key = data_key(config)
        if key not in self.prepared:
            raise SearchSpaceError(
                f"the trial {params} uses train_data/evaluator settings the driver did not prepare; the search may "
                "change datasets or the evaluator only through choice options with fixed values"
            )
        data = self.prepared[key]
        return build_trainer(
            config,
            train_dataset=dict(data.sources),  # prepared sources pass through the trial's prepare_sources
            evaluator=data.evaluator,
            args_overrides=self.overrides,
            scaling=self.scaling_override,
            with_run_config=False,
        )


def prepare_trials(spec: SweepSpec, staging_dir: str, limit: int = 64) -> ConfigTrainerFactory:
    """Validate every structural variant of the sweep and stage each distinct data variant once (driver side).

    Raises ``ConfigError`` (bad config keys in an option) or the data plane's ``DatasetValidationError`` (a
    dataset that does not fit the option's loss), naming the option's parameters."""
    from raystx.data.sources import prepare_sources, validate_sources
    from raystx.train.build import build_dataset, build_evaluator, build_losses, build_model, check_components
    from raystx.train.storage import join

    prepared: dict[str, PreparedData] = {}
    models: dict[str, Any] = {}
    scaling_override = spec.settings.resources
    for assignments, params in spec.space.structural_variants(limit=limit):
        label = ", ".join(f"{k}={v}" for k, v in params.items() if spec.space.distributions[k].categorical)
        where = f"sweep option ({label})" if label else "sweep config"
        config = spec.experiment(assignments, where)
        try:
            check_components(config)  # loss/evaluator kwargs, before any data is staged or model built
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        key = data_key(config)
        if key not in prepared:
            train = {name: build_dataset(name, dc) for name, dc in config.train_data.items()}
            select = {name: dc.columns for name, dc in config.train_data.items() if dc.columns}
            sources = prepare_sources(
                train, staging_dir=join(str(staging_dir), key), select_columns=select or None
            )
            evaluator = build_evaluator(config.evaluator) if config.evaluator else None
            prepared[key] = PreparedData(sources=sources, evaluator=evaluator)
        model_key = json.dumps(config.model.model_dump(), sort_keys=True)
        if model_key not in models:
            models[model_key] = build_model(config)
        model = models[model_key]
        data = prepared[key]
        if data.evaluator is not None and data.baseline is None:
            data.baseline = {
                k: float(v) for k, v in data.evaluator(model).items() if isinstance(v, (int, float))
            }
        try:
            losses = build_losses(config, model)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        workers = max_workers(scaling_override or config.scaling)
        batch = int(config.args.get("per_device_train_batch_size", 8)) * workers
        try:
            validate_sources(prepared[key].sources, losses, global_batch_size=batch)
        except ValueError as exc:
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (f"{where}: {exc.args[0]}", *exc.args[1:])
            raise
    return ConfigTrainerFactory(
        raw=spec.raw, base_dir=spec.base_dir, prepared=prepared, scaling_override=scaling_override
    )
