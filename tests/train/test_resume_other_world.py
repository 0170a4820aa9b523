"""Resuming with another global batch size (another number of workers, or another per-device batch) continues
the epoch at the rows it had reached: the plan/offset logic on its own, and the training loop in one process."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import make_sentences, real_token_rows, unique_sentences

from raystx.data.schedule import EpochPlan, compose_batches, dataset_order
from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.checkpoint import STATE_FILE
from raystx.train.runtime import LocalRuntime
from raystx.train.state import DATA_POSITION_FILE
from raystx.train.worker import WorkerPayload, train_worker

PER_DEVICE = 8


def _trained(plan: EpochPlan, world: int, steps: range) -> dict[str, list[int]]:
    """Rows every rank of ``plan`` trains in ``steps``, per dataset (ranks' slices concatenated)."""
    out: dict[str, list[int]] = {}
    for step in steps:
        slices = [plan.rows(step, rank) for rank in range(world)]
        assert len({name for name, _ in slices}) == 1  # all ranks draw the same dataset
        out.setdefault(slices[0][0], []).extend(np.concatenate([rows for _, rows in slices]).tolist())
    return out


@pytest.mark.parametrize("after_world", [1, 3])
@pytest.mark.parametrize("rows", [96, 100])
def test_one_dataset_resumed_with_another_world_size_trains_each_row_once(after_world, rows):
    before = EpochPlan({"d": rows}, PER_DEVICE, 2, seed=3, epoch=1)
    stopped = 3
    consumed = before.consumed_through(stopped)
    assert consumed == {"d": stopped * PER_DEVICE * 2}
    after = EpochPlan({"d": rows}, PER_DEVICE, after_world, seed=3, epoch=1, consumed=consumed)

    first = _trained(before, 2, range(stopped))["d"]
    rest = _trained(after, after_world, range(len(after)))["d"]
    used = first + rest
    assert len(used) == len(set(used))  # no row twice
    new_global = PER_DEVICE * after_world
    assert (
        rows - len(used) == (rows - consumed["d"]) % new_global
    )  # only the last partial new batch is dropped
    # the uninterrupted epoch's row order, cut into other batches
    order = dataset_order(rows, 3, 1, "d")
    assert used == order[: len(used)].tolist()
    assert after.consumed_through(len(after)) == {"d": len(used)}


def test_a_resumed_plan_resumed_again_keeps_its_offset():
    """world 2 -> 1 (3 steps) -> 3: the second resume starts where the first one's steps ended."""
    sizes = {"d": 120}
    one = EpochPlan(sizes, PER_DEVICE, 2, seed=0, epoch=0)
    two = EpochPlan(sizes, PER_DEVICE, 1, seed=0, epoch=0, consumed=one.consumed_through(2))
    three = EpochPlan(sizes, PER_DEVICE, 3, seed=0, epoch=0, consumed=two.consumed_through(3))
    used = [
        *_trained(one, 2, range(2))["d"],
        *_trained(two, 1, range(3))["d"],
        *_trained(three, 3, range(len(three)))["d"],
    ]
    assert len(used) == len(set(used)) == 120 - (120 - 56) % 24
    assert used == dataset_order(120, 0, 0, "d")[: len(used)].tolist()


@pytest.mark.parametrize("sampler", ["proportional", "round_robin"])
def test_several_datasets_continue_at_their_own_offsets(sampler):
    sizes = {"a": 100, "b": 60, "c": 72}
    before = EpochPlan(sizes, PER_DEVICE, 2, seed=5, epoch=0, sampler=sampler)
    stopped = 4
    consumed = before.consumed_through(stopped)
    after = EpochPlan(
        sizes,
        PER_DEVICE,
        3,
        seed=5,
        epoch=0,
        sampler=sampler,
        consumed=consumed,
        round_robin_start=before.round_robin_next(stopped),
    )
    first, rest = _trained(before, 2, range(stopped)), _trained(after, 3, range(len(after)))
    for name, size in sizes.items():
        used = first.get(name, []) + rest.get(name, [])
        assert len(used) == len(set(used))
        assert used == dataset_order(size, 5, 0, name)[: len(used)].tolist()  # a prefix: nothing skipped
        if sampler == "proportional":  # every remaining full new batch is used once
            assert size - len(used) == (size - consumed[name]) % 24
    if sampler == "round_robin":
        # 4 steps = a, b, c, a: the cycle goes on with b, c, then whole rounds until one dataset runs out
        assert before.schedule[:stopped] == ["a", "b", "c", "a"]
        assert after.schedule[:2] == ["b", "c"]
        assert after.schedule[2:] == ["a", "b", "c"] * ((len(after) - 2) // 3)
        counts = Counter(after.schedule)
        assert min((sizes[n] - consumed[n]) // 24 - counts[n] for n in sizes) == 0  # stopped when one ran out


def test_duplicate_free_batches_resumed_from_row_ids_repeat_no_row():
    rng = np.random.default_rng(1)
    vocab = [f"t{i}" for i in range(60)]
    texts = [(vocab[rng.integers(60)], vocab[rng.integers(60)]) for _ in range(160)]

    def plan(world: int, consumed=None) -> EpochPlan:
        return EpochPlan(
            {"d": 160},
            PER_DEVICE,
            world,
            seed=2,
            epoch=0,
            batch_sampler="no_duplicates",
            columns=lambda name: (texts, None),
            consumed=consumed,
        )

    before = plan(2)
    consumed = before.consumed_through(3)
    assert isinstance(consumed["d"], np.ndarray) and len(consumed["d"]) == 48
    after = plan(1, consumed)
    used = _trained(before, 2, range(3))["d"] + _trained(after, 1, range(len(after)))["d"]
    assert len(used) == len(set(used))
    assert len(used) >= 160 - 2 * PER_DEVICE  # the sampler still places nearly every row
    for step in range(len(after)):
        values = [v for row in after.global_rows(step)[1].tolist() for v in texts[row]]
        assert len(values) == len(set(values))


def test_label_groups_resumed_from_row_ids_repeat_no_row():
    labels = [i % 9 for i in range(150)]
    before = EpochPlan(
        {"d": 150}, 4, 2, seed=4, epoch=0, batch_sampler="group_by_label", columns=lambda n: (None, labels)
    )
    consumed = before.consumed_through(5)
    after = EpochPlan(
        {"d": 150},
        4,
        3,
        seed=4,
        epoch=0,
        batch_sampler="group_by_label",
        columns=lambda n: (None, labels),
        consumed=consumed,
    )
    used = _trained(before, 2, range(5))["d"] + _trained(after, 3, range(len(after)))["d"]
    assert len(used) == len(set(used))
    for step in range(len(after)):
        counts = Counter(labels[r] for r in after.global_rows(step)[1].tolist())
        assert min(counts.values()) >= 2
    # every label's rows come in pairs, so at most one row per label plus less than one batch stays out
    assert 150 - len(used) < 9 + 12


def test_compose_batches_of_a_remaining_order_match_the_offset_order():
    order = dataset_order(50, 1, 0, "d")
    plan = EpochPlan({"d": 50}, 5, 1, seed=1, epoch=0, consumed={"d": np.sort(order[:20])})
    expected = compose_batches(order[20:], 5)
    assert len(plan) == len(expected)
    assert all(np.array_equal(plan.global_rows(i)[1], b) for i, b in enumerate(expected))


# ---------------------------------------------------------------------- the loop, one process


class _Recording(MultipleNegativesRankingLoss):
    """MNRL that remembers the anchors (as token ids) of every batch it trains on."""

    def __init__(self, model, seen: list[tuple[int, ...]]) -> None:
        super().__init__(model)
        self.seen = seen

    def forward(self, features, labels):
        self.seen.extend(tuple(row) for row in real_token_rows(features[0]))
        return super().forward(features, labels)


def _run(tmp_path: Path, name: str, base, data, seen, resume: Path | None = None, **args) -> LocalRuntime:
    model = copy.deepcopy(base)
    settings = dict(
        output_dir=str(tmp_path / name),
        per_device_train_batch_size=PER_DEVICE,
        num_train_epochs=1,
        logging_steps=1,
        save_steps=2,
        learning_rate=1e-3,
        seed=9,
    )
    settings.update(args)
    payload = WorkerPayload(
        model=model,
        losses={"train": _Recording(model, seen)},
        args=SentenceTransformerTrainingArguments(**settings),
        sources=prepare_sources(data, staging_dir=str(tmp_path / name / "stage")),
        label_kinds={"train": "none"},
        resume_from=str(resume) if resume else None,
        run_dir=str(tmp_path / name),
    )
    runtime = LocalRuntime(tmp_path / name)
    train_worker(payload, runtime)
    return runtime


@pytest.fixture(scope="module")
def pairs() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"anchor": unique_sentences(96, 50), "positive": make_sentences(96, 51)}
    )


@pytest.fixture(scope="module")
def base(tiny_bert_dir):
    return SentenceTransformer(str(tiny_bert_dir))


def test_loop_resumed_with_a_smaller_global_batch_finishes_the_epoch_once(tmp_path, base, pairs):
    seen: list[tuple[int, ...]] = []
    # "world 2": global batch 16 (here one process with per-device 16), 3 of the epoch's 6 steps
    _run(tmp_path, "before", base, pairs, seen, per_device_train_batch_size=16, max_steps=3, save_steps=3)
    checkpoint = tmp_path / "before" / "checkpoint-3"
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert state["data_position"]["rows_consumed"] == {"train": 48}
    assert state["global_batch_size"] == 16
    assert len(seen) == 48

    # "world 1": global batch 8; the epoch budget (num_train_epochs=1) now means 6 more steps, not 12
    runtime = _run(tmp_path, "after", base, pairs, seen, resume=checkpoint)
    assert [r["step"] for r in runtime.reports] == list(range(4, 10))
    assert runtime.reports[-1]["epoch"] == pytest.approx(1.0)
    assert len(seen) == 96 and len(set(seen)) == 96  # every row of the epoch exactly once


def test_loop_resume_chain_and_an_old_checkpoint(tmp_path, base, pairs):
    # global batch 16 for 2 steps, then 8 for 2 steps (checkpoint-4 is mid a resumed plan), then 24 to the end
    seen: list[tuple[int, ...]] = []
    _run(tmp_path, "one", base, pairs, seen, per_device_train_batch_size=16, max_steps=2)
    _run(tmp_path, "two", base, pairs, seen, resume=tmp_path / "one" / "checkpoint-2", max_steps=4)
    position = json.loads((tmp_path / "two" / "checkpoint-4" / STATE_FILE).read_text())["data_position"]
    assert position["plan_start"] == {"train": 32} and position["rows_consumed"] == {"train": 48}
    # same global batch: the resumed plan (starting at row 32) is rebuilt and continued at its step 2
    again: list[tuple[int, ...]] = list(seen)
    _run(tmp_path, "two-again", base, pairs, again, resume=tmp_path / "two" / "checkpoint-4")
    assert len(again) == 96 and len(set(again)) == 96
    # another global batch again: 48 rows left = 2 batches of 24
    runtime = _run(
        tmp_path,
        "three",
        base,
        pairs,
        seen,
        resume=tmp_path / "two" / "checkpoint-4",
        per_device_train_batch_size=24,
    )
    assert [r["step"] for r in runtime.reports] == [5, 6]
    assert len(seen) == 96 and len(set(seen)) == 96

    # A checkpoint written before the data position was recorded: the position is recomputed from its plan.
    old = tmp_path / "one" / "checkpoint-2"
    state = json.loads((old / STATE_FILE).read_text())
    for key in ("data_position", "global_batch_size"):
        state.pop(key)
    state["world_size"] = 2  # as if written by 2 workers x 8
    (old / STATE_FILE).write_text(json.dumps(state))
    replay = list(seen[:32])
    _run(tmp_path, "from-old", base, pairs, replay, resume=old)
    assert len(replay) == 96 and len(set(replay)) == 96


def test_loop_no_duplicates_resume_records_row_ids(tmp_path, base, pairs):
    seen: list[tuple[int, ...]] = []
    common = dict(batch_sampler="no_duplicates")
    _run(tmp_path, "a", base, pairs, seen, per_device_train_batch_size=16, max_steps=2, **common)
    checkpoint = tmp_path / "a" / "checkpoint-2"
    assert (checkpoint / DATA_POSITION_FILE).is_file()
    _run(tmp_path, "b", base, pairs, seen, resume=checkpoint, **common)
    assert len(seen) == len(set(seen)) and len(seen) >= 96 - PER_DEVICE
