"""Live ``ray job submit`` tests: a real Ray head of this test's own, the job entry points, token auth.

The head runs ``ray start --head --block`` on free ports with its own ``--temp-dir`` and a token of its own
(``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``; nothing is written to ``~/.ray``), so it neither clashes
with the test session's Ray nor touches other clusters on the machine. It is stopped by terminating that
``ray start`` process (which shuts down what it started) rather than with ``ray stop``, which would stop
every Ray process on the machine.

Jobs submitted: ``jobs.entrypoints.SMOKE`` (``jobs/configs/smoke.yaml``: a tiny random BERT written by
``jobs/smoke_assets.py``, 64 pairs, 2 workers x 4 steps) through the ``ray job submit`` command line of
``jobs/README.md`` and through ``JobSubmissionClient`` (then resubmitted with ``--resume`` and a second epoch,
which must continue from the last checkpoint); and the same command with a bad ``--set`` key, which must end
FAILED with the config error in its logs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from jobs.entrypoints import RUNTIME_ENV, SMOKE, submit_command  # noqa: E402
from jobs.smoke_assets import write_smoke_assets  # noqa: E402

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
JOB_TIMEOUT_S = 600
# 64 training rows, 2 workers x per_device_train_batch_size 8 = 16 rows per step, last partial batch dropped.
SMOKE_STEPS = 64 // (2 * 8)


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class Head:
    address: str  # the dashboard (job server) URL
    token: str
    env: dict[str, str]  # the environment of a client of this cluster (token auth on)
    smoke_dir: Path
    log: Path

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of GET ``url`` (0 when nothing answers yet)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _stop(proc: subprocess.Popen, temp_dir: Path) -> None:
    """Stop the head this module started: SIGTERM to its ``ray start --block`` process (which kills the
    processes it started), then kill any leftover process of this cluster, found by its temp dir."""
    import psutil

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    marker = str(temp_dir)
    leftovers = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and any(marker in arg for arg in (p.info["cmdline"] or [])):
                leftovers.append(p)
        except psutil.Error:
            continue
    for p in leftovers:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(leftovers, timeout=10)


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Head:
    from ray._private.utils import get_dashboard_dependency_error

    missing = get_dashboard_dependency_error()
    if missing:  # the job server is part of ray[default]; pyproject's ray extras must include `default`
        pytest.skip(f"Ray's job server needs ray[default], which is not installed here ({missing})")
    token = secrets.token_hex(32)
    # Short: Ray's socket paths under the temp dir must stay below the 107-character limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="rstx-", dir="/tmp"))
    smoke_dir = tmp_path_factory.mktemp("smoke")
    write_smoke_assets(smoke_dir)
    gcs, dashboard, client, agent = _free_ports(4)
    env = dict(os.environ)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
    )
    env.pop("RAY_ADDRESS", None)
    head_env = dict(env, RAYSTX_SMOKE_DIR=str(smoke_dir))  # jobs inherit the head's environment
    log = temp_dir / "ray-start.log"
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block",
        "--port", str(gcs), "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
        "--num-cpus", "2", "--include-dashboard=true", "--disable-usage-stats",
        "--object-store-memory", str(256 * 1024 * 1024), "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=head_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp_dir
        )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 180
        while _get(f"{address}/api/version", {"Authorization": f"Bearer {token}"}) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(1)
        yield Head(address=address, token=token, env=env, smoke_dir=smoke_dir, log=log)
    finally:
        _stop(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


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
