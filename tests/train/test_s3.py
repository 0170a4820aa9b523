"""Training against real object storage: an S3 API on localhost (``moto`` server mode), run in a fresh process
(``s3_script.py``) whose own local Ray inherits the endpoint and the fake credentials from its environment.

Data read from ``s3://``, staged to and checkpointed on ``s3://`` (``output_dir`` an S3 URI), resumed from S3,
the staged copy removed from the bucket at the end; the secret key appears in no local file (the runs' nor
Ray's logs and session files). The process also checks that the secret does reach the workers through the
environment, else the scan would prove nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("moto")

pytestmark = pytest.mark.ray


SCRIPT = Path(__file__).with_name("s3_script.py")
sys.path.insert(0, str(SCRIPT.parents[1]))  # tests/, for s3_server
from s3_server import SECRET, files_holding  # noqa: E402


def _run_script(tmp_path: Path, *mode: str) -> tuple[dict, subprocess.CompletedProcess, list[str]]:
    """Run s3_script.py; its RESULT, the process, and the local files (outputs, Ray's) holding the secret."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("AWS_")}
    ray_temp = Path(tempfile.mkdtemp(prefix="raystx-s3-ray-"))
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), str(tmp_path), str(ray_temp), *mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        written = files_holding(SECRET, tmp_path) + files_holding(SECRET, ray_temp)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-6000:]
    return json.loads(lines[-1][len("RESULT ") :]), proc, written


def test_train_stage_checkpoint_and_resume_on_s3(tmp_path):
    result, proc, written = _run_script(tmp_path)

    assert result["worker_sees_secret"]  # so the scan below would catch a worker writing it
    assert result["first_step"] == 4 and result["first_checkpoints"] == ["checkpoint-2", "checkpoint-4"]
    assert result["second_step"] == 6 and result["final_state"] == 6
    assert result["second_checkpoints"] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    # the resumed run's history continues the first one's: steps 1-4 from the checkpoint, 5-6 trained now
    assert result["second_logged_steps"] == [1, 2, 3, 4, 5, 6]
    assert result["staging_left"] == []
    # the Parquet input is read in place from S3: its row groups pass through each node's local cache, which
    # is removed when the run ends
    assert result["data_listing"] == ["raystx-test/data/pairs.parquet"]
    assert result["cache_bytes_written"] > 0 and result["caches_left"] == []

    assert not written, f"the S3 secret key landed in files: {written}"
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_sigkilled_worker_resumes_from_s3_as_if_uninterrupted(tmp_path):
    result, _, written = _run_script(tmp_path, "kill")
    assert result["killed"] and result["worker_processes"] == 4  # 2 workers x 2 attempts
    assert result["global_step"] == 6 and result["logged_steps"] == [1, 2, 3, 4, 5, 6]
    assert result["max_weight_diff"] <= 1e-5  # the same weights as the uninterrupted run
    assert not written, f"the S3 secret key landed in files: {written}"
