"""``dataloader_drop_last=False`` trains the last partial global batch (as sentence-transformers' samplers yield it);
``True`` (raystx's default) drops it."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from conftest import make_sentences

from raystx.data.schedule import EpochPlan, compose_batches
from raystx.data.sources import prepare_sources, validate_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, build_loop


def test_plan_keeps_the_partial_batch_and_splits_it_evenly_over_ranks():
    kept = EpochPlan({"a": 11}, 2, 2, seed=1, epoch=0, shuffle=False, drop_last=False)
    dropped = EpochPlan({"a": 11}, 2, 2, seed=1, epoch=0, shuffle=False)
    assert len(dropped) == 2 and len(kept) == 3
    assert [kept.rows(2, r)[1].tolist() for r in range(2)] == [
        [8, 9],
        [10, 8],
    ]  # 3 rows: padded with its first
    every = np.concatenate([kept.rows(s, r)[1] for s in range(3) for r in range(2)])
    assert set(every.tolist()) == set(range(11))
    assert kept.consumed_through(3) == {"a": 11} and kept.consumed_through(2) == {"a": 8}
    one_row = EpochPlan({"a": 1}, 4, 2, seed=1, epoch=0, drop_last=False)
    assert len(one_row) == 1 and [one_row.rows(0, r)[1].tolist() for r in range(2)] == [[0], [0]]
    solo = EpochPlan({"a": 5}, 2, 1, seed=1, epoch=0, shuffle=False, drop_last=False)
    assert [solo.rows(s, 0)[1].tolist() for s in range(3)] == [[0, 1], [2, 3], [4]]


def test_samplers_keep_their_leftover_rows():
    order = np.arange(7)
    texts = [("x",), ("x",), ("y",), ("z",), ("w",), ("v",), ("u",)]
    batches = compose_batches(order, 3, "no_duplicates", texts=texts, drop_last=False)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert all(len({texts[i] for i in b}) == len(b) for b in batches)
    labels = [0, 0, 1, 1, 2, 2, 3]
    assert [len(b) for b in compose_batches(order, 4, "group_by_label", labels=labels, drop_last=False)] == [
        4
    ]
    assert len(compose_batches(order, 2, "group_by_label", labels=labels, drop_last=False)) == 3


def test_one_row_dataset_trains_with_drop_last_false(tiny_bert_dir, tmp_path):
    model = SentenceTransformer(str(tiny_bert_dir))
    model.max_seq_length = 16
    loss = MultipleNegativesRankingLoss(model)
    data = datasets.Dataset.from_dict({"anchor": make_sentences(5, 1), "positive": make_sentences(5, 2)})
    sources = prepare_sources(data, staging_dir=str(tmp_path / "stage"))
    with pytest.raises(Exception, match="dataloader_drop_last=False"):  # the fix the message names ...
        validate_sources(sources, loss, global_batch_size=8, drop_last=True)
    validate_sources(sources, loss, global_batch_size=8, drop_last=False)  # ... works

    def run(drop_last: bool) -> list[dict]:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / f"run-{drop_last}"),
            num_train_epochs=2,
            per_device_train_batch_size=2,
            dataloader_drop_last=drop_last,
            logging_steps=1,
            save_strategy="no",
        )
        payload = WorkerPayload(
            model=model, losses={"train": loss}, args=args, sources=sources, label_kinds={"train": "none"}
        )
        return build_loop(payload, LocalRuntime(tmp_path / f"run-{drop_last}", device="cpu")).run()[
            "log_history"
        ]

    kept, dropped = run(False), run(True)
    assert [h["step"] for h in kept if "loss" in h] == [1, 2, 3, 4, 5, 6]  # 3 steps per epoch: 2 + 2 + 1 rows
    assert [h["step"] for h in dropped if "loss" in h] == [1, 2, 3, 4]
    # a one-row batch has no in-batch negative: MNRL's loss there is exactly 0
    assert [h["loss"] for h in kept if h["step"] in (3, 6)] == [0.0, 0.0]
