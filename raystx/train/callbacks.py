"""Trainer callbacks: the hooks for user code and the tracking integrations (``report_to``), in one place.

The base classes live in ``raystx.train.trainer_callback`` and the integrations in
``raystx.train.integrations`` (which builds on the base classes); this module only re-exports both, so that
neither of them imports the other's user.
"""

from __future__ import annotations

from raystx.train.integrations import integration_callbacks
from raystx.train.trainer_callback import CallbackHandler, TrainerCallback, TrainerControl, TrainerState

__all__ = ["CallbackHandler", "TrainerCallback", "TrainerControl", "TrainerState", "integration_callbacks"]
