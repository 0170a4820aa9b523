"""``jobs/mine.py`` submitted to a real ``ray start --head`` (its own ports, temp dir and token), end to end.

The head is ``tests/ray_head.py``'s ``start_head`` (as in ``test_jobs_live.py``), on other free
ports and with 4 logical CPUs (the job's driver takes 1, the 2 encode replicas 1 each). The job mines hard
negatives for 24 (anchor, positive) pairs against 60 extra passages with a tiny random BERT on 2 Ray
workers and writes Parquet; the written rows must equal ``mine_hard_negatives`` run in this process.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from ray_head import start_head
from test_jobs_live import REPO, _runtime_env

from raystx.testing import build_tiny_bert, unique_sentences

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 600


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def mine_head():
    """(dashboard address, auth headers) of a fresh token-auth head with 4 CPUs; stopped afterwards."""
    with start_head("rstm-", num_cpus=4) as head:
        yield head.dashboard, head.auth_headers


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
