"""Each node reads only its shards: a 2-node local cluster (``ray.cluster_utils.Cluster``), one worker per node,
one epoch over a Parquet file of 32 row groups read in place, ``shuffle_window=2``. Run in a fresh process
(``shard_nodes_script.py``) so it does not disturb the session's shared Ray instance.

Reference: with rank stripes each rank walks its own half of the windowed order, and with equal row groups and a
window that divides a half, that half is exactly 16 whole row groups: the nodes' row-group sets are disjoint
halves, each node's bytes read are the compressed size of its own 16 row groups (half the file), and nothing is
staged or copied to local disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_each_node_reads_only_its_own_row_groups(tmp_path):
    script = Path(__file__).with_name("shard_nodes_script.py")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=900
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT ") :])

    assert result["global_step"] == 32  # 512 rows / (2 x 8): one epoch
    workers = result["workers"]
    assert sorted(w["rank"] for w in workers) == [0, 1]
    assert len({w["node_id"] for w in workers}) == 2  # one worker per node
    stats = {w["rank"]: w["datasets"]["train"] for w in workers}
    groups = {rank: set(s["row_group_ids"]) for rank, s in stats.items()}
    assert groups[0].isdisjoint(groups[1]) and groups[0] | groups[1] == set(range(32))
    assert len(groups[0]) == len(groups[1]) == 16
    for rank, s in stats.items():
        assert s["row_groups_read"] == 16  # each read once (the cache held them)
        assert s["bytes_read"] == sum(result["group_bytes"][g] for g in groups[rank])
        assert s["bytes_read"] < 0.6 * sum(result["group_bytes"])
        assert s["bytes_written"] == 0  # a local file is read in place, not copied
    assert result["staged"] == []  # the Parquet input was not staged
