"""Does a run fit the cluster? Checked on the driver before any worker (or sweep trial) starts.

``check_fits(need, total, what=..., fix=...)`` raises ``InsufficientResourcesError`` naming every resource that
``need`` asks for beyond ``total`` (both ``{resource: amount}``); the trainer and ``raystx tune`` share it.
``check_scaling_fits(scaling)`` compares a ``ScalingConfig`` (workers x ``resources_per_worker``, ``use_gpu``)
with the cluster's total resources (``ray.cluster_resources()``). A cluster with an autoscaler that declares its
node groups (KubeRay, ``ray up``) is compared with the most its node groups can offer instead (best effort).
Resources that exist but are busy are not an error here; that wait is bounded by ``max_pending_s``
(``raystx.train.pending``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_EPS = 1e-9


class InsufficientResourcesError(ValueError):
    """A run (or one sweep trial) needs more of some resource than the whole cluster has."""


def shortfall(need: Mapping[str, float], total: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """``{resource: (needed, cluster_has)}`` for every resource ``need`` asks for beyond ``total``."""
    return {
        key: (float(amount), float(total.get(key, 0.0)))
        for key, amount in need.items()
        if amount and float(amount) > float(total.get(key, 0.0)) + _EPS
    }


def check_fits(need: Mapping[str, float], total: Mapping[str, float], *, what: str, fix: str) -> None:
    """Raise ``InsufficientResourcesError`` (``"{what} needs more than the cluster has (...); {fix}"``)."""
    short = shortfall(need, total)
    if short:
        parts = ", ".join(f"{k}: needs {v:g}, cluster has {h:g}" for k, (v, h) in short.items())
        raise InsufficientResourcesError(f"{what} needs more than the cluster has ({parts}); {fix}")


def scaling_need(scaling: Any) -> dict[str, float]:
    """Total resources of a ``ScalingConfig``'s workers (``num_workers`` x per-worker, with ``GPU`` for
    ``use_gpu``), as Ray Train reserves them in one placement group. An elastic group
    (``num_workers=(min, max)``) needs only its ``min`` workers to start."""
    from raystx.train.workers import min_workers

    count = min_workers(scaling)
    need = dict(getattr(scaling, "_trainer_resources_not_none", None) or {})
    for key, value in getattr(scaling, "_resources_per_worker_not_none", {}).items():
        need[key] = need.get(key, 0.0) + float(value) * count
    return {k: float(v) for k, v in need.items() if v}


def describe_scaling(scaling: Any) -> str:
    """``ScalingConfig(num_workers=4, use_gpu=False, resources_per_worker={'CPU': 1})`` in words."""
    per_worker = {k: float(v) for k, v in getattr(scaling, "_resources_per_worker_not_none", {}).items() if v}
    from raystx.train.workers import is_elastic, min_workers

    at_least = " at least" if is_elastic(scaling) else ""
    return (
        f"ScalingConfig(num_workers={scaling.num_workers}, use_gpu={bool(scaling.use_gpu)}) asks for{at_least} "
        f"{min_workers(scaling)} x {_fmt(per_worker)} = {_fmt(scaling_need(scaling))}"
    )


def cluster_limits() -> tuple[dict[str, float], str]:
    """The most resources the cluster can ever offer, and where that number comes from.

    An autoscaling cluster (KubeRay, ``ray up``) that declares its node groups to the GCS: their
    ``max_count`` x resources (capped by the config's ``max_resources``), best effort. Any other cluster: its
    current total, ``ray.cluster_resources()``."""
    import ray

    try:
        from ray._private.state import state

        limits = state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - another Ray layout or no GCS config: use the current total
        limits = None
    if limits:
        return {k: float(v) for k, v in limits.items()}, "at most, with its autoscaler's node groups"
    return dict(ray.cluster_resources()), "in all"


def check_scaling_fits(scaling: Any, total: Mapping[str, float] | None = None) -> None:
    """Raise ``InsufficientResourcesError`` when ``scaling``'s workers cannot all fit the cluster at once."""
    where = "in all"
    if total is None:
        total, where = cluster_limits()
    need = scaling_need(scaling)
    short = shortfall(need, total)
    if not short:
        return
    shown = {k: v for k, v in total.items() if k in ("CPU", "GPU") or k in need}
    parts = ", ".join(f"{k}: needs {v:g}, cluster has {h:g}" for k, (v, h) in short.items())
    raise InsufficientResourcesError(
        f"{describe_scaling(scaling)}, but the cluster has {_fmt(shown)} {where} ({parts}), so the workers "
        "could never start. Lower num_workers or resources_per_worker (scaling: in a config), set "
        "use_gpu=False on a cluster without GPUs, or add nodes to the cluster"
    )


def _fmt(resources: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {_num(v)}" for k, v in sorted(resources.items()) if k != "memory") + "}"


def _num(value: float) -> str:
    return f"{value:g}"
