"""A user batch sampler drives a real (one-process) training run: the steps are the sampler's batches."""

from __future__ import annotations

import datasets
import torch
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, train_worker

SEEN: list[list[int]] = []


class FirstHalf:
    """Batches over the first half of the rows only, shuffled by the generator it is given."""

    def __init__(self, dataset, batch_size, drop_last, valid_label_columns, generator, seed) -> None:
        self.rows, self.batch_size, self.generator = len(dataset) // 2, batch_size, generator

    def __iter__(self):
        order = torch.randperm(self.rows, generator=self.generator).tolist()
        return iter(order[i : i + self.batch_size] for i in range(0, self.rows, self.batch_size))


class RecordingLoss(MultipleNegativesRankingLoss):
    def forward(self, features, labels):
        SEEN.append(features[0]["input_ids"].shape[0])
        return super().forward(features, labels)


def test_custom_sampler_sets_the_steps(tmp_path, tiny_bert_dir):
    model = SentenceTransformer(str(tiny_bert_dir))
    data = datasets.Dataset.from_dict({"anchor": make_sentences(40, 1), "positive": make_sentences(40, 2)})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=4, batch_sampler=FirstHalf
    )
    payload = WorkerPayload(
        model=model,
        losses={"train": RecordingLoss(model)},
        args=args,
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        run_dir=str(tmp_path),
    )
    SEEN.clear()
    runtime = LocalRuntime(tmp_path)
    train_worker(payload, runtime)
    assert SEEN == [4] * 5  # 20 rows of the first half in batches of 4, one epoch
