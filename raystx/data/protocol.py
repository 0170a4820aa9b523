"""The interface the training loop and the model card need from a training data source.

``raystx.data.sources.TrainingSource`` (datasets, files, Ray Datasets) and ``raystx.data.memory.InMemorySource``
(Python lists) implement it; annotate with ``DataSource`` wherever a source is taken, instead of ``Any``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RowTable(Protocol):
    """What ``DataSource.open()`` returns: ``table[column]`` -> values, ``table[[i, j]]`` -> rows by index."""

    def __getitem__(self, key: Any) -> Any: ...

    def __len__(self) -> int: ...


@runtime_checkable
class DataSource(Protocol):
    """One named training dataset: its input columns (in the order the loss receives them), its optional
    label column, its size, and worker-side random access to its rows."""

    name: str
    input_columns: list[str]
    label_column: str | None
    num_rows: int

    def open(self) -> RowTable:
        """Worker side: the rows, indexable by column name or by a list of row indices."""
        ...


@runtime_checkable
class PeekableSource(DataSource, Protocol):
    """A source that can also show a few rows on the driver (the model card's sample rows)."""

    @property
    def columns(self) -> list[str]:
        """The input columns, then the label column if there is one."""
        ...

    def peek(self, indices: Sequence[int]) -> dict[str, list]:
        """Rows ``indices`` as ``{column: [values]}``, read cheaply on the driver."""
        ...
