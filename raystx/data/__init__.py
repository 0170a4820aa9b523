"""The data plane: readers, column rules, validation against losses, the step schedule and collation.

Names are imported lazily so that the per-worker loop (which needs only ``schedule`` and ``collate``) imports
without pyarrow, datasets or Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LABEL_COLUMNS": "raystx.data.names",
    "RESERVED_COLUMNS": "raystx.data.names",
    "DataSource": "raystx.data.protocol",
    "pairing_problems": "raystx.data.pairing",
    "DatasetFileNotFoundError": "raystx.data.errors",
    "DatasetReadError": "raystx.data.errors",
    "DatasetValidationError": "raystx.data.errors",
    "DatasetWarning": "raystx.data.errors",
    "EpochPlan": "raystx.data.schedule",
    "build_schedule": "raystx.data.schedule",
    "InMemorySource": "raystx.data.memory",
    "TrainingSource": "raystx.data.sources",
    "prepare_sources": "raystx.data.sources",
    "validate_sources": "raystx.data.sources",
    "InputExample": "raystx.data.input_example",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raystx.data' has no attribute {name!r}")
