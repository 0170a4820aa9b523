"""FSDP2 (``fsdp=True``) on 2 real Ray workers (CPU, gloo): the same weights as one process on the global
batch, a consolidated export that sentence-transformers loads, and (slow) a SIGKILLed worker that resumes from
the sharded checkpoint to the uninterrupted run's weights, then the same checkpoint resumed on 1 worker."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import datasets
import pytest
import ray.cloudpickle
import torch
from conftest import make_sentences, unique_sentences
from test_fault_tolerance_ray import RecordingLoss

from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.train.worker import WorkerPayload, train_worker

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _scaling(n: int):
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=n, use_gpu=False, resources_per_worker={"CPU": 1})


def _args(out: Path, batch: int, **extra) -> SentenceTransformerTrainingArguments:
    settings = dict(
        output_dir=str(out),
        max_steps=3,
        per_device_train_batch_size=batch,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        seed=3,
    )
    return SentenceTransformerTrainingArguments(**{**settings, **extra})


def test_fsdp_on_two_ray_workers_equals_one_process_and_exports_for_sentence_transformers(
    ray_session, tiny_bert_dir, tmp_path
):
    from sentence_transformers import SentenceTransformer as Oracle

    data = datasets.Dataset.from_dict({"anchor": make_sentences(48, 1), "positive": make_sentences(48, 2)})
    base = SentenceTransformer(str(tiny_bert_dir))

    reference = copy.deepcopy(base)
    ref_loss = MultipleNegativesRankingLoss(reference)
    runtime = LocalRuntime(tmp_path / "ref")
    train_worker(
        WorkerPayload(
            model=reference,
            losses={"train": ref_loss},
            args=_args(tmp_path / "ref", 16),
            sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
            label_kinds={"train": ref_loss.contract.label},
        ),
        runtime,
    )

    model = copy.deepcopy(base)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_args(tmp_path / "fsdp", 8, fsdp=True),
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=_scaling(2),
    )
    out = trainer.train()

    ref_losses = [r["loss"] for r in runtime.reports if "loss" in r]
    assert [h["loss"] for h in out.log_history if "loss" in h] == pytest.approx(ref_losses, abs=1e-5)
    moved = max(
        float((a - b).abs().max()) for a, b in zip(base.state_dict().values(), model.state_dict().values())
    )
    assert moved > 1e-3
    for key, value in reference.state_dict().items():  # the driver's model got the consolidated weights
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=1e-5)
    export = Path(out.checkpoint_path) / "model"
    texts = make_sentences(5, seed=4)
    torch.testing.assert_close(
        Oracle(str(export), device="cpu").encode(texts, convert_to_tensor=True),
        model.encode(texts, convert_to_tensor=True),
        rtol=1e-5,
        atol=1e-6,
    )


def _train(tmp_path: Path, base, data, name: str, workers: int = 2, resume: str | None = None, **loss_kwargs):
    from ray.train import FailureConfig, RunConfig

    model = copy.deepcopy(base)
    log = tmp_path / f"{name}.jsonl"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_args(
            tmp_path / name,
            16 // workers,
            max_steps=6,
            save_strategy="steps",
            save_steps=2,
            seed=11,
            fsdp=True,
            resume_from_checkpoint=resume,
        ),
        train_dataset=data,
        loss=RecordingLoss(model, str(log), **loss_kwargs),
        scaling_config=_scaling(workers),
        run_config=RunConfig(
            storage_path=str(tmp_path), name=name, failure_config=FailureConfig(max_failures=1)
        ),
    )
    out = trainer.train()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return model, out, records


@pytest.mark.slow
def test_sigkilled_fsdp_worker_resumes_from_the_sharded_checkpoint(ray_session, tiny_bert_dir, tmp_path):
    anchors = unique_sentences(6 * 16, seed=40)  # one epoch == 6 global batches of 16
    data = datasets.Dataset.from_dict({"anchor": anchors, "positive": make_sentences(len(anchors), 77)})
    base = SentenceTransformer(str(tiny_bert_dir))

    reference, _, _ = _train(tmp_path, base, data, "uninterrupted")
    model, out, records = _train(
        tmp_path, base, data, "killed", kill_rank=1, kill_call=4, marker=str(tmp_path / "marker")
    )
    assert (tmp_path / "marker").exists(), "the worker was never killed"
    assert [h["step"] for h in out.log_history] == list(range(1, 7))
    pids = list(dict.fromkeys(r["pid"] for r in records))
    assert len(pids) == 4  # 2 workers x 2 attempts
    lineage = [r for r in records if r["pid"] not in set(pids[:2]) or r["call"] <= 2]
    trained = [tuple(row) for r in lineage for row in r["rows"]]
    assert len(trained) == len(anchors) and len(set(trained)) == len(anchors)  # every row once
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=1e-5)

    # the sharded checkpoint of 2 workers, resumed on 1 (DCP re-shards): the run completes
    checkpoint = tmp_path / "killed" / "checkpoint-4"
    assert {p.name for p in (checkpoint / "fsdp").iterdir()} >= {".metadata", "__0_0.distcp", "__1_0.distcp"}
    _, single, _ = _train(tmp_path, base, data, "one-worker", workers=1, resume=str(checkpoint))
    assert single.global_step == 6
