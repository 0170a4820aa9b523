"""Errors and warnings raised while reading datasets and checking them against losses.

Every error here is a ``ValueError`` (``DatasetValidationError``), so callers that only know the
sentence-transformers behaviour ("bad dataset -> ValueError") keep working. The message is written for a
person: it names the dataset, its columns, the loss and the expected format, or the file and line number
for reading errors. The same facts are kept as attributes for programs (``dataset``, ``columns``, ``loss``,
``expected``, ``file``, ``line``).
"""

from __future__ import annotations

from collections.abc import Sequence


class DatasetValidationError(ValueError):
    """A dataset does not fit its loss, or cannot be used for training at all.

    Raised on the driver before any worker starts. ``problems`` lists every problem found when several
    were collected into one error (the message then holds one per line).
    """

    def __init__(
        self,
        message: str,
        *,
        dataset: str | None = None,
        columns: Sequence[str] | None = None,
        loss: str | None = None,
        expected: str | None = None,
        file: str | None = None,
        line: int | None = None,
        problems: Sequence[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.columns = list(columns) if columns is not None else None
        self.loss = loss
        self.expected = expected
        self.file = file
        self.line = line
        self.problems = list(problems) if problems is not None else [message]


class DatasetReadError(DatasetValidationError):
    """A dataset's files could not be read: unsupported extension, malformed line, bad encoding, ..."""


class DatasetFileNotFoundError(DatasetReadError, FileNotFoundError):
    """A dataset path (file, directory or glob) matches no file. Also a ``FileNotFoundError``."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class DatasetWarning(UserWarning):
    """Something in a dataset is allowed but probably a mistake (e.g. empty strings in a text column)."""


def dataset_label(name: str, columns: Sequence[str] | None = None) -> str:
    """``"dataset 'nli' (columns: ['premise', 'hypothesis', 'label'])"`` for messages."""
    if columns is None:
        return f"dataset {name!r}"
    return f"dataset {name!r} (columns: {list(columns)!r})"


def file_location(path: str, line: int | None = None) -> str:
    """``"file '/data/x.csv', line 7"`` for messages."""
    return f"file {str(path)!r}" + (f", line {line}" if line is not None else "")
