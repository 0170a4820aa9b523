"""End-to-end training on 2 real Ray workers (CPU, gloo) against single-process references."""

from __future__ import annotations

import copy
from pathlib import Path

import datasets
import pytest
import torch
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.train.worker import WorkerPayload, train_worker

pytestmark = pytest.mark.ray


def _scaling(n: int):
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=n, use_gpu=False, resources_per_worker={"CPU": 1})


def _pairs(n: int, seed: int = 0) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"anchor": make_sentences(n, seed), "positive": make_sentences(n, seed + 100)}
    )


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def _one_step_args(tmp_path: Path, batch: int) -> SentenceTransformerTrainingArguments:
    return SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=batch,
        learning_rate=1e-4,
        adam_epsilon=1e-6,
        logging_steps=1,
        save_strategy="no",
        seed=3,
    )


@pytest.mark.parametrize("loss_name", ["mnrl", "cosent"])
def test_two_workers_with_gather_equal_one_worker_on_the_union_batch(
    ray_session, tiny_bert_dir, tmp_path, loss_name
):
    if loss_name == "mnrl":
        data = datasets.Dataset.from_dict(
            {
                "anchor": make_sentences(16, 1),
                "positive": make_sentences(16, 2),
                "negative": make_sentences(16, 3),
            }
        )
        make_loss = MultipleNegativesRankingLoss
    else:
        data = datasets.Dataset.from_dict(
            {
                "sentence1": make_sentences(16, 1),
                "sentence2": make_sentences(16, 2),
                "score": [i / 15 for i in range(16)],
            }
        )
        make_loss = CoSENTLoss
    base = SentenceTransformer(str(tiny_bert_dir))

    # Reference: one process, batch 16, same loop code.
    ref_model = copy.deepcopy(base)
    ref_loss = make_loss(ref_model)
    runtime = LocalRuntime(tmp_path / "ref")
    payload = WorkerPayload(
        model=ref_model,
        losses={"train": ref_loss},
        args=_one_step_args(tmp_path / "ref", 16),
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": ref_loss.contract.label},
    )
    train_worker(payload, runtime)
    ref_loss_value = runtime.reports[-1]["loss"]

    # Ray: 2 workers x batch 8, gather on.
    model = copy.deepcopy(base)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_one_step_args(tmp_path / "ray", 8),
        train_dataset=data,
        loss=make_loss(model),
        scaling_config=_scaling(2),
    )
    out = trainer.train()
    ray_loss_value = out.log_history[-1]["loss"]

    assert _max_diff(base, model) > 1e-6  # the step changed the weights
    assert ray_loss_value == pytest.approx(ref_loss_value, abs=1e-5)
    assert _max_diff(model, ref_model) < 1e-5


def test_two_worker_run_lowers_loss_checkpoints_and_updates_driver_model(
    ray_session, tiny_bert_dir, tmp_path, capsys
):
    model = SentenceTransformer(str(tiny_bert_dir))
    initial = copy.deepcopy(model)
    output_dir = tmp_path / "run"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=4,
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        logging_steps=2,
        save_steps=4,
        seed=1,
    )
    data = _pairs(64)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=_scaling(2),
    )
    out = trainer.train()

    losses = [h["loss"] for h in out.log_history if "loss" in h]
    assert len(losses) == 8 and losses[-1] < losses[0]
    captured = capsys.readouterr()
    # live progress from rank 0, as plain lines off a terminal: one per logging step, none from Ray's internals
    assert "[raystx] step 16/16 loss=" in captured.err
    assert captured.err.count("[raystx] step ") == 8
    assert "Reporting training result" not in captured.out + captured.err
    assert "PreemptionWatcher" not in captured.out + captured.err  # an E-level Ray line on one-node clusters
    assert "training summary" in captured.out and "train_runtime_s" in captured.out
    checkpoints = sorted(p.name for p in output_dir.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-12", "checkpoint-16", "checkpoint-4", "checkpoint-8"]
    assert _max_diff(model, initial) > 1e-4
    final = SentenceTransformer(str(output_dir / "checkpoint-16" / "model"))
    assert _max_diff(model, final) == 0.0
    texts = make_sentences(5, 9)
    torch.testing.assert_close(
        torch.as_tensor(model.encode(texts)), torch.as_tensor(final.encode(texts)), rtol=0, atol=1e-6
    )
    # A second run into the same output_dir refuses to clobber the checkpoints.
    again = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=_scaling(2),
    )
    with pytest.raises(FileExistsError, match="resume_from_checkpoint"):
        again.train()
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == checkpoints


def test_history_is_the_whole_run_without_progress_bar_and_with_the_best_checkpoint(
    ray_session, tiny_bert_dir, tmp_path
):
    """The best checkpoint's weights come back, but the history is the whole run's (it used to stop at the best
    checkpoint when no progress bar collected the log on the driver)."""

    # defined here so Ray pickles it by value (workers cannot import this test module)
    class WorseEachTime:
        """An evaluator whose score drops at every call, so the best checkpoint is the first evaluated one."""

        name = "declining"
        primary_metric = "score"
        greater_is_better = True

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, model) -> dict[str, float]:
            self.calls += 1
            return {"declining_score": 1.0 / self.calls}

    model = SentenceTransformer(str(tiny_bert_dir))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=6,
        per_device_train_batch_size=4,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        load_best_model_at_end=True,
        disable_tqdm=True,
        seed=3,
    )
    out = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=_pairs(48),
        loss=MultipleNegativesRankingLoss(model),
        evaluator=WorseEachTime(),
        scaling_config=_scaling(2),
    ).train()
    assert Path(out.checkpoint_path).name == "checkpoint-2"  # the best one's weights
    assert out.global_step == 6
    assert [h["step"] for h in out.log_history if "loss" in h] == [1, 2, 3, 4, 5, 6]
    assert [h["eval_declining_score"] for h in out.log_history if "eval_declining_score" in h] == [
        1.0,
        0.5,
        pytest.approx(1 / 3),
    ]
    loaded = SentenceTransformer(str(Path(out.checkpoint_path) / "model"))
    assert _max_diff(loaded, model) == 0.0

    # overwrite_output_dir starts over in the same folder (Ray's snapshot of the old run's checkpoints used to
    # make the new controller refuse the folder as corrupted)
    args.overwrite_output_dir, args.max_steps, args.load_best_model_at_end = True, 2, False
    again = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=_pairs(48),
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=_scaling(2),
    ).train()
    assert again.global_step == 2
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2"]
