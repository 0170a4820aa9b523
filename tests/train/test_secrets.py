"""Secrets from the environment never land in files raystx writes (outputs, checkpoints, tracker runs, cards)."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pytest
from conftest import make_sentences

from raystx.evaluation import EmbeddingSimilarityEvaluator
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = pytest.mark.ray

SECRETS = {
    "HF_TOKEN": "hf_FAKEsecretTOKENvalue0123456789",
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "MY_SERVICE_PASSWORD": "pw-FAKE-9f8e7d6c5b4a",
    # object storage credentials (test_s3.py checks them end to end against a local S3 server)
    "AWS_SECRET_ACCESS_KEY": "FAKEawsSECRETkey0123456789abcdefABCD",
    "AWS_SESSION_TOKEN": "FAKEawsSESSIONtoken0123456789",
}


def test_fake_secrets_appear_in_no_output_file(ray_session, tiny_bert_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from ray.train import RunConfig, ScalingConfig

    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    secrets = list(SECRETS.values())
    token_file = Path.home() / ".ray" / "auth_token"
    if token_file.is_file() and len(token_file.read_text().strip()) >= 8:
        secrets.append(token_file.read_text().strip())  # the Ray cluster's own auth token

    model = SentenceTransformer(str(tiny_bert_dir))
    evaluator = EmbeddingSimilarityEvaluator(
        make_sentences(8, 1), make_sentences(8, 2), [i / 8 for i in range(8)], name="dev"
    )
    output, storage = tmp_path / "out", tmp_path / "storage"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(output),
            max_steps=4,
            per_device_train_batch_size=8,
            logging_steps=2,
            save_steps=2,
            eval_strategy="steps",
            eval_steps=2,
            report_to=["wandb", "tensorboard"],
            run_name="secret-check",
        ),
        train_dataset=datasets.Dataset.from_dict(
            {"anchor": make_sentences(32, 3), "positive": make_sentences(32, 4)}
        ),
        loss=MultipleNegativesRankingLoss(model),
        evaluator=evaluator,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(
            storage_path=str(storage),
            name="run",
            worker_runtime_env={"env_vars": {**SECRETS, "WANDB_MODE": "offline"}},
        ),
    )
    trainer.train()
    model.save_pretrained(str(output / "final"))

    files = [p for root in (output, storage) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "README.md" for p in files)  # the model card was written
    assert any(".wandb" in p.name for p in files), "no W&B offline run files were written"
    assert any("tfevents" in p.name for p in files), "no TensorBoard event files were written"
    leaks = [(str(p), s[:6]) for p in files for s in secrets if s.encode() in p.read_bytes()]
    assert not leaks, f"secrets found in files: {leaks}"
    assert os.environ["HF_TOKEN"] == SECRETS["HF_TOKEN"]  # the test did set them
