"""Multi-dataset training on 2 real Ray workers: what each rank consumed, step by step, against the pure plan.

Three datasets of different sizes and formats (a ``datasets.Dataset`` of pairs for MNRL, a CSV file of scored
pairs for CoSENT, a Parquet file of labelled pairs for SoftmaxLoss) are trained with a loss dict. Each loss is
wrapped in ``RecordingLoss``, which decodes the token ids it receives back to texts and appends
``{dataset, texts, loss}`` to ``records/rank{r}.jsonl`` (one line per training step, since gradient
accumulation is 1), then returns the real loss. Line ``k`` of a rank's file is therefore global step ``k``.

Three Ray runs cover every case (each costs ~20-40 s here):

* ``prop1``: proportional sampler, seed 1, 3 epochs (the training run: loss goes down per dataset);
* ``prop1_again``: the identical configuration (same seed -> same order);
* ``rr2``: round-robin sampler, seed 2, 1 epoch (round-robin schedule; different seed -> different order).
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_sentences
from torch import Tensor

from raystx.data.schedule import EpochPlan, build_schedule, dataset_order
from raystx.distributed import get_rank
from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss, SoftmaxLoss
from raystx.losses.base import RaystxLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = pytest.mark.ray

PER_DEVICE = 4
WORKERS = 2
GLOBAL = PER_DEVICE * WORKERS
SIZES = {"pairs": 48, "scored": 32, "classes": 64}  # 6, 4 and 8 global batches; dict order = dataset order
FIRST_COLUMN = {"pairs": "anchor", "scored": "sentence1", "classes": "premise"}
TAG = {"pairs": "p", "scored": "s", "classes": "c"}
RUNS = {
    "prop1": {"sampler": "proportional", "seed": 1, "epochs": 3},
    "prop1_again": {"sampler": "proportional", "seed": 1, "epochs": 3},
    "rr2": {"sampler": "round_robin", "seed": 2, "epochs": 1},
}


class RecordingLoss(RaystxLoss):
    """Wraps a real loss; logs the texts of every batch it sees (per rank, to a shared file) and its value.

    The loss object is pickled to the workers, so the record goes to ``log_dir`` on disk, not to memory.
    """

    def __init__(self, inner: RaystxLoss, dataset: str, log_dir: str) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.dataset = dataset
        self.log_dir = log_dir
        self.contract = inner.contract
        self.alternative_contracts = getattr(inner, "alternative_contracts", ())

    def forward(self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        decode = self.model.tokenizer.batch_decode
        texts = [decode(f["input_ids"].tolist(), skip_special_tokens=True) for f in sentence_features]
        value = self.inner(sentence_features, labels)
        line = {
            "dataset": self.dataset,
            "texts": texts,
            "labels": None if labels is None else labels.tolist(),
            "loss": float(value.detach()),
        }
        with open(Path(self.log_dir) / f"rank{get_rank()}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        return value


def _code(tag: str, index: int) -> str:
    """A word that names the row: the tag letter then the row number with digits spelled as letters a-j."""
    return tag + "".join("abcdefghij"[int(d)] for d in str(index))


def _rows() -> dict[str, dict[str, list[Any]]]:
    """Column -> values for each dataset; the first column of row i starts with ``_code(tag, i)``."""
    pairs_first = make_sentences(SIZES["pairs"], 11)
    scored_a, scored_b = make_sentences(SIZES["scored"], 12), make_sentences(SIZES["scored"], 13)
    classes_a, classes_b = make_sentences(SIZES["classes"], 14), make_sentences(SIZES["classes"], 15)

    def overlap(a: str, b: str) -> float:
        x, y = set(a.split()), set(b.split())
        return len(x & y) / len(x | y)

    return {
        "pairs": {
            "anchor": [f"{_code('p', i)} {s}" for i, s in enumerate(pairs_first)],
            "positive": [" ".join(reversed(s.split())) for s in pairs_first],
        },
        "scored": {
            "sentence1": [f"{_code('s', i)} {a}" for i, a in enumerate(scored_a)],
            "sentence2": scored_b,
            "score": [overlap(a, b) for a, b in zip(scored_a, scored_b)],
        },
        "classes": {
            "premise": [f"{_code('c', i)} {a}" for i, a in enumerate(classes_a)],
            "hypothesis": classes_b,
            "label": [i % 3 for i in range(SIZES["classes"])],
        },
    }


def _write_inputs(root: Path, rows: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """The three datasets in their three formats: a datasets.Dataset, a CSV file, a Parquet file."""
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / "scored.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(rows["scored"]))
        writer.writerows(zip(*rows["scored"].values()))
    parquet_path = root / "classes.parquet"
    table = pa.table(rows["classes"])
    assert table.schema.field("label").type == pa.int64()
    pq.write_table(table, parquet_path)
    return {
        "pairs": datasets.Dataset.from_dict(rows["pairs"]),
        "scored": str(csv_path),
        "classes": str(parquet_path),
    }


def _run(name: str, spec: dict[str, Any], base: SentenceTransformer, inputs, root: Path) -> dict[str, Any]:
    from ray.train import ScalingConfig

    model = copy.deepcopy(base)
    log_dir = root / name / "records"
    log_dir.mkdir(parents=True)
    torch.manual_seed(0)  # the SoftmaxLoss head starts identical in every run
    inner = {
        "pairs": MultipleNegativesRankingLoss(model),
        "scored": CoSENTLoss(model),
        "classes": SoftmaxLoss(model, model.get_sentence_embedding_dimension(), num_labels=3),
    }
    losses = {n: RecordingLoss(loss, n, str(log_dir)) for n, loss in inner.items()}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(root / name / "out"),
        num_train_epochs=spec["epochs"],
        per_device_train_batch_size=PER_DEVICE,
        learning_rate=2e-3,
        multi_dataset_batch_sampler=spec["sampler"],
        logging_steps=6,
        save_strategy="no",
        seed=spec["seed"],
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=inputs,
        loss=losses,
        scaling_config=ScalingConfig(num_workers=WORKERS, use_gpu=False, resources_per_worker={"CPU": 1}),
    )
    out = trainer.train()
    records = {
        rank: [json.loads(line) for line in (log_dir / f"rank{rank}.jsonl").read_text().splitlines()]
        for rank in range(WORKERS)
    }
    return {"records": records, "out": out, "model": model, "spec": spec}


@pytest.fixture(scope="module")
def runs(ray_session, tiny_bert_dir, tmp_path_factory) -> dict[str, Any]:
    import sys

    import ray.cloudpickle

    # RecordingLoss lives in this test module, which Ray workers cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    root = tmp_path_factory.mktemp("multi-dataset")
    rows = _rows()
    inputs = _write_inputs(root / "inputs", rows)
    base = SentenceTransformer(str(tiny_bert_dir))
    results = {name: _run(name, spec, base, inputs, root) for name, spec in RUNS.items()}
    return {"runs": results, "rows": rows, "base": base}


def _row_index(dataset: str, rows: dict[str, dict[str, list[Any]]], texts: list[list[str]], k: int) -> int:
    """Which row of ``dataset`` the k-th example of a recorded batch is; checks every column's text."""
    code = texts[0][k].split()[0]
    assert code[0] == TAG[dataset], (dataset, texts[0][k])
    index = int("".join(str("abcdefghij".index(c)) for c in code[1:]))
    text_columns = [c for c in rows[dataset] if c not in ("score", "label")]
    assert [texts[j][k] for j in range(len(text_columns))] == [rows[dataset][c][index] for c in text_columns]
    return index


def _plans(spec: dict[str, Any]) -> list[EpochPlan]:
    return [
        EpochPlan(SIZES, PER_DEVICE, WORKERS, spec["seed"], epoch, spec["sampler"])
        for epoch in range(spec["epochs"])
    ]


@pytest.mark.parametrize("run", list(RUNS))
def test_every_step_draws_the_same_dataset_on_both_ranks_as_the_pure_schedule(runs, run):
    result = runs["runs"][run]
    spec = result["spec"]
    expected = [
        name
        for epoch in range(spec["epochs"])
        for name in build_schedule(SIZES, GLOBAL, spec["seed"], epoch, spec["sampler"])
    ]
    per_rank = {rank: [r["dataset"] for r in recs] for rank, recs in result["records"].items()}
    assert per_rank[0] == per_rank[1] == expected
    steps_per_epoch = len(expected) // spec["epochs"]
    batches = [size // GLOBAL for size in SIZES.values()]  # 6, 4, 8
    # proportional: every full batch once; round robin: rounds until the smallest dataset runs out
    assert steps_per_epoch == (sum(batches) if spec["sampler"] == "proportional" else 3 * min(batches))
    assert result["out"].global_step == len(expected)


@pytest.mark.parametrize("run", list(RUNS))
def test_each_rank_takes_its_planned_rows_and_an_epoch_covers_each_dataset_once(runs, run):
    result, rows = runs["runs"][run], runs["rows"]
    spec = result["spec"]
    records = result["records"]
    for epoch, plan in enumerate(_plans(spec)):
        offset = epoch * len(plan)
        consumed: dict[str, list[int]] = {name: [] for name in SIZES}
        for step in range(len(plan)):
            for rank in range(WORKERS):
                rec = records[rank][offset + step]
                indices = [_row_index(rec["dataset"], rows, rec["texts"], k) for k in range(PER_DEVICE)]
                name, planned = plan.rows(step, rank)
                assert (rec["dataset"], indices) == (name, planned.tolist())
                label_column = {"scored": "score", "classes": "label"}.get(name)
                if label_column:
                    np.testing.assert_allclose(
                        rec["labels"], [rows[name][label_column][i] for i in indices], rtol=0, atol=1e-6
                    )
                consumed[name].extend(indices)
        for name, size in SIZES.items():
            assert len(consumed[name]) == len(set(consumed[name])), f"{name}: a row repeated in epoch {epoch}"
            if spec["sampler"] == "proportional":
                assert sorted(consumed[name]) == list(range(size)), f"{name}: rows missing in epoch {epoch}"
            else:  # round robin stops when the smallest dataset runs out
                rounds = min(SIZES.values()) // GLOBAL
                order = dataset_order(size, spec["seed"], epoch, name)
                assert consumed[name] == order[: rounds * GLOBAL].tolist()
                if size == min(SIZES.values()):  # ... so the smallest one is covered exactly once
                    assert sorted(consumed[name]) == list(range(size))


def _batches(result: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
    recs = result["records"]
    return [(a["dataset"], a["texts"][0], b["texts"][0]) for a, b in zip(recs[0], recs[1])]


def test_same_seed_gives_the_same_order_and_a_different_seed_a_different_one(runs):
    first, again, other = runs["runs"]["prop1"], runs["runs"]["prop1_again"], runs["runs"]["rr2"]
    assert _batches(first) == _batches(again)
    # Same seed, same data, same code: the runs are numerically identical too.
    losses = [[r["loss"] for r in run["records"][0]] for run in (first, again)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    # Seed 2 orders every dataset's rows differently from seed 1 (compare the rows each dataset yields first).
    rows = runs["rows"]
    for name in SIZES:
        seed2 = _dataset_row_order(other, name, rows)
        assert len(seed2) == 32
        assert seed2 != _dataset_row_order(first, name, rows)[: len(seed2)], name


def _dataset_row_order(run: dict[str, Any], name: str, rows: dict[str, dict[str, list[Any]]]) -> list[int]:
    """Rows of ``name`` in the order the run consumed them (global batches in step order, rank 0 then 1)."""
    seq: list[int] = []
    for a, b in zip(run["records"][0], run["records"][1]):
        if a["dataset"] == name:
            seq += [_row_index(name, rows, rec["texts"], k) for rec in (a, b) for k in range(PER_DEVICE)]
    return seq


def test_loss_dict_over_three_formats_trains(runs):
    result = runs["runs"]["prop1"]
    steps = len(build_schedule(SIZES, GLOBAL, 1, 0, "proportional"))
    ratios = []
    for name in SIZES:
        for rank in range(WORKERS):
            recs = result["records"][rank]
            first = [r["loss"] for r in recs[:steps] if r["dataset"] == name]
            last = [r["loss"] for r in recs[-steps:] if r["dataset"] == name]
            assert np.isfinite(first + last).all()
            ratios.append(np.mean(last) / np.mean(first))
    # Each dataset gets only a few steps per epoch, so one loss can be noisy (CoSENT on 4 global batches);
    # the objective as a whole must go down.
    assert np.mean(ratios) < 0.9, ratios
    base_state, trained = runs["base"].state_dict(), result["model"].state_dict()
    assert max(float((base_state[k] - trained[k]).abs().max()) for k in base_state) > 1e-4
    logged = [h["loss"] for h in result["out"].log_history if "loss" in h]
    assert logged and np.isfinite(logged).all()
