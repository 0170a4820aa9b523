"""The YAML config behind ``raystx mine CONFIG.yaml`` (and ``jobs/mine.py``), and running it.

Sections: ``model`` (as in training configs), ``data`` (the (anchor, positive) file and its two columns),
optional ``corpus`` (extra passages: a file and its text column), ``mine`` (the keyword arguments of
``mine_hard_negatives``), ``scaling`` (``num_workers``, ``use_gpu``, ``cpus_per_worker``) and
``output_path`` (Parquet). Unknown keys fail with their dotted path; ``${VAR}`` and ``--set`` work as for
``raystx train``; relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from raystx.config import (
    ConfigError,
    ModelConfig,
    PositiveInt,
    _Strict,
    format_errors,
    read_raw,
    relative_to_config,
)


class MineDataSection(_Strict):
    """The (anchor, positive) pairs: a csv/tsv/json/jsonl/parquet file and the two columns, in that order."""

    path: str
    columns: list[str] | None = Field(None, min_length=2, max_length=2)
    limit: PositiveInt | None = None


class CorpusSection(_Strict):
    """Extra candidate passages: a file and its text column (the positives are always candidates too)."""

    path: str
    column: str
    limit: PositiveInt | None = None


class MineOptions(_Strict):
    """``mine_hard_negatives`` keyword arguments (same names and defaults)."""

    range_min: int = Field(0, ge=0)
    range_max: PositiveInt | None = None
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    num_negatives: PositiveInt = 3
    sampling_strategy: Literal["top", "random"] = "top"
    query_prompt_name: str | None = None
    query_prompt: str | None = None
    corpus_prompt_name: str | None = None
    corpus_prompt: str | None = None
    include_positives: bool = False
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet"
    output_scores: bool = False
    batch_size: PositiveInt = 32
    faiss_batch_size: PositiveInt = 16384
    use_faiss: bool = False
    seed: int | None = None
    verbose: bool = True


class MineScaling(_Strict):
    """How many model replicas encode and hold corpus shards (``0``: in the driver process, no Ray)."""

    num_workers: int = Field(1, ge=0)
    use_gpu: bool = False
    cpus_per_worker: PositiveInt = 1


class MineConfig(_Strict):
    model: ModelConfig
    data: MineDataSection
    corpus: CorpusSection | None = None
    mine: MineOptions = MineOptions()
    scaling: MineScaling = MineScaling()
    output_path: str


def load_mine_config(path: str | Path, overrides: list[str] | None = None) -> MineConfig:
    """Read, override, expand and validate a mining config; errors name the dotted key at fault."""
    path = Path(path)
    raw = read_raw(path, overrides)
    try:
        config = MineConfig.model_validate(copy.deepcopy(raw))
    except ValidationError as exc:
        raise format_errors(exc, f"mining config {path}") from None
    base = path.parent
    config.data.path = relative_to_config(config.data.path, base)
    if config.corpus is not None:
        config.corpus.path = relative_to_config(config.corpus.path, base)
    if config.model.name_or_path:
        config.model.name_or_path = relative_to_config(config.model.name_or_path, base)
    config.output_path = relative_to_config(config.output_path, base)
    return config


def _read(where: str, path: str, columns: list[str] | None, limit: int | None) -> Any:
    """The file as an Arrow table with ``columns`` (default: its first two), at most ``limit`` rows."""
    from raystx.data.local import read_local_table

    table = read_local_table(where, path)
    columns = columns or table.column_names[:2]
    if len(columns) < 2 and where == "data":
        raise ConfigError(
            f"data.path {path} needs two columns (anchor, positive); it has {table.column_names}"
        )
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ConfigError(
            f"{where}.path {path} has no column(s) {missing}; its columns are {table.column_names}"
        )
    table = table.select(columns)
    return table.slice(0, limit) if limit else table


def run_mine(config: MineConfig) -> Any:
    """Read the data, load the model and mine; writes ``output_path`` and returns the ``datasets.Dataset``."""
    from datasets import Dataset

    from raystx.infer.mining import mine_hard_negatives
    from raystx.train.build import resolve_model_path

    if not config.model.name_or_path:
        raise ConfigError("model.name_or_path is required for mining (a saved model directory)")
    pairs = Dataset(_read("data", config.data.path, config.data.columns, config.data.limit))
    columns = pairs.column_names
    corpus = None
    if config.corpus is not None:
        table = _read("corpus", config.corpus.path, [config.corpus.column], config.corpus.limit)
        corpus = [str(t) for t in table.column(config.corpus.column).to_pylist()]

    from raystx.models import SentenceTransformer

    model = SentenceTransformer(resolve_model_path(config.model.name_or_path), device="cpu")
    if config.model.max_seq_length:
        model.max_seq_length = config.model.max_seq_length
    return mine_hard_negatives(
        pairs,
        model,
        anchor_column_name=columns[0],
        positive_column_name=columns[1],
        corpus=corpus,
        num_workers=config.scaling.num_workers,
        use_gpu=config.scaling.use_gpu,
        cpus_per_worker=config.scaling.cpus_per_worker,
        output_path=config.output_path,
        **config.mine.model_dump(),
    )
