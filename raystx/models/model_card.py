"""The sentence-transformers-style model card (README.md) of a model, rendered from ``model_card_template.md``.

``generate_model_card(model)`` renders the card from what the model holds (``model.model_card_data``, a
``SentenceTransformerModelCardData``): YAML front matter (base_model, tags, pipeline_tag, library_name, datasets,
metrics, model-index), model description, usage, evaluation, and, when the trainer filled
``model_card_data.trainer_info``, the training details, logs and citations; then framework versions. Every
environment value whose variable name looks secret (TOKEN/KEY/SECRET/PASSWORD) is masked in the result.
``SentenceTransformer.save`` writes it as ``README.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import logging
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raystx.models.card_data import EvaluationInfo, SentenceTransformerModelCardData, TrainerInfo
from raystx.secrets import redact, redact_named

logger = logging.getLogger("raystx")

TEMPLATE = "model_card_template.md"
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
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ------------------------------------------------------------------------------------------------ entry point
def generate_model_card(model: Any, *, trainer_info: TrainerInfo | None = None) -> str:
    """The README.md text for ``model`` (a ``raystx.models.SentenceTransformer``).

    ``trainer_info`` overrides ``model.model_card_data.trainer_info`` (the run the trainer attached); without
    either the card describes the model only. Evaluator results recorded in ``model.model_card_data``
    (evaluators run after training) take precedence over the metrics logged during training. Secret
    environment values are masked.
    """
    data = dataclasses.replace(
        SentenceTransformerModelCardData.from_any(getattr(model, "model_card_data", None))
    )
    info = trainer_info or data.trainer_info
    if not data.base_model:
        data.base_model = infer_base_model(model)
    text = _template().render(**card_context(model, data, info))
    return redact(re.sub(r"\n{3,}", "\n\n", text).strip() + "\n")


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML
    )
    env.globals["plural"] = lambda items: "s" if len(items) > 1 else ""
    return env.get_template(TEMPLATE)


def card_context(
    model: Any, data: SentenceTransformerModelCardData, info: TrainerInfo | None
) -> dict[str, Any]:
    """The template's variables: every value already formatted as Markdown text."""
    evals_by_key = {e.key: e for e in (info.evaluations if info else [])}
    evals_by_key.update(data.eval_results)
    evals = list(evals_by_key.values())
    run = info or TrainerInfo()
    dim = model.get_sentence_embedding_dimension()
    names = [_dataset_display(data, d.name) for d in run.datasets if _is_named(data, d.name)]
    languages = [data.language] if isinstance(data.language, str) else list(data.language or [])
    return {
        "front_matter": front_matter(model, data, run, evals),
        "title": _title(model, data),
        "origin": (
            f" finetuned from [{data.base_model}](https://huggingface.co/{data.base_model})"
            if data.base_model
            else ""
        ),
        "trained_on": f" on the {_join_names(names)} dataset{'s' if len(names) > 1 else ''}" if names else "",
        "dim": dim,
        "task_name": data.task_name,
        "base_model": data.base_model,
        "base_model_revision": (
            f" <!-- at revision {data.base_model_revision} -->" if data.base_model_revision else ""
        ),
        "max_seq_length": model.max_seq_length,
        "similarity": SIMILARITY_NAMES.get(model.similarity_fn_name, str(model.similarity_fn_name).title()),
        "dataset_names": names,
        "languages": languages,
        "license": data.license,
        "architecture": architecture_string(model),
        "model_id": data.model_id or "path/to/this/model",
        "usage_body": _usage_body(model, run, preview=info is not None),
        "evaluations": [_evaluation_context(e) for e in evals],
        **_training_context(data, info),
        "framework_versions": framework_versions(),
        "citations": _citations(run),
    }


# ------------------------------------------------------------------------------------------------ sections
def front_matter(
    model: Any, data: SentenceTransformerModelCardData, info: TrainerInfo, evals: list[EvaluationInfo]
) -> str:
    """The card's YAML header (without the ``---`` lines)."""
    import yaml

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
        meta["model-index"] = [
            {"name": _title(model, data), "results": [_model_index_result(e) for e in evals]}
        ]
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()


def _model_index_result(e: EvaluationInfo) -> dict[str, Any]:
    dataset_name = e.name or "unknown"
    return {
        "task": {"type": e.description.lower().replace(" ", "-"), "name": e.description},
        "dataset": {"name": dataset_name.replace("_", " ").replace("-", " "), "type": dataset_name},
        "metrics": [
            {"type": k, "value": float(v), "name": k.replace("_", " ").title()} for k, v in e.metrics.items()
        ],
    }


def _usage_body(model: Any, info: TrainerInfo, preview: bool) -> str:
    """The usage snippet after ``model = ...``; the real similarity matrix only for a trained model's card
    (computing it runs the model, which a checkpoint save on a worker should not do)."""
    sentences = _usage_sentences(info)
    n = len(sentences)
    shown = _similarity_preview(model, sentences) if preview else ""
    lines = ["sentences = ["] + [f"    {json.dumps(s, ensure_ascii=False)}," for s in sentences] + ["]"]
    lines += [
        "embeddings = model.encode(sentences)",
        "print(embeddings.shape)",
        f"# [{n}, {model.get_sentence_embedding_dimension()}]",
        "",
        "# Get the similarity scores for the embeddings",
        "similarities = model.similarity(embeddings, embeddings)",
        "print(similarities)",
        shown or f"# a {n}x{n} similarity matrix",
    ]
    return "\n".join(lines)


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


def _evaluation_context(e: EvaluationInfo) -> dict[str, Any]:
    rows = []
    for k, v in e.metrics.items():
        key, value = (f"**{k}**", f"**{_fmt(v)}**") if k == e.primary_metric else (k, _fmt(v))
        rows.append({"Metric": key, "Value": value})
    return {
        "description": e.description,
        "name": e.name,
        "class_name": e.class_name,
        "params": _params(e.config),
        "table": markdown_table(rows, ["Metric", "Value"]),
    }


def _training_context(data: SentenceTransformerModelCardData, info: TrainerInfo | None) -> dict[str, Any]:
    run = info or TrainerInfo()
    hide = len(run.log_history) > MAX_LOG_ROWS_SHOWN
    return {
        "training": bool(run.datasets or run.log_history or run.all_hyperparameters),
        "datasets": [_dataset_context(data, d) for d in run.datasets],
        "non_default_hyperparameters": [(k, _hp(k, v)) for k, v in run.non_default_hyperparameters.items()],
        "all_hyperparameters": [(k, _hp(k, v)) for k, v in run.all_hyperparameters.items()],
        "world_size": run.world_size,
        "training_logs": _training_logs(run),
        "hide_logs": hide,
        "best_step": run.best_step,
        "training_time": _duration(run.training_time_s) if run.training_time_s is not None else "",
    }


def _dataset_context(data: SentenceTransformerModelCardData, d: Any) -> dict[str, Any]:
    return {
        "title": _dataset_meta(data, d.name).get("name") or d.name,
        "display": _dataset_display(data, d.name),
        "size": f"{d.size:,}",
        "columns": _join_names([f"<code>{c}</code>" for c in d.columns]),
        "samples": markdown_table(d.samples, d.columns).replace("\n", "\n  ") if d.samples else "",
        "loss": d.loss.fullname if d.loss is not None else "",
        "loss_params": _params(d.loss.config) if d.loss is not None else "",
    }


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


def _citations(info: TrainerInfo) -> dict[str, str]:
    seen: dict[str, str] = {}
    for d in info.datasets:
        if d.loss is not None and d.loss.citation:
            seen.setdefault(d.loss.fullname.rsplit(".", 1)[-1], d.loss.citation)
    return seen


# ------------------------------------------------------------------------------------------------ helpers
def _title(model: Any, data: SentenceTransformerModelCardData) -> str:
    if data.model_name:
        return data.model_name
    if data.base_model:
        return f"{type(model).__name__} based on {data.base_model}"
    return "Sentence Transformer model"


def _dataset_meta(data: SentenceTransformerModelCardData, name: str) -> dict[str, str]:
    for entry in data.train_datasets:
        if entry.get("name") == name or (len(data.train_datasets) == 1 and "name" not in entry):
            return entry
    return {}


def _dataset_display(data: SentenceTransformerModelCardData, name: str) -> str:
    meta = _dataset_meta(data, name)
    shown = meta.get("name") or name
    return f"[{shown}](https://huggingface.co/datasets/{meta['id']})" if meta.get("id") else shown


def _is_named(data: SentenceTransformerModelCardData, name: str) -> bool:
    """Whether a dataset has a name worth showing (not the trainer's default ``train`` or fit()'s ``_dataset_i``)."""
    return bool(_dataset_meta(data, name)) or (name != "train" and not name.startswith("_"))


def _params(config: Mapping[str, Any]) -> str:
    """`` with these parameters:`` and the JSON of ``config`` (indented under a list item), or ``""``."""
    if not config:
        return ""
    return f" with these parameters:\n  ```json\n  {_to_json(config).replace(chr(10), chr(10) + '  ')}\n  ```"


def _hp(name: str, value: Any) -> Any:
    return redact_named(name, getattr(value, "value", value))


def _duration(seconds: float) -> str:
    for limit, unit, div in ((60, "seconds", 1), (3600, "minutes", 60), (86400, "hours", 3600)):
        if seconds < limit:
            return f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} days"


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


def infer_base_model(model: Any) -> str | None:
    """The Hub id the first module was loaded from, when it was loaded from the Hub (not a local path)."""
    first = next(iter(model.children()), None)
    config = getattr(getattr(first, "auto_model", None), "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(first, "base_model", None)
    if not isinstance(name, str) or not _HUB_ID.match(name) or Path(name).exists():
        return None
    return name
