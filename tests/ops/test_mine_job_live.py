"""``jobs/mine.py`` submitted to a real ``ray start --head`` (its own ports, temp dir and token), end to end.

The head is started and stopped as in ``test_jobs_live.py`` (whose helpers this module reuses), on other free
ports and with 4 logical CPUs (the job's driver takes 1, the 2 encode replicas 1 each). The job mines hard
negatives for 24 (anchor, positive) pairs against 60 extra passages with a tiny random BERT on 2 Ray
workers and writes Parquet; the written rows must equal ``mine_hard_negatives`` run in this process.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_jobs_live import BIN, REPO, _free_ports, _get, _runtime_env, _stop

from raystx.testing import build_tiny_bert, unique_sentences

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 600


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def mine_head(tmp_path_factory):
    """(dashboard address, auth headers) of a fresh token-auth head with 4 CPUs; stopped afterwards."""
    from ray._private.utils import get_dashboard_dependency_error

    if get_dashboard_dependency_error():
        pytest.skip("Ray's job server needs ray[default]")
    token = secrets.token_hex(32)
    temp_dir = Path(tempfile.mkdtemp(prefix="rstm-", dir="/tmp"))
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
    log = temp_dir / "ray-start.log"
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block",
        "--port", str(gcs), "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
        "--num-cpus", "4", "--include-dashboard=true", "--disable-usage-stats",
        "--object-store-memory", str(256 * 1024 * 1024), "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp_dir
        )
    address = f"http://127.0.0.1:{dashboard}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 180
        while _get(f"{address}/api/version", headers) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(1)
        yield address, headers
    finally:
        _stop(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_mine_job_writes_what_the_function_returns(mine_head, tmp_path):
    from datasets import Dataset
    from ray.job_submission import JobStatus, JobSubmissionClient

    from raystx.models import SentenceTransformer
    from raystx.util import mine_hard_negatives

    address, headers = mine_head
    model_dir = build_tiny_bert(tmp_path / "tiny-bert")
    anchors, positives = unique_sentences(24, seed=41), unique_sentences(24, seed=42)
    passages = unique_sentences(60, seed=43)
    _write_tsv(tmp_path / "pairs.tsv", ["anchor", "positive"], [[a, p] for a, p in zip(anchors, positives)])
    _write_tsv(tmp_path / "passages.tsv", ["text"], [[p] for p in passages])
    config = tmp_path / "mine.yaml"
    config.write_text(
        f"""
model: {{name_or_path: {model_dir}}}
data: {{path: {tmp_path}/pairs.tsv}}
corpus: {{path: {tmp_path}/passages.tsv, column: text}}
mine: {{num_negatives: 2, range_max: 12, output_format: n-tuple, verbose: false}}
scaling: {{num_workers: 2, cpus_per_worker: 1}}
output_path: ${{MINE_OUT}}/mined.parquet
""",
        encoding="utf-8",
    )
    out = tmp_path / "job-out"
    client = JobSubmissionClient(address, headers=headers)
    submission_id = client.submit_job(
        entrypoint=f"python jobs/mine.py --config {config}",
        runtime_env=_runtime_env(MINE_OUT=str(out)),
        entrypoint_num_cpus=1,
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while client.get_job_status(submission_id) not in (
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    ):
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            pytest.fail(f"the mine job did not finish in {JOB_TIMEOUT_S} s")
        time.sleep(2)
    logs = client.get_job_logs(submission_id)
    assert client.get_job_status(submission_id) == JobStatus.SUCCEEDED, logs[-5000:]
    summary = json.JSONDecoder().raw_decode(logs[logs.rindex('{\n  "rows"') :])[0]
    assert summary == {
        "rows": 24,
        "columns": ["anchor", "positive", "negative_1", "negative_2"],
        "output_path": str(out / "mined.parquet"),
    }
    mined = Dataset.from_parquet(str(out / "mined.parquet"))
    expected = mine_hard_negatives(
        Dataset.from_dict({"anchor": anchors, "positive": positives}),
        SentenceTransformer(str(model_dir), device="cpu"),
        corpus=passages,
        num_negatives=2,
        range_max=12,
        output_format="n-tuple",
        num_workers=0,
        verbose=False,
    )
    assert mined.to_dict() == expected.to_dict()
    assert REPO.joinpath("jobs", "mine.py").is_file()
