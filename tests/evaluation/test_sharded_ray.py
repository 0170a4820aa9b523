"""In-loop evaluation on 2 Ray workers, sharded: every evaluator's metrics logged by the run equal those of the same
evaluators called in this process on the final model (1e-6)."""

from __future__ import annotations

import copy
import math

import datasets
import pytest
import shard_suite
from conftest import make_sentences
from shard_suite import build_suite

from raystx.evaluation import SequentialEvaluator
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = pytest.mark.ray


def test_two_worker_in_loop_metrics_equal_the_single_process_evaluators(ray_session, tiny_bert_dir, tmp_path):
    from ray import cloudpickle
    from ray.train import ScalingConfig

    cloudpickle.register_pickle_by_value(shard_suite)  # workers cannot import the tests folder
    model = SentenceTransformer(str(tiny_bert_dir))
    model.max_seq_length = 16
    teacher = copy.deepcopy(model)  # MSEEvaluator's teacher: the initial weights, in both runs
    evaluator = SequentialEvaluator(list(build_suite(teacher=teacher).values()))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        disable_tqdm=True,
        seed=5,
    )
    data = datasets.Dataset.from_dict({"anchor": make_sentences(32, 1), "positive": make_sentences(32, 2)})
    out = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        evaluator=evaluator,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    ).train()

    logged = [h for h in out.log_history if "eval_sequential_score" in h]
    assert [h["step"] for h in logged] == [2]  # evaluated once, after the last step: on the final weights
    model.eval()
    expected = SequentialEvaluator(list(build_suite(teacher=teacher).values()))(model)
    assert len(expected) > 40
    for key, value in expected.items():
        got = logged[0][f"eval_{key}"]
        if math.isnan(value):
            assert math.isnan(got), key
        else:
            assert got == pytest.approx(value, abs=1e-6), key
