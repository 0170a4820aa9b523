"""A dependency-free training source over Python lists (for single-process runs and small in-memory data).

Implements the part of ``TrainingSource`` the per-worker loop uses: ``input_columns``, ``label_column``,
``num_rows`` and ``open()`` returning an object indexable by a list of row indices -> ``{column: [values]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raystx.data.names import split_label_column


class _Rows:
    def __init__(self, columns: Mapping[str, Sequence[Any]]) -> None:
        self.columns = {k: list(v) for k, v in columns.items()}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.columns[key]
        return {name: [values[i] for i in key] for name, values in self.columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class InMemorySource:
    """``columns`` maps column name -> values; the label column follows the sentence-transformers names."""

    def __init__(self, columns: Mapping[str, Sequence[Any]], name: str = "train") -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"dataset {name!r}: columns have different lengths {sorted(lengths)}")
        self.name = name
        self._rows = _Rows(columns)
        self.input_columns, self.label_column = split_label_column(columns)
        self.num_rows = lengths.pop()

    def open(self) -> _Rows:
        return self._rows
