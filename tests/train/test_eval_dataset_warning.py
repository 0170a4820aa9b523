"""An eval_dataset is accepted (sentence-transformers scripts pass one) but not evaluated yet: the user is told."""

from __future__ import annotations

import logging

import datasets

from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer


def test_eval_dataset_is_announced_as_not_evaluated(tiny_bert_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="raystx.train")
    data = datasets.Dataset.from_dict({"anchor": ["a b"], "positive": ["b a"]})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"))
    model = SentenceTransformer(str(tiny_bert_dir))
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data)
    assert "eval_dataset" not in caplog.text
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data, eval_dataset=data)
    assert "eval_dataset is not evaluated" in caplog.text and "evaluator" in caplog.text
