"""An eval_dataset is evaluated (``eval_loss``), so the trainer no longer warns that it is ignored; it is checked
against its loss on the driver like the training data, before any worker starts."""

from __future__ import annotations

import logging

import datasets
import pytest
import ray

from raystx.data.errors import DatasetValidationError
from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer


def test_eval_dataset_is_validated_not_announced_as_ignored(tiny_bert_dir, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(
        ray, "is_initialized", lambda: True
    )  # datasets.Dataset inputs need no Ray to validate
    caplog.set_level(logging.WARNING, logger="raystx.train")
    pairs = datasets.Dataset.from_dict({"anchor": ["a b", "c d"], "positive": ["b a", "d c"]})
    scored = datasets.Dataset.from_dict({"s1": ["a b", "c d"], "s2": ["b a", "d c"], "score": [0.5, 0.1]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2
    )
    model = SentenceTransformer(str(tiny_bert_dir))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        eval_dataset=pairs,
        loss=MultipleNegativesRankingLoss(model),
    )
    trainer.validate()
    assert "eval_dataset" not in caplog.text
    assert trainer._eval["eval"].metric == "eval_loss"

    bad = SentenceTransformerTrainer(model=model, args=args, train_dataset=scored, eval_dataset=pairs)
    with pytest.raises(DatasetValidationError, match="CoSENTLoss"):  # the default loss; pairs have no score
        bad.validate()
    assert isinstance(bad.loss, CoSENTLoss)
