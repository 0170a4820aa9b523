"""transformers-style callbacks run unchanged: ``TrainerControl`` flags set on rank 0 are honoured by every rank at
the documented cadence (``raystx.train.control``), ``transformers.EarlyStoppingCallback`` stops a run early (one
process and 2 Ray workers), and raystx's own callback form keeps working next to them."""

from __future__ import annotations

import sys
from pathlib import Path

import datasets
import pytest
import ray.cloudpickle
import transformers
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.evaluation.base import SentenceEvaluator
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.callbacks import TrainerCallback as RaystxCallback
from raystx.train.checkpoint import read_trainer_state
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, build_loop

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module

# fake_score per evaluation call: improves twice, then stays flat (EarlyStopping with patience 2 stops on the 5th)
SCORES = [0.1, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]


class ScriptedEvaluator(SentenceEvaluator):
    """Returns the next of ``SCORES`` on each call (a score that stops improving)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "fake"
        self.primary_metric = "fake_score"
        self.calls = 0

    def __call__(self, model, output_path=None, epoch=-1, steps=-1):
        score = SCORES[min(self.calls, len(SCORES) - 1)]
        self.calls += 1
        return {"fake_score": score}


class Steer(transformers.TrainerCallback):
    """Sets control flags at given global steps (in ``on_step_end``, as transformers' flow callback does)."""

    def __init__(self, stop_at=None, evaluate_at=None, save_at=None) -> None:
        self.stop_at, self.evaluate_at, self.save_at = stop_at, evaluate_at, save_at
        self.seen_controls = []

    def on_step_end(self, args, state, control, **kwargs):
        self.seen_controls.append(control)
        if state.global_step == self.stop_at:
            control.should_training_stop = True
        if state.global_step == self.evaluate_at:
            control.should_evaluate = True
        if state.global_step == self.save_at:
            control.should_save = True
        return control


class RaystxForm(RaystxCallback):
    def __init__(self) -> None:
        self.logged = []

    def on_log(self, args, state, logs, **kwargs):
        self.logged.append(logs["step"])


def _payload(model_dir: Path, tmp_path: Path, callbacks, evaluator=None, **overrides) -> WorkerPayload:
    model = SentenceTransformer(str(model_dir))
    model.max_seq_length = 16
    loss = MultipleNegativesRankingLoss(model)
    data = datasets.Dataset.from_dict({"anchor": make_sentences(48, 1), "positive": make_sentences(48, 2)})
    values = dict(
        output_dir=str(tmp_path / "run"),
        max_steps=12,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        learning_rate=1e-3,
    )
    values.update(overrides)
    args = SentenceTransformerTrainingArguments(**values)
    return WorkerPayload(
        model=model,
        losses={"train": loss},
        args=args,
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        evaluator=evaluator,
        callbacks=callbacks,
        best_metric_key="eval_fake_score" if evaluator else None,
    )


def test_control_flags_stop_evaluate_and_save(tiny_bert_dir, tmp_path):
    steer, mine = Steer(stop_at=7, evaluate_at=3, save_at=2), RaystxForm()
    runtime = LocalRuntime(tmp_path / "run", device="cpu")
    payload = _payload(tiny_bert_dir, tmp_path, [steer, mine], evaluator=ScriptedEvaluator())
    result = build_loop(payload, runtime).run()
    assert result["global_step"] == 7  # stopped where the callback asked, not at max_steps=12
    assert [p.name for p in runtime.checkpoints] == ["checkpoint-2", "checkpoint-7"]  # asked + the final one
    evaluated = [h["step"] for h in result["log_history"] if "eval_fake_score" in h]
    assert evaluated == [3]  # eval_strategy is 'no': only the evaluation the callback asked for
    assert mine.logged == list(range(1, 8))  # raystx's callback form still runs
    assert all(
        c is steer.seen_controls[0] for c in steer.seen_controls
    )  # one control object, as transformers


def test_a_flag_set_between_due_steps_waits_for_the_next_one(tiny_bert_dir, tmp_path):
    """The documented cadence: no per-step collective, so a stop asked at step 3 acts at the next logging step."""
    runtime = LocalRuntime(tmp_path / "run", device="cpu")
    result = build_loop(_payload(tiny_bert_dir, tmp_path, [Steer(stop_at=3)], logging_steps=5), runtime).run()
    assert result["global_step"] == 5
    assert [p.name for p in runtime.checkpoints] == ["checkpoint-5"]


def _early_stopping_args(tmp_path: Path) -> dict:
    return dict(
        max_steps=40,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        logging_steps=2,
        eval_on_start=True,
        metric_for_best_model="fake_score",
        load_best_model_at_end=True,
    )


def test_early_stopping_callback_in_one_process(tiny_bert_dir, tmp_path):
    early = transformers.EarlyStoppingCallback(early_stopping_patience=2)
    runtime = LocalRuntime(tmp_path / "run", device="cpu")
    payload = _payload(
        tiny_bert_dir, tmp_path, [early], ScriptedEvaluator(), **_early_stopping_args(tmp_path)
    )
    result = build_loop(payload, runtime).run()
    # evaluations at steps 0 (eval_on_start), 2, 4, 6, 8 score 0.1, 0.5, 0.6, 0.6, 0.6: two without improvement
    assert result["global_step"] == 8 and early.early_stopping_patience_counter == 2
    assert runtime.checkpoints[-1].name == "checkpoint-8"


@pytest.mark.ray
def test_early_stopping_callback_stops_a_two_worker_ray_run(ray_session, tiny_bert_dir, tmp_path):
    from ray.train import ScalingConfig

    from raystx.train.trainer import SentenceTransformerTrainer

    model = SentenceTransformer(str(tiny_bert_dir))
    model.max_seq_length = 16
    data = datasets.Dataset.from_dict({"anchor": make_sentences(48, 1), "positive": make_sentences(48, 2)})
    out = tmp_path / "out"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        **_early_stopping_args(tmp_path),
    )
    eval_pairs = datasets.Dataset.from_dict(
        {"anchor": make_sentences(11, 7), "positive": make_sentences(11, 8)}
    )
    expected_eval_loss = _direct_eval_loss(model, eval_pairs, batch_size=4)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=eval_pairs,  # eval_loss on 2 workers, sharded by batches
        loss=MultipleNegativesRankingLoss(model),
        evaluator=ScriptedEvaluator(),
        callbacks=[transformers.EarlyStoppingCallback(early_stopping_patience=2)],
        scaling_config=ScalingConfig(num_workers=2),
    )
    output = trainer.train()  # returns: both workers left the loop at the same step (no hang)
    history = output.log_history
    evaluated = [h["step"] for h in history if "eval_fake_score" in h]
    assert evaluated == [0, 2, 4, 6, 8]
    assert max(h["step"] for h in history) == 8
    final = out / "checkpoint-8"
    assert final.is_dir() and read_trainer_state(str(final)).global_step == 8
    assert not (out / "checkpoint-10").exists()
    assert output.global_step in (4, 6, 8)  # the best checkpoint (the first 0.6, or a tie) is loaded
    start = next(h for h in history if h["step"] == 0)
    assert start["eval_loss"] == pytest.approx(expected_eval_loss, abs=1e-6)  # 2 workers == one process
    assert all("eval_loss" in h for h in history if "eval_fake_score" in h)


def _direct_eval_loss(model, data: datasets.Dataset, batch_size: int) -> float:
    """eval_loss by definition in one process: batches in order, row-weighted mean of the batch losses."""
    import torch

    loss = MultipleNegativesRankingLoss(model)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            rows = data[start : start + batch_size]
            features = [model.tokenize(rows["anchor"]), model.tokenize(rows["positive"])]
            total += float(loss(features, None)) * len(rows["anchor"])
    model.train()
    return total / len(data)


class SaveOnEvaluate(transformers.TrainerCallback):
    """Asks for a save from ``on_evaluate`` at the 2nd evaluation (as a 'save the best' callback would)."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.global_step == 4:
            control.should_save = True


def test_a_save_asked_in_on_evaluate_happens_at_that_step(tiny_bert_dir, tmp_path):
    runtime = LocalRuntime(tmp_path / "run", device="cpu")
    payload = _payload(
        tiny_bert_dir,
        tmp_path,
        [SaveOnEvaluate()],
        ScriptedEvaluator(),
        max_steps=6,
        eval_strategy="steps",
        eval_steps=2,
    )
    assert build_loop(payload, runtime).run()["global_step"] == 6
    assert [p.name for p in runtime.checkpoints] == ["checkpoint-4", "checkpoint-6"]
