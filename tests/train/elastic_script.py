"""Run by test_elastic.py in a fresh process: an elastic run (``num_workers=(1, 2)``) on a local Ray cluster
(``ray.cluster_utils.Cluster``: a head node and two one-worker nodes).

The run starts with 2 workers; after its first checkpoint one node is removed: Ray restarts the group with the
one worker left, which resumes from the newest checkpoint. Once that worker has written a checkpoint the node is
added back: Ray grows the group to 2 workers again, which resume from the newest checkpoint; the run completes.
Prints one ``RESULT {json}`` line: every checkpoint's step, world size and data position, and the (rank, world
size, step) each worker process saw first.
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

MAX_STEPS = 40


class WorldRecordingLoss(MultipleNegativesRankingLoss):
    """Records (pid, rank, world size) the first time each worker process computes a loss; a lone worker steps
    slowly so that the group has time to grow back before the run ends."""

    def __init__(self, model, log: str) -> None:
        super().__init__(model)
        self.log, self.seen = log, False

    def forward(self, features, labels):
        from raystx.distributed import get_rank, get_world_size

        world = get_world_size()
        if not self.seen:
            self.seen = True
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "rank": get_rank(), "world": world}) + "\n")
        time.sleep(0.3 if world > 1 else 1.5)
        return super().forward(features, labels)


def checkpoints(run_dir: Path) -> list[dict]:
    """Step, world size and data position of every complete checkpoint, oldest first."""
    found = []
    for path in run_dir.glob("checkpoint-*"):
        state_file = path / "trainer_state.json"
        if not state_file.is_file():
            continue
        try:
            state = json.loads(state_file.read_text())
        except json.JSONDecodeError:  # being written
            continue
        found.append(
            {
                "step": state["global_step"],
                "world": state.get("world_size"),
                "data": state.get("data_position"),
            }
        )
    return sorted(found, key=lambda c: c["step"])


def wait_for(predicate, thread: threading.Thread, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and thread.is_alive():
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def main() -> None:
    tmp = Path(sys.argv[1])
    # Ray Data's autoscaling coordinator refreshes its view of the nodes every 20 s, so the first restart after
    # the node loss may still ask for 2 workers; it gives up after this timeout and retries with 1.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "30")
    model_dir = build_tiny_bert(tmp / "tiny")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = [cluster.add_node(num_cpus=1, resources={"slot": 1}) for _ in range(2)]
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    run_dir = tmp / "storage" / "elastic"
    log = tmp / "workers.jsonl"
    model = SentenceTransformer(str(model_dir))
    data = datasets.Dataset.from_dict({"anchor": make_sentences(96, 1), "positive": make_sentences(96, 2)})
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(run_dir),
            max_steps=MAX_STEPS,
            per_device_train_batch_size=8,
            logging_steps=2,
            save_steps=2,
            learning_rate=1e-3,
            seed=1,
        ),
        train_dataset=data,
        loss=WorldRecordingLoss(model, str(log)),
        scaling_config=ScalingConfig(
            num_workers=(1, 2),
            resources_per_worker={"CPU": 1, "slot": 1},
            placement_strategy="SPREAD",
            elastic_resize_monitor_interval_s=2.0,
        ),
        run_config=RunConfig(
            storage_path=str(tmp / "storage"), name="elastic", failure_config=FailureConfig(max_failures=3)
        ),
    )
    outcome: dict = {}

    def train_in_background() -> None:
        try:
            outcome["out"] = trainer.train()
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = repr(exc)

    # Cluster changes must come from the main thread (Cluster starts processes), so training runs in a thread.
    thread = threading.Thread(target=train_in_background, daemon=True)
    thread.start()
    result: dict = {"phases": []}
    if wait_for(lambda: any(c["world"] == 2 for c in checkpoints(run_dir)), thread, 400):
        cluster.remove_node(nodes[1])
        result["phases"].append(("removed", time.time()))
        if wait_for(lambda: any(c["world"] == 1 for c in checkpoints(run_dir)), thread, 400):
            cluster.add_node(num_cpus=1, resources={"slot": 1})
            result["phases"].append(("added", time.time()))
    thread.join(timeout=600)
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    out = outcome["out"]
    result["global_step"] = out.global_step
    result["checkpoints"] = checkpoints(run_dir)
    result["workers"] = [json.loads(line) for line in log.read_text().splitlines()]
    print("RESULT " + json.dumps(result), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
