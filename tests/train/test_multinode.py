"""Multi-node behaviour on a two-node local cluster (ray.cluster_utils.Cluster), run in a fresh process so it
does not disturb the test session's shared Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_one_worker_per_node_and_a_lost_node_is_survived(tmp_path):
    script = Path(__file__).with_name("multinode_script.py")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=900
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT ") :])

    assert len(result["placement_nodes"]) == 2  # one worker on each node
    assert result["placement_step"] == 12
    assert result["placement_checkpoints"] == sorted(f"checkpoint-{s}" for s in (2, 4, 6, 8, 10, 12))

    assert result["loss_step"] == 12  # completed despite the lost node
    assert result["loss_worker_processes"] >= 3  # the worker group was restarted
    assert result["removed_node"] in result["loss_nodes"]  # the removed node did host a worker
