"""Run by test_multinode.py in a fresh process: a two-node local Ray cluster (ray.cluster_utils.Cluster).

1. A 2-worker run places one worker on each node and completes, checkpointing to a storage path both nodes see.
2. A second run loses the node hosting a worker mid-run (after a checkpoint); a replacement node joins, Ray
   restarts the worker group and raystx resumes from the latest checkpoint; the run completes.
Prints one JSON line with what it observed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import datasets
import ray
from ray.cluster_utils import Cluster
from ray.train import FailureConfig, RunConfig, ScalingConfig

from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.testing import build_tiny_bert, make_sentences
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer


class NodeRecordingLoss(MultipleNegativesRankingLoss):
    """Records (rank, node id) the first time each worker process computes a loss."""

    def __init__(self, model, log: str) -> None:
        super().__init__(model)
        self.log, self.seen = log, False

    def forward(self, features, labels):
        if not self.seen:
            from raystx.distributed import get_rank

            self.seen = True
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(
                    json.dumps(
                        {
                            "rank": get_rank(),
                            "node": ray.get_runtime_context().get_node_id(),
                            "pid": os.getpid(),
                        }
                    )
                    + "\n"
                )
        time.sleep(0.3)  # keep steps slow enough for the node removal to land mid-run
        return super().forward(features, labels)


def run(tmp: Path, name: str, model_dir: Path, max_failures: int) -> tuple[object, list[dict]]:
    model = SentenceTransformer(str(model_dir))
    log = tmp / f"{name}.jsonl"
    data = datasets.Dataset.from_dict({"anchor": make_sentences(128, 1), "positive": make_sentences(128, 2)})
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp / name),
            max_steps=12,
            per_device_train_batch_size=8,
            logging_steps=2,
            save_steps=2,
            learning_rate=1e-3,
            seed=1,
        ),
        train_dataset=data,
        loss=NodeRecordingLoss(model, str(log)),
        scaling_config=ScalingConfig(
            num_workers=2, resources_per_worker={"CPU": 1, "slot": 1}, placement_strategy="SPREAD"
        ),
        run_config=RunConfig(
            storage_path=str(tmp / "shared-storage"),
            name=name,
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    out = trainer.train()
    return out, [json.loads(line) for line in log.read_text().splitlines()]


def main() -> None:
    tmp = Path(sys.argv[1])
    model_dir = build_tiny_bert(tmp / "tiny")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = [cluster.add_node(num_cpus=1, resources={"slot": 1}) for _ in range(2)]
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    result: dict = {}

    out, seen = run(tmp, "placement", model_dir, max_failures=0)
    result["placement_nodes"] = sorted({r["node"] for r in seen})
    result["placement_step"] = out.global_step
    result["placement_checkpoints"] = sorted(
        p.name for p in (tmp / "shared-storage" / "placement").glob("checkpoint-*")
    )

    victim_marker = tmp / "shared-storage" / "node-loss" / "checkpoint-2" / "trainer_state.json"
    outcome: dict = {}

    def train_in_background() -> None:
        try:
            outcome["out"], outcome["seen"] = run(tmp, "node-loss", model_dir, max_failures=2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = repr(exc)

    # Cluster changes must come from the main thread (Cluster starts processes), so training runs in a thread.
    trainer_thread = threading.Thread(target=train_in_background, daemon=True)
    trainer_thread.start()
    deadline = time.time() + 300
    while not victim_marker.exists() and time.time() < deadline and trainer_thread.is_alive():
        time.sleep(0.2)
    cluster.remove_node(nodes[1])
    result["removed_node"] = nodes[1].node_id
    cluster.add_node(num_cpus=1, resources={"slot": 1})  # the replacement a cloud autoscaler would bring
    trainer_thread.join(timeout=600)
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    out, seen = outcome["out"], outcome["seen"]
    result["loss_step"] = out.global_step
    result["loss_worker_processes"] = len({r["pid"] for r in seen})
    result["loss_nodes"] = sorted({r["node"] for r in seen})
    print("RESULT " + json.dumps(result), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
