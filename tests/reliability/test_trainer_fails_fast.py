"""The issue's reproduction through the trainer: a None text at row 194 of 300 fails on the driver, before any
Ray Train worker starts (no placement group created, nothing left in output_dir)."""

from __future__ import annotations

import datasets
import pytest
from conftest import make_sentences

from raystx.data.errors import DatasetValidationError

pytest_plugins = ["bad_input_catalogue"]  # the `catalogue` fixture
AREA = "Training runs (the trainer, 2 Ray workers)"


@pytest.mark.ray
def test_none_text_at_row_194_fails_before_workers_start(catalogue, ray_session, tiny_bert_dir, tmp_path):
    import ray
    from ray.train import RunConfig, ScalingConfig

    from raystx.losses import CoSENTLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    s1 = make_sentences(300, 1)
    s1[194] = None
    data = datasets.Dataset.from_dict({"s1": s1, "s2": make_sentences(300, 2), "score": [0.5] * 300})
    model = SentenceTransformer(str(tiny_bert_dir))
    out = tmp_path / "run"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out), max_steps=2, per_device_train_batch_size=4
        ),
        train_dataset=data,
        loss=CoSENTLoss(model),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(tmp_path), name="run"),
    )
    groups_before = len(ray.util.placement_group_table())
    message = catalogue.raises(
        DatasetValidationError,
        trainer.train,
        input="The issue's reproduction: SentenceTransformerTrainer(...).train() with a None text at row 194 "
        "of 300, CoSENTLoss, 2 workers",
    )
    assert "'train'" in message and "'s1'" in message and "row 194" in message
    assert len(ray.util.placement_group_table()) == groups_before, "a placement group was created"
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"
