"""Driver side of ``eval_dataset``: stage and validate the eval data like the training data, pair it with losses.

``prepare_eval_datasets(eval_dataset, ...)`` reads/stages the eval dataset(s) with ``prepare_sources`` (into their
own staging folder), picks each one's loss (sentence-transformers' rule: with a dict of losses the eval datasets
are a dict keyed by the same names, and each is evaluated with its training dataset's loss; a single loss serves
every eval dataset), checks every eval dataset against its loss with ``validate_sources`` and returns the
``EvalDataset`` entries the workers compute ``eval_loss`` / ``eval_{name}_loss`` from, plus their label kinds.
Raises before any worker starts, naming the dataset and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from raystx.train.eval_loss import EvalDataset, eval_metric_name

EVAL_STAGING = ".eval"  # under the run's staging folder; training dataset names never start with a dot there


def _loss_keys(
    eval_names: list[str], several: bool, losses: Mapping[str, nn.Module], loss_is_dict: bool
) -> dict:
    """Which entry of the training losses each eval dataset uses."""
    if not loss_is_dict:
        first = next(iter(losses))
        return dict.fromkeys(eval_names, first)
    if not several:
        raise ValueError(
            "the loss is a dict keyed by dataset name, so eval_dataset must be a dict too, keyed by the same names "
            f"({sorted(losses)}): each eval dataset is evaluated with the loss of the training dataset of that name"
        )
    unknown = sorted(set(eval_names) - set(losses))
    if unknown:
        raise ValueError(
            f"eval_dataset names {unknown}, which have no loss: the loss dict has {sorted(losses)}. Name each eval "
            "dataset like the training dataset whose loss evaluates it"
        )
    return {n: n for n in eval_names}


def prepare_eval_datasets(
    eval_dataset: Any,
    *,
    losses: Mapping[str, nn.Module],
    loss_is_dict: bool,
    staging_dir: str,
    select_columns: Any,
    batch_size: int,
) -> tuple[dict[str, EvalDataset], dict[str, str]]:
    """``({name: EvalDataset}, {name: label kind})`` for the workers; ``({}, {})`` without an eval dataset."""
    from raystx.data.sources import prepare_sources, validate_sources

    if eval_dataset is None:
        return {}, {}
    several = isinstance(eval_dataset, Mapping)
    if isinstance(select_columns, Mapping):  # per dataset name: keep the entries that name eval datasets
        names = set(eval_dataset) if several else {"eval"}
        select_columns = {k: v for k, v in select_columns.items() if k in names} or None
    sources = prepare_sources(
        eval_dataset,
        staging_dir=staging_dir.rstrip("/") + "/" + EVAL_STAGING,
        name="eval",
        select_columns=select_columns,
    )
    keys = _loss_keys(list(sources), several, losses, loss_is_dict)
    eval_losses = {name: losses[keys[name]] for name in sources}
    matched = validate_sources(sources, eval_losses, global_batch_size=batch_size, drop_last=False)
    datasets = {
        name: EvalDataset(source=source, loss_key=keys[name], metric=eval_metric_name(name, several))
        for name, source in sources.items()
    }
    return datasets, {name: matched[name].label for name in sources}
