"""Column names with a meaning (as in sentence-transformers), dependency-free so every layer can import them.

A column named ``label``, ``labels``, ``score`` or ``scores`` is the label; every other column is an input
(text) column, in order. ``return_loss`` and ``dataset_name`` are reserved.
"""

from __future__ import annotations

from collections.abc import Iterable

LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "score", "scores")
RESERVED_COLUMNS: tuple[str, ...] = ("return_loss", "dataset_name")


def label_columns_in(columns: Iterable[str]) -> list[str]:
    """The label-named columns among ``columns``, in order (a valid dataset has at most one)."""
    return [c for c in columns if c in LABEL_COLUMNS]


def split_label_column(columns: Iterable[str]) -> tuple[list[str], str | None]:
    """``(input_columns, label_column)``: the first label-named column is the label, the others are inputs.

    Several label-named columns are not refused here; ``raystx.data.columns.resolve_columns`` does that with
    an error naming the dataset.
    """
    columns = list(columns)
    labels = label_columns_in(columns)
    return [c for c in columns if c not in LABEL_COLUMNS], (labels[0] if labels else None)
