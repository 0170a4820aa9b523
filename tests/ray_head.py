"""A real ``ray start --head`` of a test's own: free ports, its own ``--temp-dir``, token auth, stopped afterwards.

``start_head(prefix, num_cpus, dashboard=..., env=..., head_env=...)`` is a context manager yielding a ``Head``:
the head runs ``ray start --head --block`` with a fresh token (``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``;
nothing is written to ``~/.ray``), so it neither clashes with the test session's Ray nor touches other clusters
on the machine. It is stopped by terminating that ``ray start`` process (which shuts down what it started),
then any leftover process whose command line names its temp dir is killed; ``ray stop`` would stop every Ray
process on the machine. Used by the live job tests (``tests/ops``) and the port tests (``tests/port``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on localhost right now."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of GET ``url`` (0 when nothing answers yet)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


@dataclass
class Head:
    gcs_address: str  # host:port, what ``ray.init``/``RAY_ADDRESS`` take
    dashboard: str | None  # the job server URL (None when started without the dashboard)
    token: str
    env: dict[str, str]  # the environment of a client of this cluster (token auth on)
    temp_dir: Path
    log: Path

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def stop_head(proc: subprocess.Popen, temp_dir: Path) -> None:
    """SIGTERM the ``ray start --block`` process (it stops what it started), then kill leftovers of this
    cluster only, found by its temp dir in their command line."""
    import psutil

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    leftovers = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and any(str(temp_dir) in arg for arg in (p.info["cmdline"] or [])):
                leftovers.append(p)
        except psutil.Error:
            continue
    for p in leftovers:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(leftovers, timeout=10)


def _ready(head: Head) -> bool:
    if head.dashboard is not None:
        return http_status(f"{head.dashboard}/api/version", head.auth_headers) == 200
    status = subprocess.run(
        [str(BIN / "ray"), "status", "--address", head.gcs_address],
        env=head.env,
        capture_output=True,
        timeout=60,
    )
    return status.returncode == 0


@contextmanager
def start_head(
    prefix: str,
    num_cpus: int,
    *,
    dashboard: bool = True,
    env: dict[str, str] | None = None,
    head_env: dict[str, str] | None = None,
) -> Iterator[Head]:
    """Start a head with ``num_cpus`` logical CPUs; ``env`` is added to the client environment (and the head's),
    ``head_env`` to the head's only (jobs inherit it). Skips the test when the dashboard is asked for but
    ``ray[default]`` is missing."""
    if dashboard:
        from ray._private.utils import get_dashboard_dependency_error

        missing = get_dashboard_dependency_error()
        if missing:  # the job server is part of ray[default]; pyproject's ray extras must include `default`
            pytest.skip(f"Ray's job server needs ray[default], which is not installed here ({missing})")
    token = secrets.token_hex(32)
    # Short: Ray's socket paths under the temp dir must stay below the 107-character limit.
    temp_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    gcs, dash, client, agent, metrics = free_ports(5)
    client_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    client_env.update(env or {})
    client_env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        PATH=f"{BIN}{os.pathsep}{client_env.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
    )
    gcs_address = f"127.0.0.1:{gcs}"
    # Ray's own helpers inside the cluster's processes (e.g. Ray Train's PlacementGroupCleaner) look the cluster
    # up by address; with other Ray instances on this machine they need to be told which one is theirs.
    server_env = dict(client_env, RAY_ADDRESS=gcs_address, **(head_env or {}))
    log = temp_dir / "ray-start.log"
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block",
        "--port", str(gcs), "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent), "--metrics-export-port", str(metrics),
        "--num-cpus", str(num_cpus), "--disable-usage-stats",
        "--object-store-memory", str(256 * 1024 * 1024), "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    cmd += (
        ["--include-dashboard=true", "--dashboard-port", str(dash)]
        if dashboard
        else ["--include-dashboard=false"]
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=server_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp_dir
        )
    head = Head(
        gcs_address=gcs_address,
        dashboard=f"http://127.0.0.1:{dash}" if dashboard else None,
        token=token,
        env=client_env,
        temp_dir=temp_dir,
        log=log,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(head):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(1)
        yield head
    finally:
        stop_head(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
