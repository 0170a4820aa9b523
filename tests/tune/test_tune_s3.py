"""Sweeps whose storage is an S3 bucket (``moto`` server mode on localhost), each run by ``s3_sweep_script.py`` in a
fresh process whose own local Ray inherits the endpoint and the fake credentials from its environment.

What the sweep wrote is read back from the bucket (the script downloads every object with boto3 before the server
stops): Tune's experiment, each trial's files and Train checkpoints, the results table, summary, plots and the
exported best model; nothing of the sweep lands on the local disk, and the secret key appears in no object, no
local file (outputs, Ray's logs and session files) and no console output.
"""

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

from s3_server import SECRET, files_holding  # noqa: E402

pytestmark = pytest.mark.ray

SCRIPT = Path(__file__).with_name("s3_sweep_script.py")
METRIC = "eval_dev_spearman_cosine"


def _run_script(tmp_path: Path, mode: str) -> dict:
    """Run the script; its RESULT, after checking the secret reached no local file and no console output."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("AWS_")}
    ray_temp = Path(tempfile.mkdtemp(prefix="raystx-s3t-"))  # short: Ray's socket paths must stay short
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), str(tmp_path), str(ray_temp), mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        written = files_holding(SECRET, tmp_path) + files_holding(SECRET, ray_temp)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-6000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["worker_sees_secret"]  # the Ray processes had it, so the scans below could catch it
    assert result["objects_with_secret"] == []
    assert not written, f"the S3 secret key landed in local files: {written}"
    assert SECRET not in proc.stdout + proc.stderr
    return result


def _reported(trial_dir: Path) -> list[dict]:
    """Tune's record of a trial's reports (``result.json``, one JSON object per line)."""
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]


def _encode_all(*model_dirs: Path) -> list:
    from sentence_transformers import SentenceTransformer

    from raystx.testing import make_sentences

    texts = make_sentences(12, 77)
    return [
        SentenceTransformer(str(d), device="cpu").encode(texts, convert_to_numpy=True) for d in model_dirs
    ]


@pytest.mark.slow  # 255 s on 2 CPUs shared by 4 sessions (Ray start, 2 trials, a restore); CI keeps test_s3.py
def test_cli_sweep_on_s3_writes_everything_to_the_bucket_and_resumes_from_it(tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
    from tune_helpers import read_scored

    result = _run_script(tmp_path, "cli")

    assert result["exit_code"] == 0, result["output"]
    bucket = tmp_path / "bucket"
    experiment = bucket / "sweeps" / "s3sweep"
    keys = set(result["keys"])
    # Tune's experiment (what a restore reads) and raystx's results, all in the bucket
    for name in ("tuner.pkl", "trials.csv", "trials.json", "summary.txt", "sweep.json"):
        assert f"sweeps/s3sweep/{name}" in keys, name
    assert any(k.startswith("sweeps/s3sweep/experiment_state-") for k in keys)
    assert (experiment / "plots" / "optimization_history.png").read_bytes().startswith(b"\x89PNG")
    # nothing of the sweep was written locally (the default storage would be next to args.output_dir)
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "out").exists()
    assert [p for p in tmp_path.rglob("trials.json") if "bucket" not in p.relative_to(tmp_path).parts] == []

    rows = json.loads((experiment / "trials.json").read_text())
    assert sorted(r["params"]["args.learning_rate"] for r in rows) == [1e-5, 5e-3]
    assert [(r["status"], r["steps"], r["evaluations"]) for r in rows] == [("COMPLETED", 4, 2)] * 2
    final_reports = {}
    for row in rows:
        trial = f"sweeps/s3sweep/trial_{row['trial_id']}"
        assert (
            row["trial_dir"] == f"s3://raystx-sweeps/{trial}"
            and row["model_path"] == row["trial_dir"] + "/model"
        )
        for name in ("sweep_params.json", "sweep_result.json", "attempts.log", "model/model.safetensors"):
            assert f"{trial}/{name}" in keys, (trial, name)
        for step in (2, 4):  # tune.keep_checkpoints: the trial's Train checkpoints stay on S3
            state = json.loads((bucket / trial / f"train/checkpoint-{step}/trainer_state.json").read_text())
            assert state["global_step"] == step
        reported = _reported(bucket / trial)
        assert [r["step"] for r in reported] == [2, 4]
        final_reports[row["trial_id"]] = reported[-1][METRIC]
        assert row["metrics"][METRIC] == final_reports[row["trial_id"]]

    # the best trial is the one with the highest reported metric
    sweep = json.loads((experiment / "sweep.json").read_text())
    best = next(r for r in rows if r["trial_id"] == sweep["best_trial"])
    assert best["metrics"][METRIC] == max(final_reports.values())
    assert f"best trial {best['trial_id']}" in (experiment / "summary.txt").read_text()
    csv_header = (experiment / "trials.csv").read_text().splitlines()[0]
    assert csv_header.startswith("trial_id,status,steps") and f"metric.{METRIC}" in csv_header

    # the exported model loads in sentence-transformers, encodes like the best trial's last checkpoint and its
    # saved model, and reproduces the trial's metric
    exported = experiment / "best_model"
    checkpoint = bucket / f"sweeps/s3sweep/trial_{best['trial_id']}/train/checkpoint-4/model"
    trial_model = bucket / f"sweeps/s3sweep/trial_{best['trial_id']}/model"
    ours, from_checkpoint, from_trial = _encode_all(exported, checkpoint, trial_model)
    assert abs(ours - from_checkpoint).max() == 0 and abs(ours - from_trial).max() == 0
    from sentence_transformers import SentenceTransformer

    s1, s2, scores = read_scored(tmp_path / "dev.csv")
    oracle = EmbeddingSimilarityEvaluator(s1, s2, scores, name="dev", write_csv=False)(
        SentenceTransformer(str(exported), device="cpu")
    )
    assert oracle["dev_spearman_cosine"] == pytest.approx(best["metrics"][METRIC], abs=1e-6)
    card = (exported / "README.md").read_text()
    assert "## Hyperparameter search" in card and best["trial_id"] in card
    assert json.loads((exported / "sweep_trial.json").read_text())["model_path"] == best["model_path"]

    # a second start is refused (tuner.pkl found on S3); a resume restores from S3 and re-runs nothing
    assert (
        result["refused"] and "s3://raystx-sweeps/sweeps/s3sweep already holds a sweep" in result["refused"]
    )
    assert result["resumed_rows"] == [[r["trial_id"], "COMPLETED", 4] for r in rows]
    assert result["resumed_best"] == best["trial_id"]
    assert all(len(lines) == 1 for lines in result["attempts"].values()), result["attempts"]


@pytest.mark.slow  # 237 s on the same shared CPUs
def test_hyperparameter_search_with_s3_storage(tmp_path):
    result = _run_script(tmp_path, "hpo")

    experiment = tmp_path / "bucket" / "sweeps" / "hpo"
    assert result["experiment_path"] == "s3://raystx-sweeps/sweeps/hpo"
    assert result["exported_model"] == "s3://raystx-sweeps/sweeps/hpo/best_model"
    rows = json.loads((experiment / "trials.json").read_text())
    assert sorted(r["params"]["learning_rate"] for r in rows) == [1e-5, 5e-3]
    assert all(r["status"] == "COMPLETED" and r["steps"] == 4 for r in rows)
    finals = {r["trial_id"]: _reported(experiment / f"trial_{r['trial_id']}")[-1][METRIC] for r in rows}
    assert result["objective"] == max(finals.values()) and finals[result["run_id"]] == result["objective"]
    assert result["hyperparameters"] == next(r["params"] for r in rows if r["trial_id"] == result["run_id"])
    # the training data was staged to the bucket, next to the experiment
    assert any(k.startswith("sweeps/hpo/.raystx-data/") and k.endswith(".parquet") for k in result["keys"])
    (exported,) = _encode_all(experiment / "best_model")
    (trial,) = _encode_all(experiment / f"trial_{result['run_id']}" / "model")
    assert abs(exported - trial).max() == 0
    assert not (tmp_path / "out").exists()
