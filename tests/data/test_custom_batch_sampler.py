"""A user batch sampler (``batch_sampler=`` a class or callable) in raystx's deterministic EpochPlan."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch
from conftest import make_sentences

from raystx.data.schedule import EpochPlan
from raystx.train.args import SentenceTransformerTrainingArguments

st_sampler = pytest.importorskip("sentence_transformers.base.sampler")

ROWS = 40
DATASET = datasets.Dataset.from_dict(
    {
        "anchor": make_sentences(ROWS, 1),
        "positive": make_sentences(ROWS, 2),
        "label": [i % 5 for i in range(ROWS)],
    }
)


def _plan(sampler, world_size: int, epoch: int = 0, consumed=None) -> EpochPlan:
    return EpochPlan(
        {"train": ROWS},
        4,
        world_size,
        seed=7,
        epoch=epoch,
        batch_sampler=sampler,
        columns=lambda name: (DATASET, ["label"]),
        consumed={"train": consumed} if consumed is not None else None,
    )


def _oracle(cls, batch_size: int, epoch: int) -> list[list[int]]:
    generator = torch.Generator()
    generator.manual_seed(7)
    sampler = cls(
        DATASET,
        batch_size=batch_size,
        drop_last=True,
        valid_label_columns=["label"],
        generator=generator,
        seed=7,
    )
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


@pytest.mark.parametrize("world_size", [1, 2])
def test_sentence_transformers_sampler_class_gives_its_own_batches(world_size):
    cls = st_sampler.GroupByLabelBatchSampler
    for epoch in (0, 1):
        plan = _plan(cls, world_size, epoch)
        expected = [b for b in _oracle(cls, 4, epoch) if len(b) == 4]
        expected = expected[: len(expected) // world_size * world_size]
        assert len(plan) == len(expected) // world_size > 0
        for step in range(len(plan)):
            for rank in range(world_size):
                name, rows = plan.rows(step, rank)
                assert name == "train" and rows.tolist() == expected[step * world_size + rank]


def test_a_plain_callable_and_resume_skip_consumed_batches():
    def every_other(dataset, batch_size, drop_last, valid_label_columns, generator, seed):
        order = torch.randperm(len(dataset), generator=generator).tolist()[::2]
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    plan = _plan(every_other, 2)
    assert len(plan) == 2  # 20 rows -> 5 batches of 4 -> 2 global steps (one incomplete group dropped)
    again = _plan(every_other, 2)  # another rank computes the same plan
    assert all(np.array_equal(plan.global_rows(s)[1], again.global_rows(s)[1]) for s in range(len(plan)))
    consumed = plan.consumed_through(1)["train"]
    resumed = _plan(every_other, 2, consumed=consumed)
    assert [resumed.global_rows(s)[1].tolist() for s in range(len(resumed))] == [
        plan.global_rows(1)[1].tolist()
    ]


def test_a_sampler_not_driven_by_its_seed_is_refused():
    def unseeded(dataset, batch_size, **kwargs):
        order = list(range(len(dataset)))
        random.shuffle(order)
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    with pytest.raises(ValueError, match="batch_sampler .*unseeded gave different batches for the same seed"):
        _plan(unseeded, 2)


def test_training_arguments_accept_a_sampler_class():
    args = SentenceTransformerTrainingArguments(
        output_dir="x", batch_sampler=st_sampler.GroupByLabelBatchSampler
    )
    assert args.batch_sampler is st_sampler.GroupByLabelBatchSampler
    assert args.to_dict()["batch_sampler"] == "GroupByLabelBatchSampler"
    with pytest.raises(ValueError, match="batch_sampler='nope' is not valid"):
        SentenceTransformerTrainingArguments(output_dir="x", batch_sampler="nope")
