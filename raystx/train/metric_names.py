"""``metric_for_best_model`` checked on the driver before training, against the metric keys the run will log.

The evaluator's key names (``{name}_{metric}``, logged as ``eval_{name}_{metric}``) depend on its settings (score
functions, ``*_at_k`` lists, truncation, ...), so rather than re-deriving them, ``evaluator_metric_keys`` runs
a shallow copy of the evaluator once on a stand-in model whose ``encode`` returns fixed random vectors of the
real model's dimension (no forward pass; the evaluators need nothing from a model but ``encode``), and keeps the
keys. With an ``eval_dataset``, ``eval_loss`` (and per-dataset ``eval_{dataset}_loss``) are valid as well.

``check_metric_for_best_model(metric, evaluator, model, has_eval_dataset)`` raises
``UnknownMetricError`` naming the key and listing the valid ones. When the evaluator cannot be run on the
stand-in (an unusual custom evaluator) the check is skipped with a debug record: it never blocks a valid run.
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
import warnings
from typing import Any

import numpy as np

logger = logging.getLogger("raystx.train")

_LOSS_KEY = re.compile(r"^eval_(\w[\w.-]*_)?loss$")


class UnknownMetricError(ValueError):
    """``metric_for_best_model`` names a metric that the run never logs."""


class _StandInModel:
    """What an evaluator sees of a model: ``encode`` (fixed random vectors), the similarity function name."""

    def __init__(self, model: Any) -> None:
        dim = None
        getter = getattr(model, "get_sentence_embedding_dimension", None)
        if callable(getter):
            dim = getter()
        self.dim = int(dim or 8)
        self.similarity_fn_name = getattr(model, "similarity_fn_name", None) or "cosine"
        self._rng = np.random.default_rng(0)

    def encode(
        self,
        sentences: Any,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_tensor: bool = False,
        convert_to_numpy: bool = True,
    ) -> Any:
        single = isinstance(sentences, str)
        n = 1 if single else len(sentences)
        out = self._rng.standard_normal((n, self.dim)).astype(np.float32)
        if convert_to_tensor:
            import torch

            out = torch.from_numpy(out)
        return out[0] if single else out


def evaluator_metric_keys(evaluator: Any, model: Any) -> list[str] | None:
    """The keys ``evaluator`` returns (unprefixed by ``eval_``), or ``None`` if it cannot run on a stand-in."""
    dry = copy.copy(evaluator)
    stand_in = _StandInModel(model)
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the evaluator's own logs about random scores are noise here
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            metrics = dry(stand_in)
    except Exception as exc:  # noqa: BLE001 - a custom evaluator may need a real model: skip the check
        logger.debug("metric_for_best_model not checked: the evaluator failed on a stand-in model (%s)", exc)
        return None
    finally:
        logging.disable(disabled)
    return [str(k) for k in metrics] if isinstance(metrics, dict) else None


def valid_metric_keys(evaluator: Any, model: Any, loss_names: list[str]) -> list[str] | None:
    """Every ``eval_*`` key the run will log: the evaluator's keys and the eval losses (``None``: unknown)."""
    keys = [f"eval_{k}" for k in ("loss", *(f"{n}_loss" for n in loss_names))]
    if evaluator is not None:
        found = evaluator_metric_keys(evaluator, model)
        if found is None:
            return None
        keys += [f"eval_{k}" for k in found]
    return list(dict.fromkeys(keys))


def check_metric_for_best_model(
    metric: str | None, evaluator: Any, model: Any, eval_dataset_names: list[str] | None
) -> None:
    """Raise ``UnknownMetricError`` when ``metric`` (with or without ``eval_``) is not a key the run logs.

    ``eval_dataset_names``: the names of the ``eval_dataset`` datasets (``None``: no ``eval_dataset``), which
    make ``eval_loss``/``eval_{name}_loss`` valid."""
    if not metric:
        return
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    if eval_dataset_names is not None and _LOSS_KEY.match(key):
        return
    if evaluator is None and eval_dataset_names is None:
        raise UnknownMetricError(
            f"metric_for_best_model={metric!r}, but this run computes no evaluation metrics (no evaluator and "
            "no eval_dataset), so no checkpoint could ever be chosen by it. Pass an evaluator (its metrics are "
            "logged as eval_{name}_{metric}) or an eval_dataset (for eval_loss), or unset "
            "metric_for_best_model and load_best_model_at_end."
        )
    valid = valid_metric_keys(evaluator, model, list(eval_dataset_names or []))
    if valid is None:
        return
    if eval_dataset_names is None:
        valid = [v for v in valid if not _LOSS_KEY.match(v)]
    if key in valid:
        return
    shown = ", ".join(valid[:40]) + (f", ... ({len(valid)} in all)" if len(valid) > 40 else "")
    close = [v for v in valid if v.endswith("_" + key[5:])] or difflib.get_close_matches(key, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownMetricError(
        f"metric_for_best_model={metric!r} is not a metric this run logs (looked for {key!r}).{hint} "
        f"The valid names are: {shown}. Set metric_for_best_model to one of them (the eval_ prefix is "
        "optional); the evaluator's keys start with its name."
    )
