"""A run checkpointed by 2 Ray workers and resumed on 1 worker finishes the epoch with every row trained once."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import datasets
import pytest
import ray.cloudpickle
from conftest import make_sentences, real_token_rows, unique_sentences

from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module

PER_DEVICE = 8
ROWS = 96  # 6 global batches of 2 x 8, or 12 of 1 x 8


class RowLog(MultipleNegativesRankingLoss):
    """MNRL that appends the anchors (token ids) each worker trains on to a log file."""

    def __init__(self, model, log: str) -> None:
        super().__init__(model)
        self.log = log

    def forward(self, features, labels):
        from raystx.distributed import get_rank

        rows = real_token_rows(features[0])
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "rank": get_rank(), "rows": rows}) + "\n")
        return super().forward(features, labels)


def _train(tmp_path: Path, base, data, name: str, workers: int, resume: Path | None = None, **args):
    from ray.train import ScalingConfig

    model = copy.deepcopy(base)
    log = tmp_path / f"{name}.jsonl"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / name),
            per_device_train_batch_size=PER_DEVICE,
            num_train_epochs=1,
            learning_rate=1e-3,
            logging_steps=1,
            seed=11,
            disable_tqdm=True,
            **args,
        ),
        train_dataset=data,
        loss=RowLog(model, str(log)),
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
    )
    out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return out, [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize(
    "window", [None, pytest.param(2, marks=pytest.mark.slow)]
)  # 2: a shard-windowed epoch order over blocks of 16 rows
def test_two_workers_checkpoint_then_one_worker_finishes_the_epoch(
    ray_session, tiny_bert_dir, tmp_path, window
):
    data = datasets.Dataset.from_dict(
        {"anchor": unique_sentences(ROWS, 60), "positive": make_sentences(ROWS, 61)}
    )
    base = SentenceTransformer(str(tiny_bert_dir))
    order = {"shuffle_window": window, "shuffle_block_size": 16}

    _, before = _train(tmp_path, base, data, "before", workers=2, max_steps=3, save_steps=3, **order)
    checkpoint = tmp_path / "before" / "checkpoint-3"
    position = json.loads((checkpoint / "trainer_state.json").read_text())["data_position"]
    assert position["rows_consumed"] == {"train": 3 * 2 * PER_DEVICE}
    assert position["shuffle_window"] == window
    out, after = _train(tmp_path, base, data, "after", workers=1, resume=checkpoint, **order)

    assert {r["rank"] for r in before} == {0, 1} and {r["rank"] for r in after} == {0}
    # 48 rows left in 1 x 8 batches: 6 more steps, and the epoch budget ends there (not at 12 new-size steps)
    assert out.global_step == 9
    assert [h["step"] for h in out.log_history] == list(range(1, 10))
    trained = [tuple(row) for r in before + after for row in r["rows"]]
    assert len(trained) == ROWS and len(set(trained)) == ROWS  # every row of the epoch exactly once
