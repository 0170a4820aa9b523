"""report_to integrations: TensorBoard event files and offline W&B runs hold the logged values at the right steps."""

from __future__ import annotations

import dataclasses
import json
import struct
import sys
import time
import types
from pathlib import Path

import datasets
import pytest
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.evaluation import EmbeddingSimilarityEvaluator
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.secrets import REDACTED, redact
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.callbacks import TrainerState, integration_callbacks
from raystx.train.integrations import (
    TensorBoardCallback,
    WandbCallback,
    check_report_to,
    public_config,
    rewrite_logs,
)
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, train_worker

FAKE_SECRET = "hf_FAKEsecretVALUE_0123456789"


# ------------------------------------------------------------------------------------------------ readers
def read_tensorboard(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _wandb_records(path: Path) -> list[bytes]:
    """Records of a ``.wandb`` file: a 7-byte header, then LevelDB-log framed chunks in 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full
            out.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            out.append(pending + chunk)
            pending = b""
    return out


def _parsed_records(run_file: Path, timeout_s: float = 60.0) -> list:
    """The file's records once W&B's background writer has written the final ``exit`` record.

    ``run.finish()`` returns before the wandb-core process has flushed an offline run, so wait for it.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + timeout_s
    while True:
        records = []
        for raw in _wandb_records(run_file):
            record = pb.Record()
            record.ParseFromString(raw)
            records.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_wandb_run(run_file: Path) -> tuple[dict[int, dict[str, float]], dict[str, object], str]:
    """(history by step, config, run display name) of an offline W&B run file."""
    history: dict[int, dict[str, float]] = {}
    config: dict[str, object] = {}
    name = ""
    for record in _parsed_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = history.setdefault(int(record.history.step.num), {})
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
        elif kind == "run":
            name = record.run.display_name
            for item in record.run.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return history, config, name


def only_wandb_run_file(root: Path) -> Path:
    files = sorted(root.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]


@dataclasses.dataclass
class ArgsWithToken(SentenceTransformerTrainingArguments):
    """Training arguments with a secret field, as transformers' hub_token."""

    hub_token: str | None = None


# ------------------------------------------------------------------------------------------------ unit
def test_rewrite_logs_and_public_config_drop_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", FAKE_SECRET)
    monkeypatch.setenv("SHORT_KEY", "1")  # too short to be a credential: not masked
    logs = {"loss": 0.5, "learning_rate": 1e-4, "epoch": 0.5, "step": 3, "eval_dev_x": 0.25, "done": True}
    assert rewrite_logs(logs) == {
        "train/loss": 0.5,
        "train/learning_rate": 1e-4,
        "train/epoch": 0.5,
        "eval/dev_x": 0.25,
    }
    args = ArgsWithToken(output_dir=str(tmp_path), run_name=f"run-{FAKE_SECRET}", hub_token=FAKE_SECRET)
    config = public_config(args)
    assert "hub_token" not in config
    assert FAKE_SECRET not in json.dumps(config)
    assert config["run_name"] == f"run-{REDACTED}"
    assert config["learning_rate"] == args.learning_rate and config["batch_sampler"] == "batch_sampler"
    assert redact("a 1 b") == "a 1 b"


def test_unknown_and_missing_integrations_fail_clearly(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        check_report_to(SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to="mlflowx"))
    monkeypatch.setitem(sys.modules, "codecarbon", None)  # import codecarbon -> ImportError
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to="codecarbon")
    with pytest.raises(ValueError, match="pip install codecarbon"):
        check_report_to(args)
    with pytest.raises(ValueError, match="pip install codecarbon"):
        integration_callbacks(args)


def test_codecarbon_callback_starts_and_stops_a_tracker(monkeypatch, tmp_path):
    calls: list[tuple[str, object]] = []

    class FakeTracker:
        def __init__(self, output_dir: str) -> None:
            calls.append(("init", output_dir))

        def start(self) -> None:
            calls.append(("start", None))

        def stop(self) -> float:
            calls.append(("stop", None))
            return 0.125

    monkeypatch.setitem(sys.modules, "codecarbon", types.SimpleNamespace(EmissionsTracker=FakeTracker))
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), report_to=["codecarbon"])
    (cb,) = integration_callbacks(args)
    cb.on_train_begin(args, TrainerState())
    cb.on_train_end(args, TrainerState(global_step=2))
    assert calls == [("init", str((tmp_path / "out").absolute())), ("start", None), ("stop", None)]
    assert cb.emissions == 0.125


def test_tensorboard_callback_hooks_write_event_files(tmp_path):
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), run_name="tb-direct", report_to="tensorboard"
    )
    (cb,) = integration_callbacks(args)
    assert isinstance(cb, TensorBoardCallback)
    cb.on_train_begin(args, TrainerState(max_steps=4))
    cb.on_log(args, TrainerState(global_step=1), {"step": 1, "loss": 2.5, "learning_rate": 1e-3})
    cb.on_log(args, TrainerState(global_step=4), {"step": 4, "loss": 1.25, "eval_dev_acc": 0.75})
    cb.on_train_end(args, TrainerState(global_step=4))
    scalars = read_tensorboard(tmp_path / "runs" / "tb-direct")
    assert scalars["train/loss"] == [(1, 2.5), (4, 1.25)]
    assert scalars["train/learning_rate"] == [(1, pytest.approx(1e-3, rel=1e-6))]
    assert scalars["eval/dev_acc"] == [(4, 0.75)]
    assert "train/step" not in scalars


def test_wandb_callback_hooks_write_offline_run(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "raystx-tests")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_SECRET)
    args = ArgsWithToken(
        output_dir=str(tmp_path), run_name="wb-direct", report_to="wandb", hub_token=FAKE_SECRET
    )
    (cb,) = integration_callbacks(args)
    assert isinstance(cb, WandbCallback)
    cb.on_train_begin(args, TrainerState(max_steps=4))
    cb.on_log(args, TrainerState(global_step=2), {"step": 2, "loss": 3.0, "epoch": 0.5})
    cb.on_log(args, TrainerState(global_step=4), {"step": 4, "loss": 1.5, "eval_dev_acc": 0.5})
    cb.on_train_end(args, TrainerState(global_step=4))
    run_file = only_wandb_run_file(tmp_path)
    history, config, name = read_wandb_run(run_file)
    assert name == "wb-direct"
    assert history[2]["train/loss"] == 3.0 and history[2]["train/epoch"] == 0.5
    assert history[4]["train/loss"] == 1.5 and history[4]["eval/dev_acc"] == 0.5
    assert config["learning_rate"] == args.learning_rate and "hub_token" not in config
    for path in (tmp_path / "wandb").rglob("*"):
        if path.is_file():
            assert FAKE_SECRET.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------------------------------------ end to end
def test_training_run_reports_loss_and_evaluator_metrics_to_tensorboard_and_wandb(
    monkeypatch, tiny_bert_dir, tmp_path
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HF_TOKEN", FAKE_SECRET)
    model = SentenceTransformer(str(tiny_bert_dir))
    loss = MultipleNegativesRankingLoss(model)
    data = datasets.Dataset.from_dict({"anchor": make_sentences(32, 1), "positive": make_sentences(32, 2)})
    evaluator = EmbeddingSimilarityEvaluator(
        make_sentences(8, 3), make_sentences(8, 4), [i / 7 for i in range(8)], name="dev", write_csv=False
    )
    out = tmp_path / "run"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out),
        run_name="e2e",
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        report_to=["tensorboard", "wandb"],
        seed=5,
    )
    runtime = LocalRuntime(out, device="cpu")
    payload = WorkerPayload(
        model=model,
        losses={"train": loss},
        args=args,
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": loss.contract.label},
        evaluator=evaluator,
    )
    result = train_worker(payload, runtime)
    history = result["log_history"]
    losses = {h["step"]: h["loss"] for h in history}
    evals = {h["step"]: h["eval_dev_spearman_cosine"] for h in history if "eval_dev_spearman_cosine" in h}
    assert sorted(losses) == [1, 2, 3, 4] and sorted(evals) == [2, 4]

    scalars = read_tensorboard(out / "runs" / "e2e")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    for step, value in scalars["train/loss"]:
        assert value == pytest.approx(losses[step], rel=1e-6)
    assert [s for s, _ in scalars["eval/dev_spearman_cosine"]] == [2, 4]
    for step, value in scalars["eval/dev_spearman_cosine"]:
        assert value == pytest.approx(evals[step], rel=1e-6, abs=1e-7)

    wb_history, config, name = read_wandb_run(only_wandb_run_file(out))
    assert name == "e2e" and config["max_steps"] == 4
    for step in (1, 2, 3, 4):
        assert wb_history[step]["train/loss"] == pytest.approx(losses[step], rel=1e-12)
    for step in (2, 4):
        assert wb_history[step]["eval/dev_spearman_cosine"] == pytest.approx(evals[step], rel=1e-12)
    assert "eval/dev_spearman_cosine" not in wb_history[1]
    for path in (out / "wandb").rglob("*"):
        if path.is_file():
            assert FAKE_SECRET.encode() not in path.read_bytes(), path
