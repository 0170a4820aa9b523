"""Guard against placement groups leaked by stopped trials (ray issue 54305).

A trial's Ray Train run reserves its workers in a placement group created by the Train controller. When a
scheduler stops the trial, Tune kills the trial actor; the controller dies with it but its placement group can
outlive it and hold the CPUs/GPUs, so the next trials wait forever. The guard has three parts:

* ``PlacementGroupRegistry``: a small named actor (0 CPU) owned by the sweep driver, mapping trial id -> the
  placement groups its Train runs use;
* ``PlacementGroupRegistrar``: a trainer callback; on the rank-0 worker at ``on_train_begin`` it registers the
  worker's own placement group (``ray.util.get_current_placement_group()``) under the trial id;
* ``PlacementGroupGuard``: a Tune callback on the driver; when a trial completes, errors or is stopped, it removes
  the trial's registered groups that are still alive; ``release_all`` does the same for every trial at the end.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.tune import Callback

from raystx.train.callbacks import TrainerCallback

logger = logging.getLogger("raystx.tune")


class PlacementGroupRegistry:
    """Actor: trial id -> placement groups (``ray.util.placement_group.PlacementGroup`` objects)."""

    def __init__(self) -> None:
        self._groups: dict[str, list[Any]] = {}

    def register(self, trial_id: str, group: Any) -> None:
        known = self._groups.setdefault(trial_id, [])
        if all(g.id != group.id for g in known):
            known.append(group)

    def pop(self, trial_id: str) -> list[Any]:
        return self._groups.pop(trial_id, [])

    def pop_all(self) -> list[Any]:
        groups = [g for items in self._groups.values() for g in items]
        self._groups.clear()
        return groups


def start_registry(name: str) -> Any:
    """Start (or reuse) the named registry actor in the current namespace; 0 CPU."""
    actor = ray.remote(num_cpus=0)(PlacementGroupRegistry)
    return actor.options(name=name, get_if_exists=True).remote()


class PlacementGroupRegistrar(TrainerCallback):
    """Trainer callback (rank 0): register this Train run's placement group under ``trial_id``."""

    def __init__(self, registry_name: str, namespace: str | None, trial_id: str) -> None:
        self.registry_name = registry_name
        self.namespace = namespace
        self.trial_id = trial_id

    def on_train_begin(self, args: Any, state: Any, **kwargs: Any) -> None:
        group = ray.util.get_current_placement_group()
        if group is None:
            return
        try:
            registry = ray.get_actor(self.registry_name, namespace=self.namespace)
            ray.get(registry.register.remote(self.trial_id, group), timeout=30)
        except Exception as exc:  # noqa: BLE001 - the guard is best effort, training goes on
            logger.warning("could not register placement group for trial %s: %s", self.trial_id, exc)


def group_state(group: Any) -> str | None:
    """The GCS state of ``group`` (``CREATED``, ``PENDING``, ``REMOVED``...), None when unknown."""
    try:
        return ray.util.placement_group_table(group).get("state")
    except Exception:  # noqa: BLE001
        return None


def remove_groups(groups: list[Any], wait_s: float = 10.0) -> int:
    """Remove the groups that are not removed yet and wait (up to ``wait_s``) until the GCS says so.
    Returns how many were removed here."""
    removed = 0
    for group in groups:
        if group_state(group) not in (None, "REMOVED"):
            try:
                ray.util.remove_placement_group(group)
                removed += 1
            except Exception as exc:  # noqa: BLE001 - already gone
                logger.debug("remove_placement_group(%s): %s", group.id, exc)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(group_state(g) not in (None, "REMOVED") for g in groups):
        time.sleep(0.2)
    return removed


def live_groups() -> dict[str, dict[str, Any]]:
    """Placement groups the GCS holds that are not removed, by id."""
    return {
        pid: info for pid, info in ray.util.placement_group_table().items() if info.get("state") != "REMOVED"
    }


class PlacementGroupGuard(Callback):
    """Tune callback: free a finished/stopped/failed trial's Train placement groups.

    It holds the registry's name, not a handle, so it survives being pickled into the experiment state and
    restored by a resumed sweep (which starts a registry of the same name)."""

    def __init__(self, registry_name: str, namespace: str | None) -> None:
        self.registry_name = registry_name
        self.namespace = namespace
        self.removed = 0

    def _call(self, method: str, *args: Any) -> list[Any]:
        try:
            registry = ray.get_actor(self.registry_name, namespace=self.namespace)
            return ray.get(getattr(registry, method).remote(*args), timeout=30)
        except Exception as exc:  # noqa: BLE001 - the guard is best effort
            logger.warning("placement group registry unavailable: %s", exc)
            return []

    def _release(self, trial: Any) -> None:
        count = remove_groups(self._call("pop", trial.trial_id), wait_s=0.0)
        if count:
            logger.info("removed %d leftover placement group(s) of trial %s", count, trial.trial_id)
        self.removed += count

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def release_all(self, wait_s: float = 10.0) -> int:
        """Remove every group still registered (end of sweep, also after an interrupt)."""
        count = remove_groups(self._call("pop_all"), wait_s=wait_s)
        self.removed += count
        return count
