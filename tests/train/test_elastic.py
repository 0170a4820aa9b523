"""Elastic workers (``ScalingConfig(num_workers=(min, max))``) on a local three-node Ray cluster
(``ray.cluster_utils.Cluster``), run in a fresh process (``elastic_script.py``) so that it does not disturb the
test session's shared Ray instance: a node is removed mid-run and the run continues with one worker, the node is
added back and the run grows to two workers again, each time from the newest checkpoint with exact row
accounting for the new world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PER_DEVICE = 8  # elastic_script.py's per_device_train_batch_size
ROWS = 96  # and its dataset size


def _run_script(tmp_path: Path) -> dict:
    script = Path(__file__).with_name("elastic_script.py")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=1200
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-6000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_elastic_group_shrinks_on_a_lost_node_and_grows_back(tmp_path):
    result = _run_script(tmp_path)
    assert [phase for phase, _ in result["phases"]] == ["removed", "added"]
    assert result["global_step"] == 40

    # worker processes in start order: a 2-worker group, then the lone survivor, then 2 again
    worlds = [w["world"] for w in result["workers"]]
    first_one = worlds.index(1)
    assert set(worlds[:first_one]) == {2} and 2 in worlds[first_one + 1 :]

    checkpoints = result["checkpoints"]
    steps = [c["step"] for c in checkpoints]
    assert steps == list(range(2, 41, 2))
    sizes = [c["world"] for c in checkpoints]
    shrink, grow = sizes.index(1), len(sizes) - 1 - sizes[::-1].index(1)
    assert (
        set(sizes[:shrink]) == {2} and set(sizes[shrink : grow + 1]) == {1} and set(sizes[grow + 1 :]) == {2}
    )
    assert grow + 1 < len(sizes)

    # exact row accounting: rows trained so far = epoch x ROWS + rows of the current epoch (96 rows split into
    # global batches of 8 and 16 without a remainder); between two consecutive checkpoints the group that wrote
    # the later one trained (steps x per-device batch x its world size) rows, no row twice, none skipped
    def trained(checkpoint: dict) -> int:
        position = checkpoint["data"]
        assert position["global_batch_size"] == PER_DEVICE * checkpoint["world"]
        assert 0 <= sum(position["rows_consumed"].values()) < ROWS
        return position["epoch"] * ROWS + sum(position["rows_consumed"].values())

    for before, after in zip(checkpoints, checkpoints[1:]):
        steps = after["step"] - before["step"]
        assert trained(after) - trained(before) == steps * PER_DEVICE * after["world"], (before, after)
