"""Per-worker data read counters, written to a folder for benchmarks and tests.

When ``RAYSTX_DATA_STATS_DIR`` is set in the workers' environment, each worker writes, at the end of its run,
``<dir>/rank-<rank>-<pid>.json``: ``{"rank", "node_id", "pid", "datasets": {name: RowGroupReader.stats()}}``.
``read_all(dir)`` reads them back. Nothing is written when the variable is unset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATS_DIR_ENV = "RAYSTX_DATA_STATS_DIR"


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - a run without Ray has one node
        pass
    return "local"


def write_stats(rank: int, stats: dict[str, dict[str, int]]) -> str | None:
    """Write this worker's counters when ``RAYSTX_DATA_STATS_DIR`` is set; returns the file written or None."""
    directory = os.environ.get(STATS_DIR_ENV)
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"rank-{rank}-{os.getpid()}.json")
    record = {"rank": rank, "node_id": _node_id(), "pid": os.getpid(), "datasets": stats}
    Path(path + ".partial").write_text(json.dumps(record))
    os.replace(path + ".partial", path)
    return path


def read_all(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """Every worker record in ``directory`` (sorted by rank, then pid)."""
    records = [json.loads(p.read_text()) for p in Path(directory).glob("rank-*.json")]
    return sorted(records, key=lambda r: (r["rank"], r["pid"]))
