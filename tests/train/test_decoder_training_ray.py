"""Decoder embedders (and ModernBERT) train on 2 real Ray workers: with Qwen3-Embedding-style query-only
instruction prompts, last-token pooling and the packed forward, 2 workers x 4 rows (negatives gathered) reach the
same loss and weights as one process on the 8-row global batch; the trained model, saved, loads in
``sentence_transformers.SentenceTransformer`` with the same embeddings for queries (prompted) and documents.

Qwen3 runs in CI; the other families are marked ``slow``."""

from __future__ import annotations

import copy

import datasets
import pytest
import torch
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.testing_decoder import FAMILIES, QUERY_PROMPT, make_st_decoder
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.train.worker import WorkerPayload, train_worker

pytestmark = pytest.mark.ray

CASES = [pytest.param(f, marks=() if f == "qwen3" else pytest.mark.slow) for f in FAMILIES]


def _args(out, batch: int) -> SentenceTransformerTrainingArguments:
    return SentenceTransformerTrainingArguments(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=batch,
        learning_rate=2e-3,
        logging_steps=1,
        save_strategy="no",
        seed=7,
        prompts={"anchor": QUERY_PROMPT},  # query-only instruction: positives get no prompt
    )


@pytest.mark.parametrize("family", CASES)
def test_two_workers_train_a_decoder_like_one_process_and_save_for_sentence_transformers(
    ray_session, tmp_path, family
):
    from ray.train import ScalingConfig

    data = datasets.Dataset.from_dict({"anchor": make_sentences(16, 1), "positive": make_sentences(16, 2)})
    base = make_st_decoder(tmp_path / "hf", family)
    assert base[0]._use_packed(dict(base.tokenize(["a b", "a"])))

    reference = copy.deepcopy(base)
    ref_loss = MultipleNegativesRankingLoss(reference)
    runtime = LocalRuntime(tmp_path / "ref", device="cpu")
    payload = WorkerPayload(
        model=reference,
        losses={"train": ref_loss},
        args=_args(tmp_path / "ref", 8),
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": ref_loss.contract.label},
    )
    train_worker(payload, runtime)
    ref_losses = [r["loss"] for r in runtime.reports if "loss" in r]

    model = copy.deepcopy(base)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_args(tmp_path / "ray", 4),
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
    )
    out = trainer.train()
    losses = [h["loss"] for h in out.log_history if "loss" in h]

    assert len(losses) == len(ref_losses) == 2
    assert losses == pytest.approx(ref_losses, abs=1e-5)
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(model.parameters(), base.parameters()))
    assert moved > 1e-4
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")

    import sentence_transformers

    model.save(str(tmp_path / "saved"))
    oracle = sentence_transformers.SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    texts = make_sentences(6, seed=9, min_len=1, max_len=14)
    torch.testing.assert_close(
        oracle.encode_query(texts, convert_to_tensor=True),
        model.encode_query(texts, convert_to_tensor=True),
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(
        oracle.encode_document(texts, convert_to_tensor=True),
        model.encode_document(texts, convert_to_tensor=True),
        atol=1e-5,
        rtol=0,
    )
