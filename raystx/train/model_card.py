"""The sentence-transformers-style model card (README.md) of a trained model.

Three pieces:

* ``SentenceTransformerModelCardData``: what the user tells about the model (language, license, model_name,
  model_id, dataset names/ids, tags, base_model) plus evaluator results recorded on the driver. It behaves like
  the dict ``raystx.models.SentenceTransformer.model_card_data`` holds (``get``/``setdefault``/``[]``).
* ``TrainerInfo`` (built by ``collect_trainer_info``): plain data about a finished training run (dataset
  names, sizes, columns, sample rows, losses and their arguments, hyperparameters, log history, final
  evaluator metrics). It holds no modules, so it pickles small and never changes with the model.
* ``generate_model_card(model, trainer_info=...)``: the README text: YAML front matter (base_model, tags,
  pipeline_tag, library_name, datasets, metrics, model-index), model description, usage, evaluation, training
  details, training logs, framework versions, citations. Every environment value whose variable name looks
  secret (TOKEN/KEY/SECRET/PASSWORD) is masked in the result.

``attach_model_card(model, trainer_info)`` is what the trainer calls after ``train()``: it makes
``model.model_card_data`` a ``SentenceTransformerModelCardData`` and sets ``model.model_card_generator`` so
that ``model.save_pretrained`` writes this card.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import logging
import platform
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raystx.train.integrations import REDACTED, is_secret_name, redact, redact_value

logger = logging.getLogger("raystx.train")

DEFAULT_TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "dense", "raystx"]
DEFAULT_TASK = "semantic textual similarity, semantic search, paraphrase mining, text classification, clustering, and more"
DEFAULT_USAGE_SENTENCES = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
]
SIMILARITY_NAMES = {
    "cosine": "Cosine Similarity",
    "dot": "Dot Product",
    "euclidean": "Euclidean Distance",
    "manhattan": "Manhattan Distance",
}
MAX_CELL_CHARS = 200
MAX_LOG_ROWS_SHOWN = 100


# ------------------------------------------------------------------------------------------------ card data
@dataclass
class SentenceTransformerModelCardData:
    """User-provided facts for the card, and evaluator results recorded after training.

    Args:
        language: e.g. ``"en"`` or ``["en", "de"]``.
        license: e.g. ``"apache-2.0"``.
        model_name: the card's title (default: ``SentenceTransformer based on {base_model}``).
        model_id: the Hub id the model is pushed to (used in the usage snippet).
        train_datasets / eval_datasets: ``[{"name": ..., "id": <Hub dataset id>}]``; names match the trainer's
            dataset names (``train`` for a single dataset) to attach a display name and a Hub id.
        task_name: what the model can be used for (the card's first sentence).
        tags: Hub tags.
        base_model: the Hub id of the model that was fine-tuned (inferred from the Transformer when it is one).
    """

    language: str | list[str] | None = field(default_factory=list)
    license: str | None = None
    model_name: str | None = None
    model_id: str | None = None
    train_datasets: list[dict[str, str]] = field(default_factory=list)
    eval_datasets: list[dict[str, str]] = field(default_factory=list)
    task_name: str = DEFAULT_TASK
    tags: list[str] = field(default_factory=lambda: list(DEFAULT_TAGS))
    base_model: str | None = None
    base_model_revision: str | None = None
    eval_results: dict[str, EvaluationInfo] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.train_datasets = _dataset_entries(self.train_datasets)
        self.eval_datasets = _dataset_entries(self.eval_datasets)

    # -- dict-like access (raystx.models treats model_card_data as a dict) ----------------------------------
    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.keys():
            raise KeyError(
                f"{key!r} is not a SentenceTransformerModelCardData field ({', '.join(self.keys())})"
            )
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Set ``key`` to ``default`` when it is unset (None or empty) and return its value."""
        current = self.get(key)
        if current in (None, [], {}, ""):
            self[key] = default
            return default
        return current

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    @classmethod
    def from_any(cls, value: Any) -> SentenceTransformerModelCardData:
        """From an instance (returned as is), a dict of field values (unknown keys are ignored), or None."""
        if isinstance(value, cls):
            value.__post_init__()  # entries may have been assigned as plain strings
            return value
        known = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in dict(value or {}).items() if k in known and v is not None}
        ignored = sorted(set(dict(value or {})) - known)
        if ignored:
            logger.debug("model_card_data keys not used by the card: %s", ignored)
        return cls(**given)

    # -- evaluator hook (SentenceEvaluator.store_metrics_in_model_card_data) -------------------------------
    def set_evaluation_metrics(
        self, evaluator: Any, metrics: Mapping[str, Any], epoch: int = 0, step: int = 0
    ):
        """Record an evaluator's latest metrics (called by evaluators run on a model holding this object)."""
        info = EvaluationInfo.from_evaluator(evaluator, metrics)
        self.eval_results[info.key] = info


def _dataset_entries(entries: Any) -> list[dict[str, str]]:
    """Dataset entries as ``{"name": ..., "id": ...}`` dicts (a plain string is a name)."""
    out = []
    for entry in entries or []:
        out.append({"name": entry} if isinstance(entry, str) else dict(entry))
    return out


# ------------------------------------------------------------------------------------------------ trainer info
@dataclass
class LossInfo:
    """A loss as the card shows it: its class path, its constructor arguments and its citation."""

    fullname: str
    config: dict[str, Any]
    citation: str | None = None

    @classmethod
    def from_loss(cls, loss: Any) -> LossInfo:
        getter = getattr(loss, "get_config_dict", None)
        config = dict(getter()) if callable(getter) else {}
        citation = getattr(loss, "citation", None)
        return cls(fullname=_class_path(loss), config=config, citation=citation.strip() if citation else None)


@dataclass
class DatasetInfo:
    """One training dataset: name, number of rows, columns (inputs then label), a few rows, its loss."""

    name: str
    size: int
    columns: list[str]
    samples: list[dict[str, Any]]
    loss: LossInfo | None = None


@dataclass
class EvaluationInfo:
    """One evaluator's final metrics (keys without the evaluator-name prefix) and how it was configured."""

    class_name: str
    description: str
    name: str
    primary_metric: str | None
    metrics: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.class_name}:{self.name}"

    @classmethod
    def from_evaluator(cls, evaluator: Any, metrics: Mapping[str, Any]) -> EvaluationInfo:
        name = str(getattr(evaluator, "name", "") or "")
        primary = getattr(evaluator, "primary_metric", None)
        values = {k[len("eval_") :] if k.startswith("eval_") else k: v for k, v in metrics.items()}
        if name and values and all(k.startswith(name + "_") for k in values):
            values = {k[len(name) + 1 :]: v for k, v in values.items()}
            if primary and primary.startswith(name + "_"):
                primary = primary[len(name) + 1 :]
        getter = getattr(evaluator, "get_config_dict", None)
        return cls(
            class_name=_class_path(evaluator),
            description=str(getattr(evaluator, "description", type(evaluator).__name__)),
            name=name,
            primary_metric=primary,
            metrics={k: _to_float(v) for k, v in values.items() if _to_float(v) is not None},
            config=dict(getter()) if callable(getter) else {},
        )


@dataclass
class TrainerInfo:
    """What a finished training run contributes to the card (plain data, no modules)."""

    datasets: list[DatasetInfo] = field(default_factory=list)
    non_default_hyperparameters: dict[str, Any] = field(default_factory=dict)
    all_hyperparameters: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[EvaluationInfo] = field(default_factory=list)
    world_size: int = 1
    training_time_s: float | None = None
    best_step: int | None = None


def collect_trainer_info(
    *,
    sources: Mapping[str, Any],
    losses: Mapping[str, Any],
    args: Any = None,
    log_history: Sequence[Mapping[str, Any]] = (),
    evaluator: Any = None,
    eval_metrics: Mapping[str, Any] | None = None,
    world_size: int = 1,
    training_time_s: float | None = None,
    best_step: int | None = None,
    num_samples: int = 3,
) -> TrainerInfo:
    """Gather the card's training facts on the driver after ``train()``.

    Args:
        sources: ``{dataset name: TrainingSource}`` (``prepare_sources``); ``name``, ``num_rows``, ``columns``
            and ``peek(indices)`` are used (only the first ``num_samples`` rows are read).
        losses: ``{dataset name: loss}``; ``get_config_dict()`` and ``citation`` are recorded.
        args: ``SentenceTransformerTrainingArguments`` (``non_default_items()`` and ``to_dict()``).
        log_history: the run's log entries (``loss``, ``epoch``, ``step``, ``eval_*``).
        evaluator: the trainer's evaluator; its final metrics are ``eval_metrics`` when given, else the
            ``eval_*`` values of the last log entry that has them.
        world_size: number of Ray Train workers. training_time_s: wall time of ``train()``.
        best_step: the step of the checkpoint loaded at the end (bold in the log table), if any.
    """
    datasets_info = []
    for name, source in sources.items():
        n = int(getattr(source, "num_rows", 0) or 0)
        columns = list(getattr(source, "columns", []) or [])
        samples: list[dict[str, Any]] = []
        if n and num_samples > 0 and hasattr(source, "peek"):
            try:
                rows = source.peek(list(range(min(num_samples, n))))
                samples = [{c: rows[c][i] for c in columns} for i in range(len(next(iter(rows.values()))))]
            except Exception as exc:  # a card must never fail a training run
                logger.warning("Could not read sample rows of dataset %r for the model card: %s", name, exc)
        loss = losses.get(name)
        datasets_info.append(
            DatasetInfo(
                name=str(name),
                size=n,
                columns=columns,
                samples=samples,
                loss=LossInfo.from_loss(loss) if loss is not None else None,
            )
        )
    history = [dict(h) for h in log_history]
    evaluations = []
    if evaluator is not None:
        metrics = eval_metrics
        if metrics is None:
            last = next((h for h in reversed(history) if any(k.startswith("eval_") for k in h)), {})
            metrics = {k: v for k, v in last.items() if k.startswith("eval_") and k != "eval_loss"}
        if metrics:
            evaluations.append(EvaluationInfo.from_evaluator(evaluator, metrics))
    non_default = dict(args.non_default_items()) if args is not None else {}
    everything = dict(args.to_dict()) if args is not None else {}
    everything.pop("output_dir", None)  # a local path, meaningless to readers of the card
    return TrainerInfo(
        datasets=datasets_info,
        non_default_hyperparameters=non_default,
        all_hyperparameters=everything,
        log_history=history,
        evaluations=evaluations,
        world_size=int(world_size),
        training_time_s=training_time_s,
        best_step=best_step,
    )


# ------------------------------------------------------------------------------------------------ helpers
def _class_path(obj: Any) -> str:
    """``raystx.losses.MultipleNegativesRankingLoss`` when the package exports the class, else the full path."""
    cls = type(obj)
    module = cls.__module__
    parts = module.split(".")
    if len(parts) > 2 and parts[0] == "raystx":
        package = ".".join(parts[:2])
        try:
            import importlib

            if getattr(importlib.import_module(package), cls.__name__, None) is cls:
                return f"{package}.{cls.__name__}"
        except ImportError:
            pass
    return f"{module}.{cls.__qualname__}"


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _json_default(value: Any) -> Any:
    if hasattr(value, "value") and not callable(value):
        return value.value
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _to_json(value: Any) -> str:
    return json.dumps(value, indent=4, default=_json_default, ensure_ascii=False)


def _cell(value: Any) -> str:
    """A value fit for one Markdown table cell (shortened, pipes and newlines escaped)."""
    text = value if isinstance(value, str) else json.dumps(value, default=_json_default, ensure_ascii=False)
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 3] + "..."
    return text.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{round(float(value), 4)}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (missing cells are ``-``)."""
    cols = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "|".join(":--" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) if c in row else "-" for c in cols) + " |")
    return "\n".join(lines)


def _join_names(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def framework_versions() -> dict[str, str]:
    """Versions of Python and the libraries a raystx model depends on (missing ones are left out)."""
    import raystx

    versions = {"Python": platform.python_version(), "raystx": raystx.__version__}
    for label, package in (
        ("Transformers", "transformers"),
        ("PyTorch", "torch"),
        ("Ray", "ray"),
        ("Tokenizers", "tokenizers"),
        ("Datasets", "datasets"),
    ):
        try:
            versions[label] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def architecture_string(model: Any) -> str:
    """``SentenceTransformer(`` + one line per module with its settings + ``)``."""
    lines = [f"{type(model).__name__}("]
    for name, module in model.named_children():
        extra = module.extra_repr() if hasattr(module, "extra_repr") else ""
        lines.append(f"  ({name}): {type(module).__name__}({extra})")
    lines.append(")")
    return "\n".join(lines)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def infer_base_model(model: Any) -> str | None:
    """The Hub id the first module was loaded from, when it was loaded from the Hub (not a local path)."""
    first = next(iter(model.children()), None)
    config = getattr(getattr(first, "auto_model", None), "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(first, "base_model", None)
    if not isinstance(name, str) or not _HUB_ID.match(name) or Path(name).exists():
        return None
    return name


# ------------------------------------------------------------------------------------------------ sections
def _dataset_meta(data: SentenceTransformerModelCardData, name: str) -> dict[str, str]:
    for entry in data.train_datasets:
        if entry.get("name") == name or (len(data.train_datasets) == 1 and "name" not in entry):
            return entry
    return {}


def _front_matter(model: Any, data: SentenceTransformerModelCardData, info: TrainerInfo, evals) -> str:
    meta: dict[str, Any] = {}
    if data.language:
        meta["language"] = data.language
    if data.license:
        meta["license"] = data.license
    meta["library_name"] = "sentence-transformers"
    tags = list(dict.fromkeys(list(data.tags) + ["raystx"]))
    tags += ["generated_from_trainer"] if info.log_history else []
    tags += [f"dataset_size:{sum(d.size for d in info.datasets)}"] if info.datasets else []
    tags += [f"loss:{d.loss.fullname.rsplit('.', 1)[-1]}" for d in info.datasets if d.loss]
    meta["tags"] = list(dict.fromkeys(tags))
    if data.base_model:
        meta["base_model"] = data.base_model
    dataset_ids = [e["id"] for e in list(data.train_datasets) + list(data.eval_datasets) if e.get("id")]
    if dataset_ids:
        meta["datasets"] = list(dict.fromkeys(dataset_ids))
    meta["pipeline_tag"] = "sentence-similarity"
    metric_names = list(dict.fromkeys(k for e in evals for k in e.metrics))
    if metric_names:
        meta["metrics"] = metric_names
        results = []
        for e in evals:
            dataset_name = e.name or "unknown"
            results.append(
                {
                    "task": {"type": e.description.lower().replace(" ", "-"), "name": e.description},
                    "dataset": {
                        "name": dataset_name.replace("_", " ").replace("-", " "),
                        "type": dataset_name,
                    },
                    "metrics": [
                        {"type": k, "value": float(v), "name": k.replace("_", " ").title()}
                        for k, v in e.metrics.items()
                    ],
                }
            )
        meta["model-index"] = [{"name": _title(model, data), "results": results}]
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()


def _title(model: Any, data: SentenceTransformerModelCardData) -> str:
    if data.model_name:
        return data.model_name
    if data.base_model:
        return f"{type(model).__name__} based on {data.base_model}"
    return "Sentence Transformer model"


def _dataset_display(data: SentenceTransformerModelCardData, name: str) -> str:
    meta = _dataset_meta(data, name)
    shown = meta.get("name") or name
    return f"[{shown}](https://huggingface.co/datasets/{meta['id']})" if meta.get("id") else shown


def _is_named(data: SentenceTransformerModelCardData, name: str) -> bool:
    """Whether a dataset has a name worth showing (not the trainer's default ``train`` or fit()'s ``_dataset_i``)."""
    return bool(_dataset_meta(data, name)) or (name != "train" and not name.startswith("_"))


def _usage_sentences(info: TrainerInfo) -> list[str]:
    for dataset in info.datasets:
        for column in dataset.columns:
            values = [row.get(column) for row in dataset.samples]
            if values and all(isinstance(v, str) for v in values):
                picked = list(dict.fromkeys(values))[:3]
                if len(picked) == 3:
                    return picked
    return list(DEFAULT_USAGE_SENTENCES)


def _similarity_preview(model: Any, sentences: list[str]) -> str:
    try:
        import torch

        emb = model.encode(sentences, convert_to_tensor=True, show_progress_bar=False)
        sims = model.similarity(emb, emb)
        with torch._tensor_str.printoptions(precision=4, sci_mode=False):
            return "\n".join(f"# {line}" for line in str(sims.cpu()).splitlines())
    except Exception as exc:  # pragma: no cover - best effort
        logger.debug("No similarity preview in the model card: %s", exc)
        return ""


def _usage(model: Any, data: SentenceTransformerModelCardData, info: TrainerInfo) -> list[str]:
    model_id = data.model_id or "path/to/this/model"
    sentences = _usage_sentences(info)
    dim = model.get_sentence_embedding_dimension()
    listing = ["sentences = ["] + [f"    {json.dumps(s, ensure_ascii=False)}," for s in sentences] + ["]"]
    preview = _similarity_preview(model, sentences)
    body = [
        *listing,
        "embeddings = model.encode(sentences)",
        "print(embeddings.shape)",
        f"# [{len(sentences)}, {dim}]",
        "",
        "# Get the similarity scores for the embeddings",
        "similarities = model.similarity(embeddings, embeddings)",
        "print(similarities)",
        *([preview] if preview else [f"# a {len(sentences)}x{len(sentences)} similarity matrix"]),
    ]
    return [
        "## Usage",
        "",
        "### Direct Usage (Sentence Transformers)",
        "",
        "First install the Sentence Transformers library:",
        "",
        "```bash",
        "pip install -U sentence-transformers",
        "```",
        "",
        "Then you can load this model and run inference.",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_id}")',
        *body,
        "```",
        "",
        "### Direct Usage (raystx)",
        "",
        "```python",
        "from raystx import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{model_id}")',
        *body,
        "```",
        "",
    ]


def _evaluation(evals: list[EvaluationInfo]) -> list[str]:
    if not evals:
        return []
    out = ["## Evaluation", "", "### Metrics", ""]
    for e in evals:
        out += [f"#### {e.description}", ""]
        if e.name:
            out.append(f"* Dataset: `{e.name}`")
        config = f" with these parameters:\n  ```json\n  {_indent_json(e.config)}\n  ```" if e.config else ""
        out.append(f"* Evaluated with <code>{e.class_name}</code>{config}")
        out.append("")
        rows = []
        for k, v in e.metrics.items():
            key, value = (f"**{k}**", f"**{_fmt(v)}**") if k == e.primary_metric else (k, _fmt(v))
            rows.append({"Metric": key, "Value": value})
        out += [markdown_table(rows, ["Metric", "Value"]), ""]
    return out


def _indent_json(value: Any) -> str:
    return _to_json(value).replace("\n", "\n  ")


def _training_details(data: SentenceTransformerModelCardData, info: TrainerInfo) -> list[str]:
    out = ["## Training Details", ""]
    if info.datasets:
        plural = "s" if len(info.datasets) > 1 else ""
        out += [f"### Training Dataset{plural}", ""]
        for d in info.datasets:
            meta = _dataset_meta(data, d.name)
            out += [f"#### {meta.get('name') or d.name}", ""]
            out.append(f"* Dataset: {_dataset_display(data, d.name)}")
            out.append(f"* Size: {d.size:,} training samples")
            out.append(f"* Columns: {_join_names([f'<code>{c}</code>' for c in d.columns])}")
            if d.samples:
                out.append("* Samples:")
                table = markdown_table(d.samples, d.columns)
                out.append("  " + table.replace("\n", "\n  "))
            if d.loss is not None:
                params = (
                    f" with these parameters:\n  ```json\n  {_indent_json(d.loss.config)}\n  ```"
                    if d.loss.config
                    else ""
                )
                out.append(f"* Loss: <code>{d.loss.fullname}</code>{params}")
            out.append("")
    if info.all_hyperparameters or info.non_default_hyperparameters:
        out += ["### Training Hyperparameters", ""]
        if info.non_default_hyperparameters:
            out += ["#### Non-Default Hyperparameters", ""]
            out += [f"- `{k}`: {_hp(k, v)}" for k, v in info.non_default_hyperparameters.items()]
            out.append("")
        if info.all_hyperparameters:
            out += ["#### All Hyperparameters", "<details><summary>Click to expand</summary>", ""]
            out += [f"- `{k}`: {_hp(k, v)}" for k, v in info.all_hyperparameters.items()]
            out += ["", "</details>", ""]
        out += [f"- Distributed: {info.world_size} Ray Train worker{'s' if info.world_size != 1 else ''}", ""]
    logs = _training_logs(info)
    if logs:
        out += ["### Training Logs", ""]
        hide = len(info.log_history) > MAX_LOG_ROWS_SHOWN
        out += ["<details><summary>Click to expand</summary>", ""] if hide else []
        out.append(logs)
        if info.best_step is not None:
            out += ["", "* The bold row denotes the saved checkpoint."]
        out += ["", "</details>"] if hide else []
        out.append("")
    if info.training_time_s is not None:
        out += ["### Training Time", f"- **Training**: {_duration(info.training_time_s)}", ""]
    return out


def _hp(name: str, value: Any) -> Any:
    if is_secret_name(name) and value not in (None, ""):
        return REDACTED
    return getattr(value, "value", value)


def _duration(seconds: float) -> str:
    for limit, unit, div in ((60, "seconds", 1), (3600, "minutes", 60), (86400, "hours", 3600)):
        if seconds < limit:
            return f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} days"


def _training_logs(info: TrainerInfo) -> str:
    history = [h for h in info.log_history if any(k == "loss" or k.startswith("eval_") for k in h)]
    if not history:
        return ""
    primaries = [e.primary_metric for e in info.evaluations if e.primary_metric]
    eval_keys: list[str] = []
    for h in history:
        for k in h:
            if not k.startswith("eval_") or k in eval_keys:
                continue
            short = k[len("eval_") :]
            if k == "eval_loss" or not primaries or any(short.endswith(p) for p in primaries):
                eval_keys.append(k)
    columns = ["Epoch", "Step", "Training Loss"] + [
        "Validation Loss" if k == "eval_loss" else k[len("eval_") :] for k in eval_keys
    ]
    rows = []
    for h in history:
        row: dict[str, Any] = {"Epoch": _fmt(h.get("epoch", "-")), "Step": h.get("step", "-")}
        if "loss" in h:
            row["Training Loss"] = _fmt(h["loss"])
        for k, col in zip(eval_keys, columns[3:]):
            if k in h:
                row[col] = _fmt(h[k])
        if info.best_step is not None and h.get("step") == info.best_step:
            row = {k: f"**{v}**" for k, v in row.items()}
        rows.append(row)
    return markdown_table(rows, columns)


def _citations(info: TrainerInfo) -> list[str]:
    seen: dict[str, str] = {}
    for d in info.datasets:
        if d.loss is not None and d.loss.citation:
            seen.setdefault(d.loss.fullname.rsplit(".", 1)[-1], d.loss.citation)
    if not seen:
        return []
    out = ["## Citation", "", "### BibTeX", ""]
    for name, citation in seen.items():
        out += [f"#### {name}", "```bibtex", citation, "```", ""]
    return out


# ------------------------------------------------------------------------------------------------ entry points
def generate_model_card(model: Any, *, trainer_info: TrainerInfo | None = None) -> str:
    """The README.md text for ``model`` (a ``raystx.models.SentenceTransformer``) after a training run.

    ``trainer_info`` (``collect_trainer_info``) adds the training sections; without it the card describes the
    model only. Evaluator results recorded in ``model.model_card_data`` (evaluators run on the driver after
    training) take precedence over the metrics logged during training. Secret environment values are masked.
    """
    info = trainer_info or TrainerInfo()
    data = dataclasses.replace(
        SentenceTransformerModelCardData.from_any(getattr(model, "model_card_data", None))
    )
    if not data.base_model:
        data.base_model = infer_base_model(model)
    evals_by_key = {e.key: e for e in info.evaluations}
    evals_by_key.update(data.eval_results)
    evals = list(evals_by_key.values())

    title = _title(model, data)
    dim = model.get_sentence_embedding_dimension()
    similarity = SIMILARITY_NAMES.get(model.similarity_fn_name, str(model.similarity_fn_name).title())
    dataset_names = [_dataset_display(data, d.name) for d in info.datasets if _is_named(data, d.name)]
    origin = (
        f" finetuned from [{data.base_model}](https://huggingface.co/{data.base_model})"
        if data.base_model
        else ""
    )
    trained_on = (
        f" on the {_join_names(dataset_names)} dataset{'s' if len(dataset_names) > 1 else ''}"
        if dataset_names
        else ""
    )
    lines = [
        "---",
        _front_matter(model, data, info, evals),
        "---",
        "",
        f"# {title}",
        "",
        f"This is a [sentence-transformers](https://www.SBERT.net) model{origin} trained with raystx{trained_on}. "
        f"It maps sentences and paragraphs to a {dim}-dimensional dense vector space and can be used for "
        f"{data.task_name}.",
        "",
        "## Model Details",
        "",
        "### Model Description",
        "- **Model Type:** Sentence Transformer",
    ]
    if data.base_model:
        revision = f" <!-- at revision {data.base_model_revision} -->" if data.base_model_revision else ""
        lines.append(
            f"- **Base model:** [{data.base_model}](https://huggingface.co/{data.base_model}){revision}"
        )
    lines += [
        f"- **Maximum Sequence Length:** {model.max_seq_length} tokens",
        f"- **Output Dimensionality:** {dim} dimensions",
        f"- **Similarity Function:** {similarity}",
    ]
    if dataset_names:
        lines.append(f"- **Training Dataset{'s' if len(dataset_names) > 1 else ''}:**")
        lines += [f"    - {n}" for n in dataset_names]
    if data.language:
        langs = [data.language] if isinstance(data.language, str) else list(data.language)
        lines.append(f"- **Language{'s' if len(langs) > 1 else ''}:** {', '.join(langs)}")
    if data.license:
        lines.append(f"- **License:** {data.license}")
    lines += ["", "### Full Model Architecture", "", "```", architecture_string(model), "```", ""]
    lines += _usage(model, data, info)
    lines += _evaluation(evals)
    if info.datasets or info.log_history or info.all_hyperparameters:
        lines += _training_details(data, info)
    lines += ["### Framework Versions"] + [f"- {k}: {v}" for k, v in framework_versions().items()] + [""]
    lines += _citations(info)
    return redact("\n".join(lines).rstrip() + "\n")


def model_card_generator(trainer_info: TrainerInfo) -> Callable[[Any], str]:
    """``model -> README text`` bound to ``trainer_info`` (picklable; set as ``model.model_card_generator``)."""
    return functools.partial(generate_model_card, trainer_info=_scrubbed(trainer_info))


def _scrubbed(info: TrainerInfo) -> TrainerInfo:
    """A copy of ``info`` whose hyperparameters hide secret fields (the rendered text is masked again)."""
    return dataclasses.replace(
        info,
        non_default_hyperparameters=redact_value(info.non_default_hyperparameters),
        all_hyperparameters=redact_value(info.all_hyperparameters),
    )


def attach_model_card(model: Any, trainer_info: TrainerInfo) -> None:
    """Make ``model.save_pretrained`` write the full card for this run (the trainer calls this after train()).

    ``model.model_card_data`` becomes a ``SentenceTransformerModelCardData`` (keeping the user's values), so
    evaluators run afterwards on the driver record their metrics in the card.
    """
    model.model_card_data = SentenceTransformerModelCardData.from_any(getattr(model, "model_card_data", None))
    model.model_card_generator = model_card_generator(trainer_info)
