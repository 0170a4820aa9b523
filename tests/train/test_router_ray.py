"""A Router query/document model and a custom batch sampler on 2 real Ray workers."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from conftest import build_tiny_bert, make_sentences

import raystx.models as rm
from raystx.losses import MultipleNegativesRankingLoss
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = pytest.mark.ray
st = pytest.importorskip("sentence_transformers")


def test_router_with_router_mapping_on_two_workers(ray_session, tmp_path):
    from ray.train import ScalingConfig

    # defined here, like a class in a user's script, so that Ray ships it to the workers by value
    class EvenRows:
        """Batches over the even rows, shuffled by the generator it is given (a user batch sampler)."""

        def __init__(self, dataset, batch_size, drop_last, valid_label_columns, generator, seed) -> None:
            self.n, self.batch_size, self.generator = len(dataset), batch_size, generator

        def __iter__(self):
            rows = [2 * i for i in torch.randperm(self.n // 2, generator=self.generator).tolist()]
            return iter(rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size))

    q_dir, d_dir = build_tiny_bert(tmp_path / "q", seed=5), build_tiny_bert(tmp_path / "d", seed=6)
    q, d = rm.Transformer(str(q_dir)), rm.Transformer(str(d_dir))
    model = rm.SentenceTransformer(
        modules=[rm.Router.for_query_document([q, rm.Pooling(32)], [d, rm.Pooling(32)])], device="cpu"
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = datasets.Dataset.from_dict({"question": make_sentences(48, 1), "answer": make_sentences(48, 2)})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=1,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        router_mapping={"question": "query", "answer": "document"},
        batch_sampler=EvenRows,
        save_strategy="no",
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
    )
    output = trainer.train()
    assert output.global_step == 3  # 24 even rows / (4 per worker x 2 workers)
    after = model.state_dict()
    for route in ("query", "document"):
        prefix = f"0.sub_modules.{route}."
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), route
    model.save(tmp_path / "saved")
    ref = st.SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    texts = make_sentences(5, 9)
    assert np.abs(ref.encode_query(texts) - model.encode_query(texts)).max() < 1e-6
    assert np.abs(ref.encode_document(texts) - model.encode_document(texts)).max() < 1e-6
