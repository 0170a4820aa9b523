"""FSDP on 2 Ray workers without shipping the weights (``raystx.train.fsdp_ship``): a model freshly loaded from a
directory the (one-node) cluster can read goes to the workers as a meta-device copy, rank 0 reads the directory,
and training gives the weights of today's full-payload FSDP run (1e-5); a model changed after loading is shipped
in full, with its change, and trains like one process on the global batch."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import datasets
import pytest
import ray.cloudpickle
import torch
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train import trainer as trainer_module
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.train.worker import WorkerPayload, train_worker

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory, tiny_bert_dir):
    out = tmp_path_factory.mktemp("ship") / "model"
    SentenceTransformer(str(tiny_bert_dir), device="cpu").save(str(out))
    return out


@pytest.fixture(scope="module")
def data():
    return datasets.Dataset.from_dict({"anchor": make_sentences(48, 1), "positive": make_sentences(48, 2)})


def _args(out: Path, batch: int, **extra) -> SentenceTransformerTrainingArguments:
    settings = dict(
        output_dir=str(out), max_steps=3, per_device_train_batch_size=batch, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", seed=3,
    )  # fmt: skip
    return SentenceTransformerTrainingArguments(**{**settings, **extra})


def _fsdp_run(model, data, out: Path, monkeypatch) -> tuple[WorkerPayload, list[float]]:
    """Train ``model`` with fsdp on 2 Ray workers; the payload the driver shipped and the logged losses."""
    from ray.train import ScalingConfig

    shipped: list[WorkerPayload] = []
    original = trainer_module.launch
    monkeypatch.setattr(
        trainer_module,
        "launch",
        lambda payload, *a, **k: shipped.append(payload) or original(payload, *a, **k),
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_args(out, 8, fsdp=True),
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
    )
    result = trainer.train()
    return shipped[0], [h["loss"] for h in result.log_history if "loss" in h]


def _pickled_size(payload: WorkerPayload) -> int:
    return len(ray.cloudpickle.dumps(payload))


def test_a_loaded_model_reaches_fsdp_workers_without_its_weights_and_trains_the_same(
    ray_session, st_dir, data, tmp_path, monkeypatch
):
    fresh = SentenceTransformer(str(st_dir), device="cpu")
    meta, meta_losses = _fsdp_run(fresh, data, tmp_path / "meta", monkeypatch)
    assert meta.initial_weights == str(st_dir.absolute())
    assert all(p.is_meta for p in meta.model.parameters())
    assert meta.losses["train"].model is meta.model

    # today's payload: the full model (a deep copy is not provably the directory's weights, so it ships in full)
    full_model = copy.deepcopy(SentenceTransformer(str(st_dir), device="cpu"))
    full, full_losses = _fsdp_run(full_model, data, tmp_path / "full", monkeypatch)
    assert full.initial_weights is None and not any(p.is_meta for p in full.model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in full_model.parameters())
    assert _pickled_size(full) - _pickled_size(meta) > 0.9 * weight_bytes  # the weights are what is left out

    assert meta_losses == pytest.approx(full_losses, abs=1e-5)
    untrained = SentenceTransformer(str(st_dir), device="cpu")
    assert (
        max(
            float((a - b).abs().max())
            for a, b in zip(fresh.state_dict().values(), untrained.state_dict().values())
        )
        > 1e-3
    )
    for (name, a), b in zip(fresh.state_dict().items(), full_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow  # the weightless-payload run above stays in CI; this fallback is unit-tested in test_weights_origin
def test_a_model_changed_after_loading_ships_in_full_and_trains_right(
    ray_session, st_dir, data, tmp_path, monkeypatch
):
    def changed() -> SentenceTransformer:
        model = SentenceTransformer(str(st_dir), device="cpu")
        with torch.no_grad():
            model[0].auto_model.embeddings.word_embeddings.weight.add_(0.05)
        return model

    model = changed()
    payload, losses = _fsdp_run(model, data, tmp_path / "changed", monkeypatch)
    assert payload.initial_weights is None
    assert not any(p.is_meta for p in payload.model.parameters())

    # the reference: one process on the global batch of 16, from the same changed weights
    reference = changed()
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
    assert losses == pytest.approx([r["loss"] for r in runtime.reports if "loss" in r], abs=1e-5)
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
