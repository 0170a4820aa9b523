"""Loading under FSDP without a full copy per worker (``raystx.train.fsdp_meta_load``), on 2 gloo processes
without Ray: each rank shards a meta-device copy of the model, only rank 0 reads the saved weights, and every
rank ends with its shards of exactly those weights (full tensors equal the saved ones, encode equals the saved
model's), holding about half the parameters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import make_sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))

from dist_harness import run_distributed  # noqa: E402

TEXTS = make_sentences(5, seed=4)


def _rank(rank: int, world_size: int, model_dir: str) -> dict:
    from torch.distributed.tensor import DTensor

    from raystx.models import SentenceTransformer
    from raystx.train import fsdp_meta_load
    from raystx.train.fsdp_options import FsdpOptions
    from raystx.train.strategy_fsdp import FsdpStrategy

    reads = []
    original = fsdp_meta_load._read_full_state
    fsdp_meta_load._read_full_state = lambda *a: reads.append(1) or original(*a)

    # the skeleton a driver would ship: parameters on the meta device (here made from a model with other
    # weights, so that nothing but load_sharded can give the saved ones)
    torch.manual_seed(123 + rank)
    other = SentenceTransformer(model_dir, device="cpu")
    with torch.no_grad():
        for p in other.parameters():
            p.normal_()
    skeleton = fsdp_meta_load.meta_copy(other)
    del other
    assert all(p.is_meta for p in skeleton.parameters())
    FsdpStrategy(skeleton, {}, FsdpOptions(), torch.device("cpu"), rank)
    fsdp_meta_load.load_sharded(skeleton, model_dir, torch.device("cpu"))
    local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in skeleton.parameters())
    full = {
        n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
        for n, p in skeleton.named_parameters()
    }
    embeddings = skeleton.encode(TEXTS, convert_to_tensor=True)  # every rank runs the sharded forward
    return {"reads": len(reads), "local": local, "full": full, "embeddings": embeddings}


def test_each_rank_loads_only_its_shards_and_only_rank0_reads_the_weights(tmp_path, tiny_bert_dir):
    from raystx.models import SentenceTransformer

    saved = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    saved.save(str(tmp_path / "model"))
    results = run_distributed(_rank, world_size=2, args=(str(tmp_path / "model"),), timeout=300)
    assert [r["reads"] for r in results] == [1, 0]
    total = sum(p.numel() for p in saved.parameters())
    assert all(r["local"] < 0.6 * total for r in results)  # each rank holds about half
    expected = saved.encode(TEXTS, convert_to_tensor=True)
    for result in results:
        for name, value in saved.named_parameters():
            torch.testing.assert_close(result["full"][name], value, rtol=0, atol=0)
        torch.testing.assert_close(result["embeddings"], expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # CI keeps the shard-loading test
def test_the_loop_trains_from_a_meta_payload_like_from_the_full_model(tmp_path, tiny_bert_dir):
    """``WorkerPayload.initial_weights`` with a meta copy of the model (and losses sharing it): 2-rank FSDP
    training gives the same losses and weights as the payload with the full model."""
    from fsdp_harness import run_loop

    args = dict(
        max_steps=3, per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=1, save_strategy="no",
        seed=1, optim="adamw_torch", fsdp=True,
    )  # fmt: skip
    spec = dict(model_dir=str(tiny_bert_dir), loss="mnrl", args=args)
    meta = run_loop(2, dict(spec, out=str(tmp_path / "meta"), meta_load=True))
    full = run_loop(2, dict(spec, out=str(tmp_path / "full")))
    assert len(meta["losses"]) == 3 and meta["losses"] == full["losses"]
    for key, value in full["weights"].items():
        torch.testing.assert_close(
            meta["weights"][key], value, rtol=0, atol=0, msg=lambda m, k=key: f"{k}: {m}"
        )


def test_meta_loading_without_fsdp_is_refused_naming_the_option(tiny_bert_dir):
    import pytest

    from raystx.models import SentenceTransformer
    from raystx.train.fsdp_meta_load import load_sharded, meta_payload
    from raystx.train.strategy import ReplicatedStrategy

    model, losses = meta_payload(SentenceTransformer(str(tiny_bert_dir), device="cpu"), {})
    with pytest.raises(ValueError, match="initial_weights.*fsdp=True"):
        load_sharded(model, str(tiny_bert_dir), torch.device("cpu"), ReplicatedStrategy(model, losses))
