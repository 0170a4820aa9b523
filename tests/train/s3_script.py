"""Run by test_s3.py in a fresh process: training against real object storage, an S3 API served by ``moto`` on
localhost (``ThreadedMotoServer``), with fake credentials in the environment.

The process sets ``AWS_ENDPOINT_URL`` and the credentials before it starts its own local Ray, so the Ray Train
controller and workers inherit them as they would from a node's environment. A 2-worker run reads its Parquet
from ``s3://``, stages it and writes its checkpoints to ``s3://`` (``output_dir`` on S3), then a second run
resumes it from the S3 checkpoints. Prints one ``RESULT {json}`` line; the test then scans every local file the
runs and Ray wrote for the secret.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for s3_server
from s3_server import SECRET, start  # noqa: E402

BUCKET = "raystx-test"


def kill_scenario(tmp: Path, model_dir: Path, data_uri: str, s3fs) -> dict:
    """Rank 1 is SIGKILLed in its 4th step (after checkpoint-2 reached S3); Ray restarts the group, which resumes
    from the S3 checkpoint. Compared with the same run uninterrupted: the final weights' largest difference."""
    import signal

    from ray.train import FailureConfig, RunConfig, ScalingConfig

    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    class KillOnce(MultipleNegativesRankingLoss):
        def __init__(self, model, marker: str, log: str) -> None:
            super().__init__(model)
            self.marker, self.log, self.calls = marker, log, 0

        def forward(self, features, labels):
            from raystx.distributed import get_rank

            self.calls += 1
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")
            if self.marker and get_rank() == 1 and self.calls == 4 and not os.path.exists(self.marker):
                Path(self.marker).write_text("killed")
                os.kill(os.getpid(), signal.SIGKILL)
            return super().forward(features, labels)

    def run(name: str, marker: str):
        model = SentenceTransformer(str(model_dir))
        trainer = SentenceTransformerTrainer(
            model=model,
            args=SentenceTransformerTrainingArguments(
                output_dir=f"s3://{BUCKET}/runs/{name}",
                max_steps=6,
                per_device_train_batch_size=8,
                logging_steps=1,
                save_steps=2,
                learning_rate=1e-3,
                seed=1,
                disable_tqdm=True,
            ),
            train_dataset=data_uri,
            loss=KillOnce(model, marker, str(tmp / f"{name}.pids")),
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(
                storage_path=f"s3://{BUCKET}/runs", name=name, failure_config=FailureConfig(max_failures=1)
            ),
        )
        return model, trainer.train()

    straight, _ = run("straight", "")
    killed, out = run("killed", str(tmp / "marker"))
    diff = max(
        float((killed.state_dict()[k] - v).abs().max())
        for k, v in straight.state_dict().items()
        if v.is_floating_point()
    )
    return {
        "killed": (tmp / "marker").exists(),
        "worker_processes": len(set((tmp / "killed.pids").read_text().split())),
        "global_step": out.global_step,
        "logged_steps": [h["step"] for h in out.log_history if "loss" in h],
        "max_weight_diff": diff,
    }


def main() -> None:
    tmp = Path(sys.argv[1])
    server = start(BUCKET)

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    from pyarrow import fs as pafs
    from ray.train import ScalingConfig

    from raystx.data.read_stats import STATS_DIR_ENV, read_all
    from raystx.data.readers import _cache_dir
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.testing import build_tiny_bert, make_sentences
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.storage import checkpoint_names
    from raystx.train.trainer import STAGING_DIR, SentenceTransformerTrainer

    s3fs, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}/")
    table = pa.table({"anchor": make_sentences(64, 1), "positive": make_sentences(64, 2)})
    pq.write_table(table, f"{BUCKET}/data/pairs.parquet", filesystem=s3fs)
    data_uri = f"s3://{BUCKET}/data/pairs.parquet"
    run_uri = f"s3://{BUCKET}/runs/pairs"

    model_dir = build_tiny_bert(tmp / "tiny")
    ray_temp = sys.argv[2]  # Ray's session files and logs (a short path: Ray's socket names must stay short)
    os.environ[STATS_DIR_ENV] = str(tmp / "read-stats")  # the workers' row-group counters land there
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=ray_temp)
    caches: list[str] = []  # each run's node-local cache folder of remote row groups

    def run(max_steps: int, resume: bool):
        model = SentenceTransformer(str(model_dir))
        trainer = SentenceTransformerTrainer(
            model=model,
            args=SentenceTransformerTrainingArguments(
                output_dir=run_uri,
                max_steps=max_steps,
                per_device_train_batch_size=8,
                logging_steps=1,
                save_steps=2,
                learning_rate=1e-3,
                seed=1,
                disable_tqdm=True,
            ),
            train_dataset=data_uri,
            loss=MultipleNegativesRankingLoss(model),
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        )
        out = trainer.train(resume_from_checkpoint=True if resume else None)
        caches.append(_cache_dir(trainer._cache_tag))
        return out

    if len(sys.argv) > 3 and sys.argv[3] == "kill":
        print("RESULT " + json.dumps(kill_scenario(tmp, model_dir, data_uri, s3fs)), flush=True)
        ray.shutdown()
        server.stop()
        return

    first = run(4, resume=False)
    after_first = checkpoint_names(run_uri)
    second = run(6, resume=True)

    def listing(prefix: str) -> list[str]:
        found = s3fs.get_file_info(
            pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
        )
        return sorted(info.path for info in found)

    @ray.remote(num_cpus=0)
    def worker_sees_secret() -> bool:  # a Ray worker process gets the node's environment, as Train workers do
        return os.environ.get("AWS_SECRET_ACCESS_KEY") == SECRET

    result = {
        "worker_sees_secret": ray.get(worker_sees_secret.remote()),
        "first_step": first.global_step,
        "first_checkpoints": after_first,
        "second_step": second.global_step,
        "second_checkpoints": checkpoint_names(run_uri),
        "second_logged_steps": [h["step"] for h in second.log_history if "loss" in h],
        "staging_left": listing(f"runs/pairs/{STAGING_DIR}"),
        "data_listing": listing("data"),  # read in place: nothing but the user's file
        "cache_bytes_written": sum(
            d["bytes_written"] for r in read_all(tmp / "read-stats") for d in r["datasets"].values()
        ),
        "caches_left": [c for c in caches if os.path.exists(c)],
        "final_state": json.loads(
            s3fs.open_input_stream(f"{BUCKET}/runs/pairs/checkpoint-6/trainer_state.json").read()
        )["global_step"],
    }
    print("RESULT " + json.dumps(result), flush=True)
    ray.shutdown()
    server.stop()


if __name__ == "__main__":
    main()
