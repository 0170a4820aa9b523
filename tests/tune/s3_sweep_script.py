"""Run by test_tune_s3.py in a fresh process: sweeps whose storage is an S3 bucket (``moto`` on localhost), with
fake credentials in the environment before this process starts its own local Ray (so the Tune trial actors and
the Train workers inherit them, as they would from a node's environment).

Modes (``argv[3]``):

* ``cli``: ``raystx tune sweep.yaml`` with ``tune.storage_path: s3://...`` (2 grid trials, tiny BERT, 4 steps, 1
  worker each, checkpoints kept); then a second start of the same sweep without ``--resume`` (refused: the
  experiment's ``tuner.pkl`` is found on S3) and one with ``resume=True`` (restored from S3, nothing re-run).
* ``hpo``: ``trainer.hyperparameter_search(..., storage_path="s3://...")``, 2 grid trials on a local CSV (staged
  by the driver to the bucket).

Afterwards every object of the bucket is downloaded (with boto3) to ``argv[1]/bucket`` for the test to check, the
bucket is scanned for the secret, and one ``RESULT {json}`` line is printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for s3_server and conftest
from s3_server import SECRET, bucket_keys, objects_holding, start  # noqa: E402

BUCKET = "raystx-sweeps"
SWEEPS = f"s3://{BUCKET}/sweeps"
NAME = "s3sweep"
LEARNING_RATES = [1e-5, 5e-3]


def sweep_yaml(tmp: Path, model_dir: Path) -> Path:
    """The sweep file: local CSVs (staged by the driver to the bucket), everything the sweep writes on S3."""
    import yaml
    from tune_helpers import trial_base

    raw = {
        **trial_base(tmp, model_dir),
        "args": {
            "output_dir": str(tmp / "out"),
            "max_steps": 4,
            "per_device_train_batch_size": 8,
            "logging_steps": 1,
            "save_strategy": "steps",
            "save_steps": 2,
            "seed": 1,
        },
        "search": {"args.learning_rate": {"grid": LEARNING_RATES}},
        "tune": {
            "searcher": "grid",
            "num_samples": 1,
            "scheduler": "none",
            "eval_steps": 2,
            "keep_checkpoints": True,
            "resources": {"num_workers": 1, "resources_per_worker": {"CPU": 1}},
            "storage_path": SWEEPS,
            "name": NAME,
        },
    }
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def cli_scenario(tmp: Path, model_dir: Path) -> dict[str, Any]:
    from typer.testing import CliRunner

    from raystx.cli import app
    from raystx.train.storage import read_text
    from raystx.tune import run_sweep

    path = sweep_yaml(tmp, model_dir)
    outcome = CliRunner().invoke(app, ["tune", str(path)])
    result: dict[str, Any] = {"exit_code": outcome.exit_code, "output": outcome.output[-4000:]}
    if outcome.exit_code != 0:
        return result
    try:
        run_sweep(path)
        result["refused"] = None
    except FileExistsError as exc:
        result["refused"] = str(exc)
    resumed = run_sweep(path, resume=True)
    result["resumed_rows"] = [[r.trial_id, r.status, r.steps] for r in resumed.rows]
    result["resumed_best"] = resumed.best.trial_id if resumed.best else None
    result["attempts"] = {
        r.trial_id: read_text(f"{r.trial_dir}/attempts.log").splitlines() for r in resumed.rows
    }
    return result


def hpo_scenario(tmp: Path, model_dir: Path) -> dict[str, Any]:
    from ray.train import ScalingConfig
    from tune_helpers import read_scored, write_pairs, write_scored

    from raystx.evaluation import EmbeddingSimilarityEvaluator
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    s1, s2, scores = read_scored(write_scored(tmp / "dev.csv", n=24, seed=9))

    def model_init():
        model = SentenceTransformer(str(model_dir))
        model.max_seq_length = 16
        return model

    trainer = SentenceTransformerTrainer(
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp / "out"), max_steps=4, per_device_train_batch_size=8, logging_steps=2, seed=3
        ),
        model_init=model_init,
        train_dataset=str(write_pairs(tmp / "pairs.csv")),  # a CSV: staged by the driver to the bucket
        loss=lambda model: MultipleNegativesRankingLoss(model),
        evaluator=EmbeddingSimilarityEvaluator(s1, s2, scores, name="dev"),
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
    )
    best = trainer.hyperparameter_search(
        hp_space={"learning_rate": {"grid": LEARNING_RATES}},
        n_trials=1,
        searcher="grid",
        scheduler="none",
        eval_steps=2,
        storage_path=SWEEPS,
        name="hpo",
    )
    summary = best.run_summary
    return {
        "run_id": best.run_id,
        "objective": best.objective,
        "hyperparameters": best.hyperparameters,
        "experiment_path": summary.experiment_path,
        "exported_model": summary.exported_model,
        "rows": [[r.trial_id, r.status, r.metrics.get("eval_dev_spearman_cosine")] for r in summary.rows],
    }


def download(bucket: str, target: Path) -> None:
    """Every object of ``bucket`` to ``target/<key>`` (boto3, not raystx's helpers)."""
    import boto3

    s3 = boto3.client("s3")
    for key in bucket_keys(bucket):
        if key.endswith("/"):
            continue
        path = target / key
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))


def main() -> None:
    tmp, ray_temp = Path(sys.argv[1]), sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "cli"
    server = start(BUCKET)

    import os

    import ray

    from raystx.testing import build_tiny_bert

    model_dir = build_tiny_bert(tmp / "tiny")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=ray_temp)

    @ray.remote(num_cpus=0)
    def worker_sees_secret() -> bool:  # Ray processes get the node's environment, as trials and workers do
        return os.environ.get("AWS_SECRET_ACCESS_KEY") == SECRET

    result = cli_scenario(tmp, model_dir) if mode == "cli" else hpo_scenario(tmp, model_dir)
    result["worker_sees_secret"] = ray.get(worker_sees_secret.remote())
    result["keys"] = bucket_keys(BUCKET)
    result["objects_with_secret"] = objects_holding(SECRET, BUCKET)
    download(BUCKET, tmp / "bucket")
    print("RESULT " + json.dumps(result, default=str), flush=True)
    ray.shutdown()
    server.stop()


if __name__ == "__main__":
    main()
