"""Connecting to Ray, written once for the trainer, ``raystx tune`` and ``hyperparameter_search``."""

from __future__ import annotations

import os


def ensure_ray() -> None:
    """Connect to the cluster named by ``RAY_ADDRESS`` (or start a local Ray) unless Ray is already up.

    Worker logs reach the driver's console (``log_to_driver``). Does nothing when ``ray.init`` was called
    before, so a caller's own ``ray.init(...)`` settings win."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=True)
