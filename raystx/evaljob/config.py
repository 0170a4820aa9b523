"""The YAML config of ``raystx evaluate`` (and ``jobs/eval.py``), and building its evaluators on the driver.

Sections:

- ``model``: the saved model to evaluate (``name_or_path``: a directory, or ``package:NAME``), as in training.
- ``evaluators``: a list; each item names a class of ``raystx.evaluation`` (``type``) with its ``kwargs`` and
  where its data comes from:
  - ``path`` + ``columns``: a csv/tsv/json/jsonl/parquet file; ``columns`` maps constructor arguments to file
    columns (``{sentences1: sentence1, sentences2: sentence2, scores: score}``), optional ``score_scale``
    (divides ``scores``/``labels``) and ``limit`` (first rows);
  - ``beir`` (``InformationRetrievalEvaluator`` only): a local BEIR directory (``corpus.jsonl``,
    ``queries.jsonl``, ``qrels/{beir_split}.tsv``) that fills ``queries``, ``corpus`` and ``relevant_docs``;
  - neither: everything is in ``kwargs`` (``NanoBEIREvaluator`` with ``dataset_id`` a local folder of BEIR
    directories).
- ``scaling``: ``num_workers`` Ray workers (``0``: this process, no Ray), ``use_gpu``, ``cpus_per_worker``.
- ``output_dir``: where ``metrics.json`` and ``metrics.md`` go; ``storage_path``: Ray Train's run folder (default:
  a temporary folder; on a multi-node cluster a path every node can reach).

``${VAR}`` and ``--set`` work as for ``raystx train``; relative paths are relative to the config file's folder.
Everything is checked before Ray starts: unknown keys, unknown evaluator types, kwargs the constructor does not
take, missing files or columns; errors name ``evaluators[i]`` and its type.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from raystx.config import (
    ConfigError,
    ModelConfig,
    PositiveFloat,
    PositiveInt,
    _Strict,
    format_errors,
    read_raw,
    relative_to_config,
)


class EvaluatorSpec(_Strict):
    """One evaluator: its class in ``raystx.evaluation``, its kwargs and its data (see the module doc)."""

    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    columns: dict[str, str] | None = None
    score_scale: PositiveFloat | None = None
    limit: PositiveInt | None = None
    beir: str | None = None
    beir_split: str = "test"

    @model_validator(mode="after")
    def _one_data_source(self) -> EvaluatorSpec:
        if (self.path is None) != (self.columns is None):
            raise ValueError(
                "give `path` and `columns` together (columns: {constructor argument: file column})"
            )
        if self.beir is not None and self.path is not None:
            raise ValueError("give either `beir` (a BEIR directory) or `path` + `columns`, not both")
        if self.beir is not None and self.type != "InformationRetrievalEvaluator":
            raise ValueError(
                f"`beir` fills InformationRetrievalEvaluator's queries/corpus/relevant_docs; for {self.type} "
                "use `path` + `columns` (NanoBEIREvaluator: kwargs.dataset_id = a folder of BEIR directories)"
            )
        return self


class EvalScaling(_Strict):
    """How many Ray workers encode (``0``: in this process, no Ray); ``cpus_per_worker`` is the Ray resource each
    reserves and its torch thread count (at least 1)."""

    num_workers: int = Field(2, ge=0)
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0


class EvalJobConfig(_Strict):
    model: ModelConfig
    evaluators: list[EvaluatorSpec] = Field(min_length=1)
    scaling: EvalScaling = EvalScaling()
    output_dir: str
    storage_path: str | None = None


def load_eval_config(path: str | Path, overrides: list[str] | None = None) -> EvalJobConfig:
    """Read, override, expand and validate an evaluation config; errors name the dotted key at fault."""
    path = Path(path)
    raw = read_raw(path, overrides)
    try:
        config = EvalJobConfig.model_validate(copy.deepcopy(raw))
    except ValidationError as exc:
        raise format_errors(exc, f"evaluation config {path}") from None
    base = path.parent
    config.model.name_or_path = relative_to_config(config.model.name_or_path, base)
    for spec in config.evaluators:
        spec.path = relative_to_config(spec.path, base)
        spec.beir = relative_to_config(spec.beir, base)
        if spec.type == "NanoBEIREvaluator" and isinstance(spec.kwargs.get("dataset_id"), str):
            spec.kwargs["dataset_id"] = relative_to_config(spec.kwargs["dataset_id"], base)
    return config


def _data_kwargs(where: str, spec: EvaluatorSpec) -> dict[str, Any]:
    """The constructor arguments that come from the spec's data: file columns or a BEIR directory."""
    if spec.beir is not None:
        from raystx.evaluation._beir import is_beir_dir, load_beir_dir

        if not is_beir_dir(spec.beir):
            raise ConfigError(
                f"{where}.beir: {spec.beir} is not a BEIR directory (needs corpus.jsonl and queries.jsonl)"
            )
        try:
            queries, corpus, relevant = load_beir_dir(spec.beir, spec.beir_split)
        except FileNotFoundError as exc:
            raise ConfigError(f"{where}.beir: {exc}") from None
        return {"queries": queries, "corpus": corpus, "relevant_docs": relevant}
    if spec.path is None:
        return {}
    from raystx.train.build import read_table

    if "://" not in spec.path and not Path(spec.path).exists():
        raise ConfigError(f"{where}.path: {spec.path} does not exist")
    assert spec.columns is not None
    try:
        frame = read_table(spec.path, list(spec.columns.values()), spec.limit)
    except ConfigError as exc:
        raise ConfigError(f"{where}.columns: {exc}") from None
    out: dict[str, Any] = {}
    for arg, column in spec.columns.items():
        out[arg] = _numbers(f"{where}.columns.{arg}", arg, frame[column].tolist(), spec.score_scale)
    return out


def _numbers(where: str, arg: str, values: list[Any], scale: float | None) -> list[Any]:
    """``scores`` as floats (divided by ``scale``), ``labels`` as ints when whole numbers (text readers may
    give "0"/"1" strings); other arguments unchanged."""
    if arg not in ("scores", "labels"):
        return values
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        if arg == "labels" and not scale:
            return values  # class names (LabelAccuracy-like evaluators): as given
        raise ConfigError(f"{where}: the column holds values that are not numbers") from None
    if scale:
        return [v / scale for v in numbers]
    if arg == "labels" and all(v.is_integer() for v in numbers):
        return [int(v) for v in numbers]
    return numbers


def build_evaluator(index: int, spec: EvaluatorSpec) -> Any:
    """The evaluator ``spec`` describes (``index`` is its place in ``evaluators``, for error messages)."""
    from raystx.train.build import evaluator_class
    from raystx.train.signature import check_kwargs

    where = f"evaluators[{index}] ({spec.type})"
    try:
        cls = evaluator_class(spec.type)
    except ConfigError as exc:
        raise ConfigError(f"evaluators[{index}].type: {exc}") from None
    data_args = ("queries", "corpus", "relevant_docs") if spec.beir else tuple(spec.columns or ())
    try:
        check_kwargs(f"{where} columns", cls, dict.fromkeys(spec.columns or {}), types=False)
        kwargs = check_kwargs(where, cls, spec.kwargs, supplied=data_args)
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None
    kwargs.update(_data_kwargs(f"evaluators[{index}]", spec))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, FileNotFoundError, KeyError) as exc:
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None


def build_evaluators(config: EvalJobConfig) -> list[Any]:
    """Every evaluator of the config, built on the driver (files read, arguments checked), in order."""
    return [build_evaluator(i, spec) for i, spec in enumerate(config.evaluators)]
