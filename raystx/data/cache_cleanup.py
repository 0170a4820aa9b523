"""A run's node-local data caches, and their removal when the run ends.

Workers keep the row groups they fetch from remote Parquet files in their node's temp dir
(``raystx.data.shard_reader.RowGroupReader``, size-capped). A run gives its sources one ``cache_tag``
(``new_cache_tag()``; ``tag_sources``) so that these files land in ``$TMPDIR/raystx-data-cache/<tag>`` on every
node, and ``remove_run_caches(tag)`` deletes that folder on the driver's machine and on every alive Ray node
(a zero-CPU task pinned to each node) when the run ends, whether it succeeded or not.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("raystx.data")

_REMOVE_TIMEOUT_S = 60.0


def new_cache_tag() -> str:
    """A fresh tag for one run's caches (a folder name)."""
    return f"run-{uuid.uuid4().hex[:16]}"


def tag_sources(sources: Iterable[Any], tag: str, cache_max_bytes: int | None = None) -> None:
    """Set ``cache_tag`` (and ``cache_max_bytes`` when given) on every training source (or anything holding
    one in ``.source``, like eval items)."""
    for item in sources:
        source = getattr(item, "source", item)
        if hasattr(source, "cache_tag"):
            source.cache_tag = tag
            if cache_max_bytes is not None:
                source.cache_max_bytes = int(cache_max_bytes)


def remove_local_cache(tag: str) -> bool:
    """Delete ``$TMPDIR/raystx-data-cache/<tag>`` on this machine; True when there was something to delete."""
    from raystx.data.readers import _cache_dir

    if not tag or "/" in tag or tag in (".", ".."):
        raise ValueError(f"not a cache tag: {tag!r}")
    path = _cache_dir(tag)
    existed = os.path.isdir(path)
    shutil.rmtree(path, ignore_errors=True)
    return existed


def remove_run_caches(tag: str) -> int:
    """Delete the run's cache folder here and on every alive Ray node; returns how many held one. Failures are
    logged, not raised (the run's own outcome matters more than its temp files)."""
    removed = int(remove_local_cache(tag))
    try:
        import ray

        if not ray.is_initialized():
            return removed
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        task = ray.remote(num_cpus=0, max_retries=0)(remove_local_cache)
        refs = [
            task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(tag)
            for node in ray.nodes()
            if node.get("Alive") and node["NodeID"] != here
        ]
        if not refs:
            return removed
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=_REMOVE_TIMEOUT_S)
        removed += sum(bool(r) for r in ray.get(ready))
        if pending:
            logger.warning("%d node(s) did not remove the run's data cache %s in time", len(pending), tag)
    except Exception as exc:  # noqa: BLE001 - cleanup must not fail a run
        logger.warning("Could not remove the run's data caches (%s): %s", tag, exc)
    return removed
