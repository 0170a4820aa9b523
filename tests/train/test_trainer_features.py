"""Training-argument behaviour: driver-side validation, gradient accumulation, best-model selection and
checkpoint rotation, evaluation steps."""

from __future__ import annotations

import copy
import sys

import datasets
import pytest
import ray.cloudpickle
import torch
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.losses import CosineSimilarityLoss, MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.train.worker import WorkerPayload, train_worker

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


@pytest.mark.parametrize(
    ("kwargs", "use_gpu", "needle"),
    [
        ({"fp16": True}, False, "fp16=True needs GPU workers"),
        ({"load_best_model_at_end": True}, False, "needs eval_strategy"),
        (
            {"load_best_model_at_end": True, "eval_strategy": "steps", "eval_steps": 3, "save_steps": 4},
            False,
            "save_steps \\(4\\) to be a multiple of eval_steps \\(3\\)",
        ),
        ({"load_best_model_at_end": True, "eval_strategy": "epoch"}, False, "save_strategy == eval_strategy"),
        ({"lr_scheduler_type": "cosine_warm"}, False, "lr_scheduler_type='cosine_warm'"),
        ({"warmup_ratio": 1.5}, False, "warmup_ratio"),
        ({"fp16": True, "bf16": True}, True, "fp16 and bf16 cannot both be True"),
    ],
)
def test_invalid_argument_combinations_fail_naming_the_fields(kwargs, use_gpu, needle):
    with pytest.raises(ValueError, match=needle):
        SentenceTransformerTrainingArguments(**kwargs).validate(use_gpu=use_gpu)


def test_unknown_enum_values_name_the_field():
    with pytest.raises(ValueError, match="batch_sampler='nope'"):
        SentenceTransformerTrainingArguments(batch_sampler="nope")


def test_gradient_accumulation_equals_one_bigger_batch_for_a_per_row_loss(tmp_path, tiny_bert_dir):
    data = datasets.Dataset.from_dict(
        {
            "sentence1": make_sentences(16, 1),
            "sentence2": make_sentences(16, 2),
            "score": [i / 15 for i in range(16)],
        }
    )
    base = SentenceTransformer(str(tiny_bert_dir))
    results = {}
    for name, (batch, accum) in {"big": (16, 1), "accumulated": (8, 2)}.items():
        model = copy.deepcopy(base)
        runtime = LocalRuntime(tmp_path / name)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / name),
            max_steps=1,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
            learning_rate=1e-4,
            adam_epsilon=1e-6,
            logging_steps=1,
            save_strategy="no",
            seed=2,
        )
        train_worker(
            WorkerPayload(
                model=model,
                losses={"train": CosineSimilarityLoss(model)},
                args=args,
                sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
                label_kinds={"train": "float"},
            ),
            runtime,
        )
        results[name] = (model, runtime.reports[-1]["loss"])
    assert results["big"][1] == pytest.approx(results["accumulated"][1], abs=1e-6)
    for key, value in results["big"][0].state_dict().items():
        torch.testing.assert_close(results["accumulated"][0].state_dict()[key], value, rtol=0, atol=1e-5)
    assert any((v != base.state_dict()[k]).any() for k, v in results["big"][0].state_dict().items())


class ScriptedEvaluator:
    """Returns a scripted metric per call (peaks at the 2nd evaluation), like an evaluator would."""

    name = "scripted"
    primary_metric = "scripted_score"
    greater_is_better = True

    def __init__(self, values: list[float]) -> None:
        self.values, self.calls = values, 0

    def __call__(self, model, output_path=None, epoch=-1, steps=-1):
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return {"scripted_score": value}


@pytest.mark.ray
def test_load_best_model_at_end_and_save_total_limit(ray_session, tiny_bert_dir, tmp_path):
    from ray.train import ScalingConfig

    model = SentenceTransformer(str(tiny_bert_dir))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / "run"),
            max_steps=8,
            per_device_train_batch_size=8,
            learning_rate=1e-3,
            logging_steps=2,
            eval_strategy="steps",
            eval_steps=2,
            save_steps=2,
            save_total_limit=2,
            load_best_model_at_end=True,
            seed=4,
        ),
        train_dataset=datasets.Dataset.from_dict(
            {"anchor": make_sentences(64, 5), "positive": make_sentences(64, 6)}
        ),
        loss=MultipleNegativesRankingLoss(model),
        evaluator=ScriptedEvaluator([0.1, 0.9, 0.3, 0.2]),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    )
    out = trainer.train()

    evaluated = [(h["step"], h["eval_scripted_score"]) for h in out.log_history if "eval_scripted_score" in h]
    assert evaluated == [(2, 0.1), (4, 0.9), (6, 0.3), (8, 0.2)]  # evaluation at exactly the eval steps
    kept = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))
    # the two best by the metric, plus the latest (kept so the run can resume), as transformers does
    assert kept == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
    assert out.checkpoint_path.endswith("checkpoint-4")
    best = SentenceTransformer(str(tmp_path / "run" / "checkpoint-4" / "model"))
    for key, value in best.state_dict().items():
        torch.testing.assert_close(
            model.state_dict()[key], value, rtol=0, atol=0
        )  # driver holds the best weights
