"""The data plane: readers, column rules, validation against losses, the step schedule and collation."""

from __future__ import annotations

from raystx.data.columns import LABEL_COLUMNS, RESERVED_COLUMNS
from raystx.data.errors import (
    DatasetFileNotFoundError,
    DatasetReadError,
    DatasetValidationError,
    DatasetWarning,
)
from raystx.data.schedule import EpochPlan, build_schedule
from raystx.data.sources import TrainingSource, prepare_sources, validate_sources

__all__ = [
    "LABEL_COLUMNS",
    "RESERVED_COLUMNS",
    "DatasetFileNotFoundError",
    "DatasetReadError",
    "DatasetValidationError",
    "DatasetWarning",
    "EpochPlan",
    "TrainingSource",
    "build_schedule",
    "prepare_sources",
    "validate_sources",
]
