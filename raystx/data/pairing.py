"""The one check that a loss dict and the training datasets pair up by name (dependency-free).

Used by ``raystx.data.sources.validate_sources`` (driver, before workers start), and meant for the trainer
(``SentenceTransformerTrainer`` with a loss dict) and the YAML config (``losses:``), which wrap the same
sentences in their own error type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def unpaired(loss_names: Iterable[str], dataset_names: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(loss keys that name no dataset, datasets without a loss)``, each in the order given."""
    losses, datasets = list(loss_names), list(dataset_names)
    return [n for n in losses if n not in datasets], [n for n in datasets if n not in losses]


def pairing_problems(
    loss_names: Iterable[str],
    dataset_names: Iterable[str],
    *,
    label: Callable[[str], str] | None = None,
    what: str = "the loss dict",
) -> list[str]:
    """One sentence per mismatch between the loss dict's keys and the dataset names ([] when they pair up).

    ``label(name)`` describes a dataset in the sentences (default ``dataset 'name'``); ``what`` names the
    loss mapping as the user wrote it (``the loss dict``, ```losses```).
    """
    losses, datasets = list(loss_names), list(dataset_names)
    describe = label or (lambda name: f"dataset {name!r}")
    problems = []
    unknown, missing = unpaired(losses, datasets)
    if unknown:
        problems.append(f"{what} names dataset(s) {unknown}, which are not among the datasets {datasets}")
    for name in missing:
        problems.append(
            f"{describe(name)} has no loss: {what} covers {losses}; add a loss for {name!r} or drop the dataset"
        )
    return problems
