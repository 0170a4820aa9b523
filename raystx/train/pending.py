"""A bound on waiting for the Ray Train workers to start (``max_pending_s``), so a run never waits forever.

Ray Train places all workers at once (one placement group). When the cluster lacks the free resources (another
run holds them, an autoscaler cannot add nodes), the controller waits, times out after 60 s, and retries without
end. raystx bounds this wait on the driver:

* ``StartedMarker`` is a controller callback (it runs in the Train controller, which Ray places on the driver's
  node): after the worker group has started it creates a marker file the driver chose;
* ``PendingWatchdog`` is a driver thread: if the marker has not appeared ``max_pending_s`` seconds after the
  controller started, it tells the controller to abort (workers and placement group go with it) and the driver
  raises ``WorkersPendingError`` naming what the run asks for, what the cluster has free, and the setting.

In: ``max_pending_s`` (``SentenceTransformerTrainingArguments.max_pending_s``, default 600 s; ``None`` waits
forever). The watchdog runs when ``train()`` is called from the main thread (not inside a sweep trial, whose
concurrency ``raystx tune`` already caps at what fits).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ray.train.v2._internal.execution.callback import WorkerGroupCallback

from raystx.train.scratch import owned_temp_dir

logger = logging.getLogger("raystx.train")


def stop_controller(controller: Any, abort_timeout_s: float = 5.0) -> None:
    """Stop a Ray Train controller: ``abort`` (it stops the worker group and frees its placement group), then
    ``ray.kill`` in case the abort did not end it in time (a controller still busy starting, say); its workers
    and placement group are owned by it and go with it."""
    import ray

    try:
        ray.get(controller.abort.remote(), timeout=abort_timeout_s)
    except Exception:  # noqa: BLE001 - a finished abort ends the actor, which raises here
        pass
    try:
        ray.kill(controller, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def _remove_new_groups(before: set[str]) -> None:
    """Remove the placement groups created since ``before`` that are still waiting (the stopped run's: a
    pending group outlives its killed creator)."""
    import ray
    from ray.util.placement_group import PlacementGroup

    for hex_id, group in ray.util.placement_group_table().items():
        if hex_id not in before and group.get("state") == "PENDING":
            try:
                ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(hex_id))))
            except Exception:  # noqa: BLE001 - already removed
                pass


class WorkersPendingError(TimeoutError):
    """The Ray Train workers did not start within ``max_pending_s``."""


class StartedMarker(WorkerGroupCallback):
    """Controller callback: create ``path`` once the worker group has started (nothing when ``path`` is None)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def after_worker_group_start(self, worker_group: Any) -> None:
        if self.path is not None:
            Path(self.path).touch()


class PendingWatchdog:
    """Driver thread aborting the controller when the workers have not started in time (see module docs)."""

    def __init__(self, max_pending_s: float | None, scaling: Any) -> None:
        self.max_pending_s = max_pending_s
        self.scaling = scaling
        # The marker's folder exists only while a bounded wait is watched; a killed driver's is removed by a later
        # run on this machine (``raystx.train.scratch.remove_abandoned``).
        self._folder = owned_temp_dir("started") if max_pending_s is not None else None
        self.marker = str(self._folder / "started") if self._folder is not None else None
        self.callback = StartedMarker(self.marker)
        self.timed_out = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.free_at_timeout: dict[str, float] = {}

    def start(self, controller: Any) -> None:
        """Begin watching ``controller`` (called once the controller actor exists)."""
        if self.marker is None or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._watch, args=(controller,), name="raystx-pending-watchdog", daemon=True
        )
        self._thread.start()

    def _watch(self, controller: Any) -> None:
        import ray

        groups_before = set(ray.util.placement_group_table())
        deadline = time.monotonic() + float(self.max_pending_s)
        while not self._done.wait(0.25):
            if Path(self.marker).exists():
                return
            if time.monotonic() >= deadline:
                self.timed_out = True
                try:
                    self.free_at_timeout = dict(ray.available_resources())
                except Exception:  # noqa: BLE001 - only for the message
                    pass
                logger.warning(
                    "The Ray Train workers did not start within max_pending_s=%s s; stopping the run",
                    self.max_pending_s,
                )
                stop_controller(controller)
                _remove_new_groups(groups_before)
                return

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def error(self) -> WorkersPendingError:
        """The error raised on the driver after a timeout."""
        from raystx.train.resources import describe_scaling

        free = {k: v for k, v in self.free_at_timeout.items() if k in ("CPU", "GPU")}
        shown = ", ".join(f"{k}: {v:g}" for k, v in sorted(free.items())) or "unknown"
        return WorkersPendingError(
            f"the Ray Train workers did not start within max_pending_s={self.max_pending_s:g} s: "
            f"{describe_scaling(self.scaling)}, and the cluster has {{{shown}}} free (other runs or actors hold "
            "the rest, or an autoscaler could not add nodes). The run was stopped and nothing was trained. "
            "Free the resources, lower num_workers / resources_per_worker, or raise max_pending_s "
            "(None waits forever)."
        )
