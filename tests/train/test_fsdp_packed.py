"""The packed (padding-free) forward under FSDP, on 2 gloo ranks running the real per-worker loop (no Ray):
training with it gives the losses and weights of the padded forward under FSDP (1e-5), for a BERT encoder (its
packed layer registered as each sharded layer's FSDP forward method) and a Qwen3 decoder (the unchanged Hugging
Face layers on one packed row), and the runs really took the packed path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fsdp_harness import run_loop

BASE = dict(
    max_steps=3, per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=1, save_strategy="no",
    seed=1, optim="adamw_torch", fsdp=True,
)  # fmt: skip


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory) -> Path:
    from raystx.testing_decoder import build_tiny_decoder

    return build_tiny_decoder(tmp_path_factory.mktemp("qwen3"), "qwen3")


def _compare(tmp_path: Path, model_dir: Path, pooling: str, **extra) -> None:
    spec = dict(model_dir=str(model_dir), loss="mnrl", pooling=pooling, args=dict(BASE, **extra))
    packed = run_loop(2, dict(spec, out=str(tmp_path / "packed")))
    padded = run_loop(2, dict(spec, out=str(tmp_path / "padded"), packed=False))
    assert packed["packed"] and not padded["packed"]
    assert len(packed["losses"]) == BASE["max_steps"]
    torch.testing.assert_close(
        torch.tensor(packed["losses"]), torch.tensor(padded["losses"]), rtol=0, atol=1e-5
    )
    for key, value in padded["weights"].items():
        torch.testing.assert_close(
            packed["weights"][key], value, rtol=0, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}"
        )


def test_packed_bert_under_fsdp_trains_like_padded(tmp_path, tiny_bert_dir):
    _compare(tmp_path, tiny_bert_dir, "mean")


@pytest.mark.slow  # CI budget: the packed BERT run above stays in CI; decoders run the HF layers
def test_packed_qwen3_under_fsdp_trains_like_padded(tmp_path, qwen3_dir):
    _compare(tmp_path, qwen3_dir, "lasttoken")


@pytest.mark.slow
def test_packed_bert_under_fsdp_with_activation_checkpointing(tmp_path, tiny_bert_dir):
    _compare(tmp_path, tiny_bert_dir, "mean", gradient_checkpointing=True)


def test_packing_is_switched_off_where_fsdp_units_sit_inside_a_layer(tiny_bert_dir):
    """Wrapping the attention modules instead of the layers: the packed layer would read sharded weights, so
    the strategy keeps the padded forward (single rank, so no Ray or second process is needed)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))
    from dist_harness import run_distributed

    assert run_distributed(_inner_units_rank, world_size=1, args=(str(tiny_bert_dir),), timeout=120) == [
        False
    ]


def _inner_units_rank(rank: int, world_size: int, model_dir: str) -> bool:
    from fsdp_harness import build_model

    from raystx.train.fsdp_options import FsdpOptions
    from raystx.train.strategy_fsdp import FsdpStrategy

    model = build_model(model_dir)
    options = FsdpOptions(transformer_layer_cls_to_wrap=("BertAttention",))
    FsdpStrategy(model, {}, options, torch.device("cpu"), rank)
    return bool(model[0].packed)
