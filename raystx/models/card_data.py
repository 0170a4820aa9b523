"""What a model card says, as plain data the model holds (``model.model_card_data``).

* ``SentenceTransformerModelCardData``: the facts the user gives (language, license, model_name, model_id,
  dataset names/ids, tags, base_model), the evaluator results recorded on the model, and ``trainer_info``, the
  training run the trainer describes after ``train()``. It also behaves like a dict (``get``/``setdefault``/
  ``[]``), since ``SentenceTransformer(model_card_data={...})`` takes a dict too.
* ``TrainerInfo`` with ``DatasetInfo``/``LossInfo``/``EvaluationInfo``: a finished run as plain data (dataset
  names, sizes, columns, sample rows, losses and their arguments, hyperparameters, log history, final evaluator
  metrics). It holds no modules, so it pickles small and never changes with the model.

Rendering lives in ``raystx.models.model_card``; filling ``trainer_info`` in ``raystx.train.model_card``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raystx.evaluation.protocol import Evaluator

logger = logging.getLogger("raystx")

DEFAULT_TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "dense", "raystx"]
DEFAULT_TASK = "semantic textual similarity, semantic search, paraphrase mining, text classification, clustering, and more"


# ------------------------------------------------------------------------------------------------ run facts
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
        return cls(fullname=class_path(loss), config=config, citation=citation.strip() if citation else None)


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
    def from_evaluator(cls, evaluator: Evaluator, metrics: Mapping[str, Any]) -> EvaluationInfo:
        """From an evaluator and the metrics it returned (``eval_`` and ``{name}_`` prefixes are dropped)."""
        name = str(getattr(evaluator, "name", "") or "")
        primary = getattr(evaluator, "primary_metric", None)
        values = {k[len("eval_") :] if k.startswith("eval_") else k: v for k, v in metrics.items()}
        if name and values and all(k.startswith(name + "_") for k in values):
            values = {k[len(name) + 1 :]: v for k, v in values.items()}
            if primary and primary.startswith(name + "_"):
                primary = primary[len(name) + 1 :]
        getter = getattr(evaluator, "get_config_dict", None)
        return cls(
            class_name=class_path(evaluator),
            description=str(getattr(evaluator, "description", type(evaluator).__name__)),
            name=name,
            primary_metric=primary,
            metrics={k: to_float(v) for k, v in values.items() if to_float(v) is not None},
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


# ------------------------------------------------------------------------------------------------ card data
@dataclass
class SentenceTransformerModelCardData:
    """User-provided facts for the card, evaluator results and the training run, held by the model.

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
        eval_results: filled by evaluators run on the model (``set_evaluation_metrics``).
        trainer_info: filled by the trainer after ``train()`` (``raystx.train.model_card.attach_model_card``).
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
    trainer_info: TrainerInfo | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.train_datasets = _dataset_entries(self.train_datasets)
        self.eval_datasets = _dataset_entries(self.eval_datasets)

    # -- dict-like access ----------------------------------------------------------------------------------
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
        """From an instance (returned as is), a dict of field values, or None.

        Raises ``ValueError`` naming the keys of a dict that are not card fields (a typo would otherwise be
        silently left out of the card).
        """
        if isinstance(value, cls):
            value.__post_init__()  # entries may have been assigned as plain strings
            return value
        given = dict(value or {})
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"model_card_data has unknown key(s) {unknown}; the card fields are "
                f"{[f.name for f in dataclasses.fields(cls)]}"
            )
        return cls(**{k: v for k, v in given.items() if v is not None})

    # -- evaluator hook (SentenceEvaluator.store_metrics_in_model_card_data) -------------------------------
    def set_evaluation_metrics(
        self, evaluator: Evaluator, metrics: Mapping[str, Any], epoch: int = 0, step: int = 0
    ) -> None:
        """Record an evaluator's latest metrics (called by evaluators run on a model holding this object)."""
        info = EvaluationInfo.from_evaluator(evaluator, metrics)
        self.eval_results[info.key] = info


def _dataset_entries(entries: Any) -> list[dict[str, str]]:
    """Dataset entries as ``{"name": ..., "id": ...}`` dicts (a plain string is a name, and also the Hub id
    when it has the ``owner/name`` form)."""
    out = []
    for entry in entries or []:
        if isinstance(entry, str):
            out.append(
                {"name": entry, "id": entry} if re.fullmatch(r"[\w.-]+/[\w.-]+", entry) else {"name": entry}
            )
        else:
            out.append(dict(entry))
    return out


# ------------------------------------------------------------------------------------------------ helpers
def class_path(obj: Any) -> str:
    """``raystx.losses.MultipleNegativesRankingLoss`` when the package exports the class, else the full path."""
    cls = type(obj)
    module = cls.__module__
    parts = module.split(".")
    if len(parts) > 2 and parts[0] == "raystx":
        package = ".".join(parts[:2])
        try:
            if getattr(importlib.import_module(package), cls.__name__, None) is cls:
                return f"{package}.{cls.__name__}"
        except ImportError:
            pass
    return f"{module}.{cls.__qualname__}"


def to_float(value: Any) -> float | None:
    """``float(value)``, or None when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
