"""Training a LoRA adapter in one process (no Ray): only the adapter trains, checkpoints hold only the adapter and
its optimizer state, a stopped run resumes exactly, and the YAML ``model.adapter`` section is checked early."""

from __future__ import annotations

import copy
from pathlib import Path

import datasets
import pytest
import torch
from conftest import make_sentences
from safetensors import safe_open

from raystx.config import ConfigError, load_config
from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.models.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, train_worker

peft = pytest.importorskip("peft")


def _payload(tmp_path: Path, model, loss=None, **args) -> WorkerPayload:
    data = datasets.Dataset.from_dict({"anchor": make_sentences(48, 1), "positive": make_sentences(48, 2)})
    defaults = dict(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=8,
        logging_steps=1,
        save_steps=2,
        learning_rate=1e-2,
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


def _lora_model(tiny_bert_dir) -> SentenceTransformer:
    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.add_adapter(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    return model


class _StopAfter(LocalRuntime):
    """Crashes the run right after the checkpoint of ``step`` was persisted."""

    def __init__(self, output_dir, step: int) -> None:
        super().__init__(output_dir)
        self.step = step

    def report(self, metrics, checkpoint_dir, checkpoint_name):
        super().report(metrics, checkpoint_dir, checkpoint_name)
        if metrics["step"] == self.step:
            raise KeyboardInterrupt("stopped")


def test_adapter_only_checkpoints_and_exact_resume(tmp_path, tiny_bert_dir):
    base = _lora_model(tiny_bert_dir)
    frozen_before = {n: p.detach().clone() for n, p in base.named_parameters() if not p.requires_grad}
    adapter_before = {n: p.detach().clone() for n, p in base.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in adapter_before.values()) == 4 * 4 * (32 + 32)  # r * (in + out) * 4 linears

    full = copy.deepcopy(base)
    train_worker(_payload(tmp_path / "full", full), LocalRuntime(tmp_path / "full"))
    for name, value in full.named_parameters():
        if name in frozen_before:
            assert torch.equal(value, frozen_before[name]), name  # the base model did not move
    assert all(
        (dict(full.named_parameters())[n] - v).abs().max() > 1e-4 for n, v in adapter_before.items()
    )  # every adapter tensor trained

    checkpoint = tmp_path / "full" / "checkpoint-6"
    model_dir = {p.name for p in (checkpoint / "model").iterdir()}
    assert {ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME} <= model_dir and "model.safetensors" not in model_dir
    with safe_open(str(checkpoint / "model" / ADAPTER_WEIGHTS_NAME), "pt") as f:
        assert len(list(f.keys())) == 8 and all("lora_" in k for k in f.keys())
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert len(optimizer["state"]) == len(adapter_before) == 8  # AdamW state for the adapter only
    shapes = sorted(tuple(s["exp_avg"].shape) for s in optimizer["state"].values())
    assert shapes == sorted(tuple(v.shape) for v in adapter_before.values())

    with pytest.raises(KeyboardInterrupt):
        train_worker(_payload(tmp_path / "run", copy.deepcopy(base)), _StopAfter(tmp_path / "run", 4))
    resumed = copy.deepcopy(base)  # the initial adapter: the trained one must come from checkpoint-4
    runtime = LocalRuntime(tmp_path / "run")
    train_worker(_payload(tmp_path / "run", resumed, resume_from_checkpoint=True), runtime)
    assert runtime.reports[0]["step"] == 5
    expected = full.state_dict()
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def _config(tmp_path: Path, tiny_bert_dir: Path, adapter: str) -> Path:
    data = tmp_path / "pairs.csv"
    data.write_text(
        "anchor,positive\n"
        + "\n".join(f"{a},{b}" for a, b in zip(make_sentences(8, 1), make_sentences(8, 2)))
    )
    path = tmp_path / "config.yaml"
    path.write_text(
        f"model:\n  name_or_path: {tiny_bert_dir}\n  adapter: {adapter}\n"
        f"train_data:\n  pairs:\n    path: {data}\n"
        "loss:\n  type: MultipleNegativesRankingLoss\n"
        f"args:\n  output_dir: {tmp_path / 'out'}\n"
    )
    return path


def test_config_adapter_section_builds_a_lora_model_and_fails_early_on_bad_keys(tmp_path, tiny_bert_dir):
    from raystx.train.build import build_model

    good = load_config(
        _config(tmp_path, tiny_bert_dir, "{type: lora, r: 2, lora_alpha: 4, target_modules: [query]}")
    )
    model = build_model(good)
    assert model.active_adapters() == ["default"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * 2 * (32 + 32)

    with pytest.raises(
        ConfigError, match=r"model\.adapter.*model\.adapter\.rank is not a field of peft\.LoraConfig"
    ):
        load_config(_config(tmp_path, tiny_bert_dir, "{type: lora, rank: 2}"))
    with pytest.raises(ConfigError, match=r"model\.adapter\.type 'lorra' is not a PEFT method"):
        load_config(_config(tmp_path, tiny_bert_dir, "{type: lorra}"))
    with pytest.raises(ConfigError, match=r"model\.adapter.*type"):
        load_config(_config(tmp_path, tiny_bert_dir, "{r: 2}"))
    wrong_layers = load_config(_config(tmp_path, tiny_bert_dir, "{type: lora, target_modules: [q_proj]}"))
    with pytest.raises(ConfigError, match=r"model\.adapter \(lora\) does not fit this model.*q_proj"):
        build_model(wrong_layers)


def test_config_adapter_without_peft_names_the_extra(tmp_path, tiny_bert_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ConfigError, match=r"model\.adapter.*pip install 'raystx\[peft\]'"):
        load_config(_config(tmp_path, tiny_bert_dir, "{type: lora}"))


def test_lora_composes_with_gradient_checkpointing_and_gradcache(tmp_path, tiny_bert_dir):
    """The adapter gets the same updates with activation checkpointing and with CachedMNRL (GradCache re-runs
    each mini-batch's forward) as with the plain forward and MNRL."""
    from raystx.losses import CachedMultipleNegativesRankingLoss

    base = _lora_model(tiny_bert_dir)
    runs = {}
    for name in ("plain", "checkpointing", "gradcache"):
        model = copy.deepcopy(base)
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=3) if name == "gradcache" else None
        extra = {"gradient_checkpointing": True} if name == "checkpointing" else {}
        payload = _payload(tmp_path / name, model, loss, max_steps=3, save_strategy="no", **extra)
        train_worker(payload, LocalRuntime(tmp_path / name))
        runs[name] = model.get_adapter_state_dict()
    assert all(
        (runs["plain"][k] - base.get_adapter_state_dict()[k]).abs().max() > 1e-4 for k in runs["plain"]
    )
    for name in ("checkpointing", "gradcache"):
        for key, value in runs[name].items():
            torch.testing.assert_close(value, runs["plain"][key], rtol=0, atol=1e-5, msg=f"{name} {key}")


def test_shipped_lora_job_config_builds_a_minilm_adapter(minilm_dir, monkeypatch, tmp_path):
    from raystx.train.build import build_model

    monkeypatch.setenv("RAYSTX_DATA_DIR", str(tmp_path))
    config = load_config(Path(__file__).resolve().parents[2] / "jobs" / "configs" / "train_lora.yaml")
    assert config.model.adapter.merge_on_save
    model = build_model(config)
    # r * (in + out) for query, key and value (384 x 384) in each of MiniLM's 6 layers
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 8 * (384 + 384) * 3 * 6
