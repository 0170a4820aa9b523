"""How many trials can run at once: the cluster's free resources over what one trial needs.

One trial needs its driver actor (``driver_resources``, default a quarter CPU) plus its Train workers
(``ScalingConfig.total_resources``). A Train run only starts when all its workers fit, so running more trials than
fit just leaves trial actors waiting; the sweep caps ``max_concurrent_trials`` at what fits (at least 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def trial_resources(scaling: Any, driver: Mapping[str, float]) -> dict[str, float]:
    """Total resources of one trial: the driver's plus every worker's (``scaling`` is a ``ScalingConfig``)."""
    need = {k: float(v) for k, v in scaling.total_resources.items() if v}
    for key, value in driver.items():
        need[key] = need.get(key, 0.0) + float(value)
    return need


def derive_max_concurrent(need: Mapping[str, float], available: Mapping[str, float]) -> int:
    """``min`` over the resources a trial needs of ``floor(available / need)``, at least 1.

    Raises when a needed resource does not exist in the cluster at all (the sweep could never start)."""
    counts = []
    for key, amount in need.items():
        if amount <= 0:
            continue
        have = float(available.get(key, 0.0))
        counts.append(math.floor(have / amount + 1e-9))
    return max(1, min(counts)) if counts else 1


def check_fits(need: Mapping[str, float], total: Mapping[str, float]) -> None:
    """Raise ``ValueError`` naming the resource when one trial needs more than the whole cluster has."""
    from raystx.train.resources import check_fits as check

    check(
        need,
        total,
        what="one trial",
        fix="lower tune.resources (workers / resources per worker) or tune.driver_resources",
    )


def max_concurrent_trials(scaling: Any, driver: Mapping[str, float], given: int | None = None) -> int:
    """``given`` when set, else what fits in the cluster's currently free resources."""
    import ray

    need = trial_resources(scaling, driver)
    check_fits(need, ray.cluster_resources())
    if given:
        return int(given)
    return derive_max_concurrent(need, ray.available_resources())
