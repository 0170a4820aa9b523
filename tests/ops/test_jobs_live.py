"""Live ``ray job submit`` tests: a real Ray head of this test's own, the job entry points, token auth.

The head is ``tests/ray_head.py``'s ``start_head``: ``ray start --head --block`` on free ports with its own
``--temp-dir`` and a token of its own, stopped by terminating that process.

Jobs submitted: ``jobs.entrypoints.SMOKE`` (``jobs/configs/smoke.yaml``: a tiny random BERT written by
``jobs/smoke_assets.py``, 64 pairs, 2 workers x 4 steps) through the ``ray job submit`` command line of
``jobs/README.md`` and through ``JobSubmissionClient`` (then resubmitted with ``--resume`` and a second epoch,
which must continue from the last checkpoint); and the same command with a bad ``--set`` key, which must end
FAILED with the config error in its logs.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ray_head import BIN, start_head  # noqa: E402
from ray_head import http_status as _get  # noqa: E402

from jobs.entrypoints import RUNTIME_ENV, SMOKE, submit_command  # noqa: E402
from jobs.smoke_assets import write_smoke_assets  # noqa: E402

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 600
# 64 training rows, 2 workers x per_device_train_batch_size 8 = 16 rows per step, last partial batch dropped.
SMOKE_STEPS = 64 // (2 * 8)


@dataclass
class JobHead:
    address: str  # the dashboard (job server) URL
    token: str
    env: dict[str, str]  # the environment of a client of this cluster (token auth on)
    smoke_dir: Path
    log: Path

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Iterator[JobHead]:
    """A 2-CPU head whose jobs see ``RAYSTX_SMOKE_DIR`` (the smoke job's assets)."""
    smoke_dir = tmp_path_factory.mktemp("smoke")
    write_smoke_assets(smoke_dir)
    with start_head("rstx-", num_cpus=2, head_env={"RAYSTX_SMOKE_DIR": str(smoke_dir)}) as started:
        assert started.dashboard is not None
        yield JobHead(started.dashboard, started.token, started.env, smoke_dir, started.log)


@pytest.fixture(scope="module")
def client(head):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.address, headers=head.auth_headers)


def _wait(client, submission_id: str, timeout: float = JOB_TIMEOUT_S):
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(submission_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return status
        time.sleep(2)
    client.stop_job(submission_id)
    pytest.fail(f"job {submission_id} did not finish in {timeout} s:\n{client.get_job_logs(submission_id)}")


def _summary(logs: str) -> dict:
    """The JSON summary ``raystx train`` prints last (global_step, training_loss, model, eval)."""
    start = logs.rindex('{\n  "global_step"')
    return json.JSONDecoder().raw_decode(logs[start:])[0]


def _runtime_env(**env_vars: str) -> dict:
    runtime_env = yaml.safe_load((REPO / RUNTIME_ENV).read_text())
    runtime_env["working_dir"] = str(REPO)
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env_vars}
    return runtime_env


def _check_trained_model(path: Path, summary: dict, steps: int = SMOKE_STEPS) -> None:
    from raystx.models import SentenceTransformer

    assert summary["global_step"] == steps
    assert summary["training_loss"] is not None and summary["training_loss"] > 0
    assert Path(summary["model"]) == path
    assert "smoke-dev_spearman_cosine" in summary["eval"]
    model = SentenceTransformer(str(path))
    emb = model.encode(["the cat sits on the red road", "a dog runs"])
    assert emb.shape == (2, 32)


def test_job_server_requires_the_token(head):
    assert _get(f"{head.address}/api/jobs/") == 401
    assert _get(f"{head.address}/api/jobs/", {"Authorization": "Bearer " + "0" * 64}) == 403
    assert _get(f"{head.address}/api/jobs/", head.auth_headers) == 200


def test_cli_submit_smoke_job_succeeds(head, client):
    submission_id = f"raystx-smoke-cli-{secrets.token_hex(4)}"
    cmd = shlex.split(submit_command(head.address, SMOKE))
    cmd[0] = str(BIN / "ray")
    cmd[3:3] = ["--submission-id", submission_id]  # after `ray job submit`
    proc = subprocess.run(cmd, cwd=REPO, env=head.env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    logs = client.get_job_logs(submission_id)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{logs[-3000:]}"
    assert client.get_job_status(submission_id).value == "SUCCEEDED"
    _check_trained_model(head.smoke_dir / "runs" / "smoke" / "final", _summary(logs))


def test_client_submit_smoke_job_with_overrides_succeeds_and_resumes(head, client, tmp_path):
    out = tmp_path / "client-run"
    overrides = shlex.join([f"args.output_dir={out}/run", f"save_model_to={out}/final"])
    runtime_env = _runtime_env(RAYSTX_SMOKE_DIR=str(head.smoke_dir), RAYSTX_OVERRIDES=overrides)
    submission_id = client.submit_job(entrypoint=SMOKE, runtime_env=runtime_env, entrypoint_num_cpus=1)
    status = _wait(client, submission_id)
    logs = client.get_job_logs(submission_id)
    assert status.value == "SUCCEEDED", logs[-5000:]
    _check_trained_model(out / "final", _summary(logs))
    assert (out / "run" / f"checkpoint-{SMOKE_STEPS}").is_dir()  # checkpoints landed in the overridden dir

    # Submitted again with --resume and a second epoch, the job continues from the last checkpoint.
    resumed_id = client.submit_job(
        entrypoint=f"{SMOKE} --resume --set args.num_train_epochs=2",
        runtime_env=runtime_env,
        entrypoint_num_cpus=1,
    )
    status = _wait(client, resumed_id)
    logs = client.get_job_logs(resumed_id)
    assert status.value == "SUCCEEDED", logs[-5000:]
    assert re.search(rf"Resumed from \S+ at step {SMOKE_STEPS} \(epoch 1, batch 0\)", logs), logs[-5000:]
    assert _summary(logs)["global_step"] == 2 * SMOKE_STEPS


def test_bad_config_job_fails_with_the_config_error(head, client):
    submission_id = client.submit_job(
        entrypoint=f"{SMOKE} --set args.learning_rat=0.1",
        runtime_env=_runtime_env(RAYSTX_SMOKE_DIR=str(head.smoke_dir)),
        entrypoint_num_cpus=1,
    )
    status = _wait(client, submission_id, timeout=180)
    logs = client.get_job_logs(submission_id)
    assert status.value == "FAILED", logs
    assert "unknown training argument(s) ['learning_rat']" in logs
    info = client.get_job_info(submission_id)
    assert info.driver_exit_code == 2, info.message  # `raystx` exits 2 for a bad config
