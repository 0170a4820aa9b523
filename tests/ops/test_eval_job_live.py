"""Live ``ray job submit`` of ``jobs/eval.py`` (``raystx evaluate``) on a real Ray head of this module's own.

The head is ``tests/ops/test_jobs_live.py``'s fixture (``ray start --head --block`` on free ports, its own temp dir
and token; stopped by terminating that process), started once for this module. The job evaluates the tiny smoke
model with ``jobs/configs/eval.yaml``, its evaluators replaced by one ``EmbeddingSimilarityEvaluator`` on the
smoke STS file, on 2 workers: ``metrics.json`` must hold the metrics of the same evaluator called in this
process (1e-6). A bad ``--set`` key must end FAILED with exit status 2 and the config error in the logs.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from test_jobs_live import _runtime_env, _wait, client, head  # noqa: E402,F401 - fixtures used below

pytestmark = pytest.mark.slow

EVAL = shlex.join(["python", "jobs/eval.py", "--config", "jobs/configs/eval.yaml"])


def _distinct_pairs(smoke_dir: Path, path: Path) -> Path:
    """The smoke STS rows whose two sentences differ: an identical pair scores cosine 1 up to float noise, and
    noise between such ties (threads, batch shapes) reorders them in the Spearman ranking."""
    from jobs.smoke_assets import write_tsv
    from raystx.train.build import read_table

    frame = read_table(str(smoke_dir / "stsb" / "validation.tsv"))
    rows = [
        (a, b, float(s)) for a, b, s in zip(frame["sentence1"], frame["sentence2"], frame["score"]) if a != b
    ]
    return write_tsv(path, rows)


def _evaluators(path: Path) -> str:
    spec = [
        {
            "type": "EmbeddingSimilarityEvaluator",
            "path": str(path),
            "columns": {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"},
            "score_scale": 5.0,
            "kwargs": {"name": "smoke-dev"},
        }
    ]
    return "evaluators=" + json.dumps(spec)  # YAML flow syntax


def test_eval_job_writes_the_direct_metrics(head, client, tmp_path):  # noqa: F811
    from raystx.evaluation import EmbeddingSimilarityEvaluator
    from raystx.models import SentenceTransformer
    from raystx.train.build import read_table

    out = tmp_path / "eval-out"
    pairs = _distinct_pairs(head.smoke_dir, tmp_path / "sts.tsv")
    entrypoint = " ".join(
        [
            EVAL,
            "--model",
            shlex.quote(str(head.smoke_dir / "model")),
            "--set",
            shlex.quote(_evaluators(pairs)),
            "--set",
            shlex.quote(f"output_dir={out}"),
            "--set",
            "scaling.cpus_per_worker=0.5",  # the head has 2 CPUs, the job's driver takes 1
        ]
    )
    submission_id = client.submit_job(
        entrypoint=entrypoint, runtime_env=_runtime_env(), entrypoint_num_cpus=1
    )
    status = _wait(client, submission_id)
    logs = client.get_job_logs(submission_id)
    assert status.value == "SUCCEEDED", logs[-5000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_workers"] == 2 and (out / "metrics.md").is_file()

    frame = read_table(str(pairs))
    evaluator = EmbeddingSimilarityEvaluator(
        frame["sentence1"].tolist(),
        frame["sentence2"].tolist(),
        [float(s) / 5.0 for s in frame["score"]],
        name="smoke-dev",
    )
    expected = evaluator(SentenceTransformer(str(head.smoke_dir / "model")))
    got = report["evaluators"][0]["metrics"]
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_bad_eval_config_job_fails_with_exit_status_2(head, client):  # noqa: F811
    submission_id = client.submit_job(
        entrypoint=f"{EVAL} --set scaling.num_wokers=2", runtime_env=_runtime_env(), entrypoint_num_cpus=1
    )
    status = _wait(client, submission_id, timeout=180)
    logs = client.get_job_logs(submission_id)
    assert status.value == "FAILED", logs
    assert "scaling.num_wokers" in logs
    assert client.get_job_info(submission_id).driver_exit_code == 2
