"""Per-worker memory of parameters + gradients + optimizer state: replicated vs FSDP2 vs a LoRA adapter, 2 workers.

    PYTHONPATH=. python bench/memory_modes.py                 # BERT-base shape (~110M parameters)
    PYTHONPATH=. python bench/memory_modes.py --hidden 256 --layers 4 --steps 2   # a quick check

Each mode builds the same random BERT-shaped sentence-transformers model from a config (no download), runs
``--steps`` optimizer steps of MultipleNegativesRankingLoss (gathered negatives) on random token batches through
raystx's parameter strategy (``build_strategy``: the code the training loop uses), and reports on rank 0 the bytes
this worker holds in parameters, gradients (just before ``zero_grad``) and AdamW state, plus tokens/s of the
timed steps (all workers). Ratios are against replicated training in the same run. FSDP holds 1/N of each, plus
nothing else between steps (the all-gathered blocks are freed after use); the issue's target is <= 0.6x.
LoRA (``model.add_adapter(LoraConfig(r=8, target_modules=[query, key, value, dense]))``, replicated) keeps the
frozen base weights but gives gradients and AdamW state to the adapter only; the target is <= 0.35x. Activations
are not counted (about the same in every mode).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "losses"))


def _write_model(hidden: int, layers: int, seed: int = 0) -> str:
    """A random BERT-shaped model and a WordPiece tokenizer in a temporary folder (written once, before the
    workers start: transformers saves only on rank 0 once a process group exists)."""
    import tempfile

    from transformers import BertConfig, BertModel

    from raystx.testing import build_wordpiece_tokenizer, write_wordpiece_vocab

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 1),
        intermediate_size=4 * hidden,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    folder = Path(tempfile.mkdtemp(prefix="raystx-bench-"))
    BertModel(config).save_pretrained(folder)
    build_wordpiece_tokenizer(write_wordpiece_vocab(folder / "vocab.txt")).save_pretrained(folder)
    return str(folder)


def _model(folder: str):
    from raystx.models import Pooling, SentenceTransformer, Transformer

    word = Transformer(folder)
    return SentenceTransformer(modules=[word, Pooling(word.get_word_embedding_dimension(), "mean")])


def _local_bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            continue
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def _bench_rank(rank: int, world: int, mode: str, folder: str, steps: int, batch: int, length: int):
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.optim import build_optimizer
    from raystx.train.strategy import build_strategy

    model = _model(folder)
    if mode == "lora":
        from peft import LoraConfig

        model.add_adapter(LoraConfig(r=8, lora_alpha=16, target_modules=["query", "key", "value", "dense"]))
    losses = {"train": MultipleNegativesRankingLoss(model)}
    args = SentenceTransformerTrainingArguments(fsdp=mode == "fsdp", optim="adamw_torch", learning_rate=1e-5)
    strategy = build_strategy(args, model, losses, torch.device("cpu"), rank)
    optimizer = build_optimizer(strategy.named_parameters(), args)
    gen = torch.Generator().manual_seed(rank)

    def features() -> dict[str, Any]:
        ids = torch.randint(1000, 30000, (batch, length), generator=gen)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }

    grads = 0
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        loss = losses["train"]([features(), features()], None)
        loss.backward()
        strategy.sync(False)
        strategy.clip_grad_norm(1.0)
        grads = _local_bytes(p.grad for _, p in strategy.named_parameters())
        optimizer.step()
        strategy.zero_grad(optimizer)
    elapsed = time.perf_counter() - started
    held = {id(p): p for p in model.parameters()}  # frozen ones too (a LoRA base is held, not trained)
    held.update({id(p): p for _, p in strategy.named_parameters()})
    params = _local_bytes(held.values())
    state = _local_bytes(v for s in optimizer.state.values() for v in s.values())
    tokens = steps * 2 * batch * length * world
    count = sum(p.numel() for p in model.parameters())
    return {
        "params": params,
        "grads": grads,
        "optim": state,
        "tokens_per_s": tokens / elapsed,
        "numel": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    ns = parser.parse_args()
    from dist_harness import run_distributed

    results = {}
    folder = _write_model(ns.hidden, ns.layers)
    for mode in ("replicated", "fsdp", "lora"):
        args = (mode, folder, ns.steps, ns.batch, ns.length)
        results[mode] = run_distributed(_bench_rank, world_size=ns.workers, args=args, timeout=3600)[0]
    base = results["replicated"]
    base_total = base["params"] + base["grads"] + base["optim"]
    print(
        f"model: BERT hidden={ns.hidden} layers={ns.layers}, {base['numel'] / 1e6:.1f}M parameters, "
        f"{ns.workers} workers (gloo, CPU), batch {ns.batch}x{ns.length} tokens x 2 columns per worker"
    )
    print(
        f"{'mode':<11} {'params MB':>10} {'grads MB':>9} {'adamw MB':>9} {'total MB':>9} {'ratio':>6} "
        f"{'tokens/s':>9} {'ratio':>6}"
    )
    for mode, r in results.items():
        total = r["params"] + r["grads"] + r["optim"]
        print(
            f"{mode:<11} {r['params'] / 2**20:>10.1f} {r['grads'] / 2**20:>9.1f} {r['optim'] / 2**20:>9.1f} "
            f"{total / 2**20:>9.1f} {total / base_total:>6.2f} {r['tokens_per_s']:>9.0f} "
            f"{r['tokens_per_s'] / base['tokens_per_s']:>6.2f}"
        )


if __name__ == "__main__":
    main()
