"""Fixtures of the port suite: the tiny models and data the scripts read, and a Ray head the raystx runs join.

Imported by the test module rather than kept in a ``conftest.py``: a second module named ``conftest`` would
replace ``tests/conftest.py`` for the ``from conftest import ...`` of test modules collected after this folder.

The head is one ``ray start --head --block`` of this suite (free ports, its own ``--temp-dir``, token auth via
``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``; nothing written to ``~/.ray``), started once per session and
stopped by terminating that process, as ``tests/ops/test_jobs_live.py`` does. Each ported script is a separate
Python process that joins it through ``RAY_ADDRESS``: measured on the 2-core dev machine under load, joining
took 0.3 s and ``ray.init(address="local")`` in each script 70 s (and a script's own ``ray.init()`` could join
another ``ray start`` cluster on the machine). Ray workers are started by the
head, so the head's environment carries ``PYTHONPATH`` (this checkout's raystx) and the offline settings.
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
from dataclasses import dataclass
from pathlib import Path

import pytest
from port_data import write_port_data

from raystx.testing import build_tiny_bert

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class PortAssets:
    """Paths the scripts read through ``PORT_*`` environment variables."""

    model: Path  # tiny random BERT, hidden 32
    guide: Path  # a second tiny BERT (other seed): GIST guide, distillation teacher, Router document tower
    wide: Path  # tiny BERT with hidden 768 (Matryoshka dims 768..64)
    data: Path

    def env(self) -> dict[str, str]:
        return {
            "PORT_MODEL": str(self.model),
            "PORT_GUIDE": str(self.guide),
            "PORT_TEACHER": str(self.guide),
            "PORT_WIDE_MODEL": str(self.wide),
            "PORT_DATA": str(self.data),
        }


@pytest.fixture(scope="session")
def port_assets(tmp_path_factory) -> PortAssets:
    root = tmp_path_factory.mktemp("port-assets")
    return PortAssets(
        model=build_tiny_bert(root / "tiny", seed=0),
        guide=build_tiny_bert(root / "guide", seed=1),
        wide=build_tiny_bert(root / "wide", seed=2, hidden=768),
        data=write_port_data(root / "data"),
    )


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


def _stop(proc: subprocess.Popen, temp_dir: Path) -> None:
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


@pytest.fixture(scope="session")
def ray_head() -> dict[str, str]:
    """Start a token-auth Ray head (4 CPUs) for the session; yields the environment a client needs to join it."""
    token = secrets.token_hex(32)
    temp_dir = Path(tempfile.mkdtemp(prefix="rport-", dir="/tmp"))  # short: socket paths < 107 chars
    gcs, client, agent, metrics = _free_ports(4)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OFFLINE)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    # Ray's own helpers inside the cluster's processes (e.g. Ray Train's PlacementGroupCleaner) look the cluster
    # up by address; with other Ray instances on this machine they need to be told which one is theirs.
    head_env = dict(env, RAY_ADDRESS=f"127.0.0.1:{gcs}")
    log = temp_dir / "ray-start.log"
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block",
        "--port", str(gcs), "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent), "--metrics-export-port", str(metrics),
        "--num-cpus", "4", "--include-dashboard=false", "--disable-usage-stats",
        "--object-store-memory", str(256 * 1024 * 1024), "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=head_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp_dir
        )
    address = f"127.0.0.1:{gcs}"
    try:
        deadline = time.monotonic() + 180
        while True:
            status = subprocess.run(
                [str(BIN / "ray"), "status", "--address", address], env=env, capture_output=True, timeout=60
            )
            if status.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(2)
        yield dict(env, RAY_ADDRESS=address)
    finally:
        _stop(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
