"""Checkpoint integrity, the non-finite loss guard and preemption saves, in one process (no Ray needed)."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.checkpoint import CorruptCheckpointError, read_trainer_state
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import NonFiniteLossError, WorkerPayload, train_worker


def _payload(tmp_path: Path, model, loss=None, **args) -> WorkerPayload:
    data = datasets.Dataset.from_dict({"anchor": make_sentences(48, 1), "positive": make_sentences(48, 2)})
    defaults = dict(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=8,
        logging_steps=1,
        save_steps=2,
        learning_rate=1e-3,
        seed=5,
    )
    defaults.update(args)
    return WorkerPayload(
        model=model,
        losses={"train": loss or MultipleNegativesRankingLoss(model)},
        args=SentenceTransformerTrainingArguments(**defaults),
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        run_dir=str(tmp_path),
    )


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _StopAfter(LocalRuntime):
    """Crashes the run right after the checkpoint of ``step`` was persisted (like a killed job)."""

    def __init__(self, output_dir, step: int) -> None:
        super().__init__(output_dir)
        self.step = step

    def report(self, metrics, checkpoint_dir, checkpoint_name):
        super().report(metrics, checkpoint_dir, checkpoint_name)
        if metrics["step"] == self.step:
            raise KeyboardInterrupt("stopped")


def test_resume_after_a_stop_equals_the_uninterrupted_run(tmp_path, tiny_bert_dir):
    base = SentenceTransformer(str(tiny_bert_dir))
    full = copy.deepcopy(base)
    train_worker(_payload(tmp_path / "full", full), LocalRuntime(tmp_path / "full"))

    with pytest.raises(KeyboardInterrupt):
        train_worker(_payload(tmp_path / "run", copy.deepcopy(base)), _StopAfter(tmp_path / "run", 4))
    resumed = copy.deepcopy(base)  # initial weights: everything must come from checkpoint-4
    runtime = LocalRuntime(tmp_path / "run")
    train_worker(_payload(tmp_path / "run", resumed, resume_from_checkpoint=True), runtime)
    assert runtime.reports[0]["step"] == 5  # continued after checkpoint-4, nothing repeated or skipped
    for key, value in _weights(resumed).items():
        torch.testing.assert_close(value, full.state_dict()[key], rtol=0, atol=0)


def test_resume_mid_run_is_exact_and_skips_a_truncated_latest_checkpoint(tmp_path, tiny_bert_dir, caplog):
    caplog.set_level(logging.WARNING, logger="raystx.train")
    base = SentenceTransformer(str(tiny_bert_dir))
    full = copy.deepcopy(base)
    train_worker(_payload(tmp_path / "full", full), LocalRuntime(tmp_path / "full"))

    # A run wrote checkpoints 2, 4, 6. Truncate the weights of 4 and 6 and drop 6's state file (a half-written
    # checkpoint); resuming must skip both with a warning, fall back to checkpoint-2 and replay steps 3-6 exactly.
    leg = copy.deepcopy(base)
    train_worker(_payload(tmp_path / "run", leg), LocalRuntime(tmp_path / "run"))
    for step in (6, 4):
        weights = next((tmp_path / "run" / f"checkpoint-{step}" / "model").rglob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:100])
        with pytest.raises(CorruptCheckpointError, match="truncated"):
            read_trainer_state(tmp_path / "run" / f"checkpoint-{step}")
    (tmp_path / "run" / "checkpoint-6" / "trainer_state.json").unlink()  # a half-written, newest checkpoint

    resumed = copy.deepcopy(base)
    runtime = LocalRuntime(tmp_path / "run")
    train_worker(_payload(tmp_path / "run", resumed, resume_from_checkpoint=True), runtime)
    assert runtime.reports[0]["step"] == 3
    assert sum("Skipping checkpoint" in r.message for r in caplog.records) == 2
    for key, value in _weights(resumed).items():
        torch.testing.assert_close(value, full.state_dict()[key], rtol=0, atol=1e-6)


class _NaNAfter(MultipleNegativesRankingLoss):
    """MNRL whose value turns NaN from the ``start``-th call on (a diverging run)."""

    def __init__(self, model, start: int) -> None:
        super().__init__(model)
        self.start, self.calls = start, 0

    def forward(self, features, labels):
        self.calls += 1
        loss = super().forward(features, labels)
        return loss * float("nan") if self.calls >= self.start else loss


def test_non_finite_losses_are_skipped_then_stop_training_keeping_the_last_good_checkpoint(
    tmp_path, tiny_bert_dir
):
    model = SentenceTransformer(str(tiny_bert_dir))
    payload = _payload(
        tmp_path, model, loss=_NaNAfter(model, start=3), max_steps=20, max_consecutive_bad_steps=3
    )
    runtime = LocalRuntime(tmp_path)
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        train_worker(payload, runtime)
    # Steps 1-2 trained and were checkpointed; steps 3-5 were skipped, so the weights are still checkpoint-2's.
    assert [p.name for p in runtime.checkpoints] == ["checkpoint-2"]
    saved = SentenceTransformer(str(runtime.checkpoints[0] / "model"))
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[key], rtol=0, atol=0)


class _PreemptAt(LocalRuntime):
    def __init__(self, output_dir, step: int) -> None:
        super().__init__(output_dir)
        self.calls, self.step = 0, step

    def preemption_pending(self) -> bool:
        self.calls += 1
        return self.calls >= self.step


def test_a_pending_preemption_saves_a_checkpoint_once(tmp_path, tiny_bert_dir):
    model = SentenceTransformer(str(tiny_bert_dir))
    runtime = _PreemptAt(tmp_path, step=3)
    train_worker(_payload(tmp_path, model, max_steps=5, save_steps=100, preemption_check_steps=1), runtime)
    assert [p.name for p in runtime.checkpoints] == ["checkpoint-3", "checkpoint-5"]


def test_summary_table_shows_the_last_loss_and_final_metrics():
    from raystx.train.progress import summary_table

    table = summary_table(
        [
            {"step": 2, "loss": 1.5, "learning_rate": 1e-4},
            {"step": 4, "loss": 0.75, "eval_dev_spearman_cosine": 0.5},
        ],
        seconds=12.34,
    )
    lines = dict(line.split(None, 1) for line in table.splitlines()[2:])
    assert lines == {
        "step": "4",
        "loss": "0.75",
        "learning_rate": "0.0001",
        "eval_dev_spearman_cosine": "0.5",
        "train_runtime_s": "12.3",
    }


def test_history_after_a_restart_is_the_surviving_lineage(tmp_path, tiny_bert_dir):
    """The run's history lives in its checkpoints: a restart from checkpoint-2 replaces what the failed
    attempt had logged after step 2, so the final state lists each step once, the re-run steps' values last."""
    base = SentenceTransformer(str(tiny_bert_dir))
    with pytest.raises(KeyboardInterrupt):
        train_worker(_payload(tmp_path / "run", copy.deepcopy(base)), _StopAfter(tmp_path / "run", 4))
    first_attempt = read_trainer_state(tmp_path / "run" / "checkpoint-4").log_history
    shutil.rmtree(tmp_path / "run" / "checkpoint-4")  # the attempt died before checkpoint-4 was persisted
    runtime = LocalRuntime(tmp_path / "run")
    train_worker(_payload(tmp_path / "run", copy.deepcopy(base), resume_from_checkpoint=True), runtime)
    history = read_trainer_state(runtime.checkpoints[-1]).log_history
    steps = [h["step"] for h in history]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == runtime.reports[-1]["step"]
    assert [h for h in history if h["step"] <= 2] == [h for h in first_attempt if h["step"] <= 2]
    resumed_steps = {r["step"] for r in runtime.reports if "loss" in r}
    assert {h["step"] for h in history if h["step"] > 2} == resumed_steps


@pytest.mark.parametrize("args", [{"save_strategy": "no"}, {"save_only_model": True}])
def test_model_only_checkpoints_hold_no_optimizer_state_and_are_not_resumed_from(
    tmp_path, tiny_bert_dir, caplog, args
):
    """save_only_model (and the final save of a save_strategy='no' run, which only carries the weights back to the
    driver) write the model and the state, not the optimizer/scheduler/RNG state; resuming skips them."""
    caplog.set_level(logging.WARNING, logger="raystx.train")
    model = SentenceTransformer(str(tiny_bert_dir))
    runtime = LocalRuntime(tmp_path / "run")
    train_worker(_payload(tmp_path / "run", model, **args), runtime)
    final = runtime.checkpoints[-1]
    assert final.name == "checkpoint-6"
    assert (final / "model" / "modules.json").is_file()
    assert not list(final.glob("optimizer.pt")) + list(final.glob("scheduler.pt")) + list(final.glob("rng_*"))
    state = read_trainer_state(final)
    assert state.resumable is False and state.global_step == 6
    loaded = SentenceTransformer(str(final / "model"))
    for key, value in _weights(loaded).items():
        torch.testing.assert_close(value, model.state_dict()[key], rtol=0, atol=0)
    with pytest.raises(CorruptCheckpointError, match="model only"):
        from raystx.train.checkpoint import restore_checkpoint

        restore_checkpoint(final, rank=0, model=model, losses={}, optimizer=None, scheduler=None)


def test_a_local_run_leaves_no_temporary_checkpoint_folders(tiny_bert_dir, tmp_path, monkeypatch):
    """The loop writes each checkpoint to a temporary folder that the runtime copies into the run folder; the
    temporary copy is deleted after (it used to pile up in the temp dir, one per save)."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = SentenceTransformer(str(tiny_bert_dir))
    train_worker(_payload(tmp_path / "run", model), LocalRuntime(tmp_path / "run"))
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-6",
    ]
    assert [p.name for p in scratch.iterdir() if p.name.startswith("raystx-ckpt-")] == []
