"""Run guards checked on the driver before any worker starts (issue 19): the cluster's resources,
``metric_for_best_model``, resume compatibility, one run per folder, ``output_dir`` that is a file, damaged
checkpoint files named by path, Ray's wrappers unwrapped, and the staged data removed after a run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from conftest import build_tiny_bert, make_sentences

pytest_plugins = ["bad_input_catalogue"]  # the `catalogue` fixture
AREA = "Run guards (checked on the driver before workers start)"


# ------------------------------------------------------------------------------------------------ helpers
def _live_groups() -> list[str]:
    import ray

    return [pid for pid, g in ray.util.placement_group_table().items() if g["state"] != "REMOVED"]


def _pairs(n: int = 32) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"anchor": make_sentences(n, 1), "positive": make_sentences(n, 2)})


def _trainer(model_dir: Path, out: Path, *, loss=None, scaling=None, evaluator=None, data=None, **args):
    from ray.train import ScalingConfig

    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    model = SentenceTransformer(str(model_dir))
    defaults = dict(output_dir=str(out), max_steps=2, per_device_train_batch_size=4, disable_tqdm=True)
    defaults.update(args)
    return SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(**defaults),
        train_dataset=data if data is not None else _pairs(),
        loss=(loss or MultipleNegativesRankingLoss)(model),
        evaluator=evaluator,
        scaling_config=scaling or ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    )


def _assert_nothing_left(out: Path, groups_before: list[str]) -> None:
    assert _live_groups() == groups_before, "a placement group was left behind"
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"


# ------------------------------------------------------------------------------------------------ resources
@pytest.mark.ray
def test_more_workers_than_the_cluster_fails_before_workers_start(
    catalogue, ray_session, tiny_bert_dir, tmp_path
):
    from ray.train import ScalingConfig

    from raystx.train.resources import InsufficientResourcesError

    out = tmp_path / "run"
    trainer = _trainer(
        tiny_bert_dir, out, scaling=ScalingConfig(num_workers=8, resources_per_worker={"CPU": 1})
    )
    before = _live_groups()
    message = catalogue.raises(
        InsufficientResourcesError,
        trainer.train,
        input="ScalingConfig(num_workers=8) on a cluster with 4 CPUs (the issue's run waited forever)",
    )
    assert "num_workers=8" in message and "CPU: 8" in message and "{CPU: 4}" in message
    assert "Lower num_workers" in message
    _assert_nothing_left(out, before)


def test_gpu_workers_on_a_cluster_without_gpus_fail_naming_both(catalogue):
    from ray.train import ScalingConfig

    from raystx.train.resources import InsufficientResourcesError, check_scaling_fits

    message = catalogue.raises(
        InsufficientResourcesError,
        lambda: check_scaling_fits(ScalingConfig(num_workers=2, use_gpu=True), {"CPU": 16.0, "memory": 1e10}),
        input="ScalingConfig(num_workers=2, use_gpu=True) on a cluster with 16 CPUs and no GPU",
    )
    assert (
        "use_gpu=True" in message and "GPU: needs 2, cluster has 0" in message and "use_gpu=False" in message
    )


def test_the_sweep_uses_the_same_resource_check():
    from raystx.train.resources import InsufficientResourcesError
    from raystx.tune.resources import check_fits

    with pytest.raises(
        InsufficientResourcesError, match=r"one trial needs more than the cluster has \(CPU: needs 9"
    ):
        check_fits({"CPU": 9.0}, {"CPU": 4.0})


# ------------------------------------------------------------------------------------------------ metric name
def _sts_evaluator():
    from raystx.evaluation import EmbeddingSimilarityEvaluator

    return EmbeddingSimilarityEvaluator(
        make_sentences(8, 3), make_sentences(8, 4), [i / 8 for i in range(8)], name="sts-dev"
    )


@pytest.mark.ray
def test_metric_for_best_model_typo_fails_before_training(catalogue, ray_session, tiny_bert_dir, tmp_path):
    from raystx.train.metric_names import UnknownMetricError

    out = tmp_path / "run"
    evaluator = _sts_evaluator()
    trainer = _trainer(
        tiny_bert_dir,
        out,
        evaluator=evaluator,
        eval_strategy="steps",
        eval_steps=1,
        save_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="sts-dev_spearman_cosin",
    )
    before = _live_groups()
    message = catalogue.raises(
        UnknownMetricError,
        trainer.train,
        input="metric_for_best_model='sts-dev_spearman_cosin' (a typo) with an EmbeddingSimilarityEvaluator "
        "named sts-dev",
    )
    assert "'sts-dev_spearman_cosin'" in message
    assert "Did you mean eval_sts-dev_spearman_cosine" in message
    assert "eval_sts-dev_pearson_cosine, eval_sts-dev_spearman_cosine" in message
    _assert_nothing_left(out, before)
    assert (
        evaluator.primary_metric is None and evaluator.similarity_fn_names == []
    )  # the dry run left no trace


def test_metric_names_accept_both_spellings_and_eval_loss_with_an_eval_dataset(tiny_bert_dir):
    from raystx.models import SentenceTransformer
    from raystx.train.metric_names import UnknownMetricError, check_metric_for_best_model

    model = SentenceTransformer(str(tiny_bert_dir))
    evaluator = _sts_evaluator()
    for name in ("sts-dev_spearman_cosine", "eval_sts-dev_spearman_cosine"):
        check_metric_for_best_model(name, evaluator, model, None)
    check_metric_for_best_model("eval_loss", evaluator, model, [])
    check_metric_for_best_model("loss", None, model, [])
    check_metric_for_best_model("eval_sts_loss", None, model, ["sts"])
    with pytest.raises(UnknownMetricError, match="eval_loss"):
        check_metric_for_best_model("eval_loss", evaluator, model, None)  # no eval_dataset: no eval_loss


def test_metric_for_best_model_without_any_evaluation_fails(catalogue, tiny_bert_dir):
    from raystx.models import SentenceTransformer
    from raystx.train.metric_names import UnknownMetricError, check_metric_for_best_model

    model = SentenceTransformer(str(tiny_bert_dir))
    message = catalogue.raises(
        UnknownMetricError,
        lambda: check_metric_for_best_model("accuracy", None, model, None),
        input="metric_for_best_model='accuracy' with neither an evaluator nor an eval_dataset",
    )
    assert "no evaluator" in message and "Pass an evaluator" in message


# ------------------------------------------------------------------------------------------------ resume
def _fake_checkpoint(directory: Path, model, losses) -> Path:
    """A complete checkpoint of ``model``/``losses`` written with the workers' own writer (no training)."""
    import torch

    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.checkpoint import write_checkpoint
    from raystx.train.optim import build_scheduler
    from raystx.train.state import CheckpointState

    params = list({id(p): p for m in (model, *losses.values()) for p in m.parameters()}.values())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    args = SentenceTransformerTrainingArguments(output_dir=str(directory.parent), max_steps=2)
    state = CheckpointState(global_step=1, epoch=0.0, step_in_epoch=1)
    write_checkpoint(
        directory,
        rank=0,
        model=model,
        losses=losses,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, args, 2),
        trainer_state=state,
    )
    return directory


@pytest.mark.ray
def test_resuming_another_architecture_fails_before_workers_start(
    catalogue, ray_session, tiny_bert_dir, tmp_path
):
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.resume_check import IncompatibleCheckpointError

    other = SentenceTransformer(str(build_tiny_bert(tmp_path / "wide", hidden=48)))
    out = tmp_path / "run"
    checkpoint = _fake_checkpoint(out / "checkpoint-1", other, {"train": MultipleNegativesRankingLoss(other)})
    catalogue.replace(str(tmp_path), "<tmp>")
    trainer = _trainer(tiny_bert_dir, out, resume_from_checkpoint=True)
    before = _live_groups()
    listing = sorted(p.name for p in out.iterdir())
    message = catalogue.raises(
        IncompatibleCheckpointError,
        trainer.train,
        input="resume_from_checkpoint=True over a checkpoint of a BERT with hidden size 48 (the model has 32)",
    )
    assert str(checkpoint) in message.replace("<tmp>", str(tmp_path))
    assert "word_embeddings.weight [" in message and "(this run's: [" in message
    assert "Resume with the model and losses that wrote the checkpoint" in message
    assert _live_groups() == before and sorted(p.name for p in out.iterdir()) == listing


def test_resuming_with_another_loss_head_fails_naming_the_loss(catalogue, tiny_bert_dir, tmp_path):
    from raystx.losses import SoftmaxLoss
    from raystx.models import SentenceTransformer
    from raystx.train.resume_check import IncompatibleCheckpointError, check_resume_compatible

    model = SentenceTransformer(str(tiny_bert_dir))
    dim = model.get_sentence_embedding_dimension()
    three = SoftmaxLoss(model, sentence_embedding_dimension=dim, num_labels=3)
    checkpoint = _fake_checkpoint(tmp_path / "checkpoint-1", model, {"train": three})
    two = SoftmaxLoss(model, sentence_embedding_dimension=dim, num_labels=2)
    catalogue.replace(str(tmp_path), "<tmp>")
    message = catalogue.raises(
        IncompatibleCheckpointError,
        lambda: check_resume_compatible(checkpoint, model, {"train": two}),
        input="Resuming a SoftmaxLoss(num_labels=3) checkpoint with SoftmaxLoss(num_labels=2)",
    )
    assert (
        "losses: 2 tensors differ in shape, checkpoint vs this run: train.classifier.weight [3, 96] (this run's: [2, 96])"
        in message
    )
    assert "SoftmaxLoss" in message
    check_resume_compatible(checkpoint, model, {"train": three})  # the same model and loss pass


# ------------------------------------------------------------------------------------------------ run lock
@pytest.mark.ray
def test_a_second_run_on_a_locked_folder_fails_at_once_naming_the_holder(
    catalogue, ray_session, tiny_bert_dir, tmp_path
):
    from raystx.train.run_lock import LOCK_FILE, RunFolderLockedError

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / LOCK_FILE).write_text(
            json.dumps({"host": socket.gethostname(), "pid": holder.pid, "since": 0})
        )
        trainer = _trainer(tiny_bert_dir, out)
        before = _live_groups()
        catalogue.replace(f"pid {holder.pid} on host {socket.gethostname()}", "pid <PID> on host <HOST>")
        message = catalogue.raises(
            RunFolderLockedError,
            trainer.train,
            input="A second run on an output_dir whose first run is still going",
        )
    finally:
        holder.kill()
        holder.wait()
    assert (
        f"pid {holder.pid} on host {socket.gethostname()}" in message
        and "choose another output_dir" in message
    )
    assert _live_groups() == before
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the holder's lock is untouched


def test_a_stale_lock_of_a_dead_pid_is_taken_over_and_released(tmp_path, caplog):
    from raystx.train.run_lock import LOCK_FILE, RunLock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": 0}))
    with caplog.at_level("WARNING", logger="raystx.train"), RunLock(tmp_path) as lock:
        held = json.loads((tmp_path / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid() and lock.held
    assert f"pid {dead.pid}" in caplog.text and "no longer runs" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_from_another_host_is_honoured(tmp_path):
    from raystx.train.run_lock import LOCK_FILE, RunFolderLockedError, RunLock

    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": time.time()}))
    with pytest.raises(RunFolderLockedError, match="pid 1 on host elsewhere"):
        RunLock(tmp_path).acquire()


def test_remote_run_folders_are_not_locked():
    from raystx.train.run_lock import RunLock

    with RunLock("s3://bucket/runs/x") as lock:
        assert not lock.held


# ------------------------------------------------------------------------------------------------ paths
@pytest.mark.ray
def test_output_dir_that_is_a_file_fails_before_anything_starts(
    catalogue, ray_session, tiny_bert_dir, tmp_path
):
    out = tmp_path / "run"
    out.write_text("not a folder")
    trainer = _trainer(tiny_bert_dir, out)
    catalogue.replace(str(tmp_path), "<tmp>")
    message = catalogue.raises(NotADirectoryError, trainer.train, input="output_dir is an existing file")
    assert "is an existing file, not a folder" in message and "choose another output_dir" in message
    assert out.read_text() == "not a folder"


def test_a_corrupt_safetensors_file_is_named(catalogue, tiny_bert_dir, tmp_path):
    from raystx.models import SentenceTransformer
    from raystx.train.checkpoint import CorruptCheckpointError, load_model_weights

    model = SentenceTransformer(str(tiny_bert_dir))
    saved = tmp_path / "model"
    model.save_pretrained(str(saved))
    weights = next(saved.rglob("model.safetensors"))
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:64])
    catalogue.replace(str(tmp_path), "<tmp>")
    message = catalogue.raises(
        CorruptCheckpointError,
        lambda: load_model_weights(model, saved),
        input="A checkpoint whose model.safetensors was damaged (a garbage header)",
    )
    assert str(weights).replace(str(tmp_path), "<tmp>") in message.replace(str(tmp_path), "<tmp>")
    assert "not a valid safetensors file" in message


def test_ray_wrappers_are_unwrapped_to_the_original_exception():
    from ray.exceptions import RayTaskError

    from raystx.train.driver import unwrap_worker_error

    original = FileNotFoundError(2, "No such file", "/data/x.parquet")
    wrapped = RayTaskError("fn", "traceback", original).as_instanceof_cause()
    assert unwrap_worker_error(wrapped) is original

    class Failure:  # what Ray Train's WorkerGroupError holds per rank
        def __init__(self, cause):
            self.cause = cause

    class WorkerGroupError(Exception):
        def __init__(self):
            super().__init__("workers failed")
            self.worker_failures = {1: Failure(RayTaskError("fn", "tb", original)), 0: Failure(original)}

    assert unwrap_worker_error(WorkerGroupError()) is original
    plain = ValueError("x")
    assert unwrap_worker_error(plain) is plain


# ------------------------------------------------------------------------------------------------ clean finish
@pytest.mark.ray
def test_staged_data_is_removed_after_a_successful_run_unless_kept(ray_session, tiny_bert_dir, tmp_path):
    """The staged copy in the run folder is gone after a run; ``keep_staged_data`` keeps it. Workers read local
    staged files in place, so no node-local copy is written (the removal of remote row groups cached in
    ``$TMPDIR/raystx-data-cache/<run tag>`` is checked by tests/train/test_s3.py)."""
    from raystx.data.readers import _cache_dir
    from raystx.train.run_lock import LOCK_FILE
    from raystx.train.trainer import STAGING_DIR

    out = tmp_path / "run"
    trainer = _trainer(tiny_bert_dir, out, data=str(_write_csv(tmp_path / "pairs.csv")))
    trainer.train()
    names = sorted(p.name for p in out.iterdir())
    assert STAGING_DIR not in names and LOCK_FILE not in names
    assert "checkpoint-2" in names
    assert trainer._cache_tag and not Path(_cache_dir(trainer._cache_tag)).exists()

    kept = tmp_path / "kept"
    keeper = _trainer(
        tiny_bert_dir, kept, data=str(_write_csv(tmp_path / "pairs.csv")), keep_staged_data=True
    )
    keeper.train()
    assert any((kept / STAGING_DIR).rglob("*.parquet"))
    assert not Path(_cache_dir(keeper._cache_tag)).exists()  # local files: read in place, never copied


def _write_csv(path: Path) -> Path:
    rows = ["anchor,positive", *(f"{a},{p}" for a, p in zip(make_sentences(32, 1), make_sentences(32, 2)))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path
