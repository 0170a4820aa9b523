"""Worker and driver failures on a real local Ray: the run resumes mid-epoch from its last checkpoint, trains
every row of the epoch exactly once, and ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import ray.cloudpickle
import torch
import yaml
from conftest import make_sentences, real_token_rows, unique_sentences

from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module

STEPS = 6
PER_DEVICE = 8


class RecordingLoss(MultipleNegativesRankingLoss):
    """MNRL that appends the anchors it trains on to a log file and can SIGKILL its own worker once."""

    def __init__(self, model, log: str, kill_rank: int = -1, kill_call: int = -1, marker: str = "") -> None:
        super().__init__(model)
        self.log, self.kill_rank, self.kill_call, self.marker = log, kill_rank, kill_call, marker
        self.calls = 0

    def forward(self, features, labels):
        from raystx.distributed import get_rank

        self.calls += 1
        rank = get_rank()
        if rank == self.kill_rank and self.calls == self.kill_call and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        rows = real_token_rows(features[0])
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(
                json.dumps({"pid": os.getpid(), "rank": rank, "call": self.calls, "rows": rows}) + "\n"
            )
        return super().forward(features, labels)


def _train(tmp_path: Path, base, data, name: str, args_extra: dict | None = None, **loss_kwargs):
    from ray.train import FailureConfig, RunConfig, ScalingConfig

    model = copy.deepcopy(base)
    log = tmp_path / f"{name}.jsonl"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / name),
            max_steps=STEPS,
            per_device_train_batch_size=PER_DEVICE,
            learning_rate=1e-3,
            logging_steps=1,
            save_steps=2,
            seed=11,
            **(args_extra or {}),
        ),
        train_dataset=data,
        loss=RecordingLoss(model, str(log), **loss_kwargs),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(
            storage_path=str(tmp_path), name=name, failure_config=FailureConfig(max_failures=1)
        ),
    )
    out = trainer.train()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return model, out, records


@pytest.mark.parametrize("source", ["dataset", pytest.param("parquet_windowed", marks=pytest.mark.slow)])
def test_sigkilled_worker_resumes_mid_epoch_exactly_once_per_row(
    ray_session, tiny_bert_dir, tmp_path, source
):
    """``parquet_windowed``: the same on a Parquet file read in place by each rank's RowGroupReader (row groups of
    8 rows), with a windowed order (rank stripes, positions recorded as row ids)."""
    anchors = unique_sentences(STEPS * PER_DEVICE * 2, seed=40)  # one epoch == STEPS global batches
    data = datasets.Dataset.from_dict({"anchor": anchors, "positive": make_sentences(len(anchors), 77)})
    extra = None
    if source == "parquet_windowed":
        path = tmp_path / "pairs.parquet"
        data.to_parquet(str(path), batch_size=PER_DEVICE)  # one row group per batch_size rows
        data, extra = str(path), {"shuffle_window": 2}
    base = SentenceTransformer(str(tiny_bert_dir))

    reference, _, _ = _train(tmp_path, base, data, "uninterrupted", extra)
    killed_at = 4  # rank 1 dies in its 4th step, after checkpoint-2 was persisted (mid-epoch)
    model, out, records = _train(
        tmp_path,
        base,
        data,
        "killed",
        extra,
        kill_rank=1,
        kill_call=killed_at,
        marker=str(tmp_path / "marker"),
    )

    assert (tmp_path / "marker").exists(), "the worker was never killed"
    assert [h["step"] for h in out.log_history] == list(range(1, STEPS + 1))
    pids_in_order = list(dict.fromkeys(r["pid"] for r in records))  # the log is appended in time order
    assert len(pids_in_order) == 4  # 2 workers x 2 attempts
    first_attempt = set(pids_in_order[:2])
    # Lineage of the final weights: the first attempt up to the restored checkpoint-2, then the second attempt.
    # (Rank 1 died inside step 4, before its all-reduce, so checkpoint-2 is the newest one that can exist.)
    restored = 2
    lineage = [r for r in records if r["pid"] not in first_attempt or r["call"] <= restored]
    assert sorted(r["call"] for r in records if r["pid"] not in first_attempt) == sorted(
        [*range(1, STEPS - 1)] * 2
    )
    trained = [tuple(row) for r in lineage for row in r["rows"]]
    assert len(trained) == len(anchors) and len(set(trained)) == len(anchors)  # every row once, none twice

    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=1e-5)


def _cli_config(tmp_path: Path, model_dir: Path) -> Path:
    rows = ["anchor,positive"] + [f"{a},{p}" for a, p in zip(make_sentences(96, 5), make_sentences(96, 6))]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    raw = {
        "model": {"name_or_path": str(model_dir)},
        "train_data": {"pairs": {"path": str(tmp_path / "pairs.csv")}},
        "loss": {"type": "MultipleNegativesRankingLoss"},
        "args": {
            "output_dir": str(tmp_path / "run"),
            "max_steps": 12,
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_steps": 2,
            "seed": 3,
        },
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}},
        "save_model_to": str(tmp_path / "final"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.slow
def test_killed_driver_then_resume_from_the_cli_matches_an_uninterrupted_run(
    ray_session, tiny_bert_dir, tmp_path
):
    from raystx.config import load_config
    from raystx.train.build import build_trainer

    config = _cli_config(tmp_path, tiny_bert_dir)
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS")
    cmd = [sys.executable, "-m", "raystx.cli", "train", str(config)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    state = tmp_path / "run" / "checkpoint-4" / "trainer_state.json"
    deadline = time.time() + 240
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert state.exists(), "the first run never reached checkpoint-4"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started die together
    proc.wait()
    assert not (tmp_path / "final").exists()

    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = SentenceTransformer(str(tmp_path / "final"))

    ref_cfg = load_config(config, [f"args.output_dir={tmp_path / 'ref'}"])
    trainer = build_trainer(ref_cfg)
    trainer.train()
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(final.state_dict()[key], value, rtol=0, atol=1e-5)
