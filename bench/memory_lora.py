"""Per-worker bytes of parameters + gradients + AdamW state: full (replicated) training vs a LoRA adapter.

    python bench/memory_lora.py [--layers 12] [--hidden 768] [--rank 8]

Builds a BERT-base-shaped random encoder (~110M parameters with the defaults) as a raystx SentenceTransformer,
runs one real training step through raystx's own parts (``ReplicatedStrategy``, ``build_optimizer`` with AdamW,
MNRL on a tiny batch) and sums the bytes of every distinct tensor a worker then holds for training state:
parameters, ``.grad`` and the optimizer's state. Replicated training holds all three for every parameter; with
``add_adapter(LoraConfig(r, target_modules=[query, key, value, dense]))`` the base weights stay (frozen, no
gradient, no AdamW state) and only the adapter has gradients and optimizer state. Activations are not counted
(they are the same in both modes up to the adapter's small extra). ``measure(mode)`` returns the numbers as a dict
for ``bench/memory.py`` to fold in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _model(directory: Path, layers: int, hidden: int):
    """A random BERT-shaped SentenceTransformer (vocab 30522, ``layers`` x ``hidden``) written to ``directory``."""
    import torch
    from transformers import BertConfig, BertModel

    from raystx.models import SentenceTransformer
    from raystx.testing import build_wordpiece_tokenizer, write_wordpiece_vocab

    tokenizer = build_wordpiece_tokenizer(write_wordpiece_vocab(directory / "vocab.txt"))
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return SentenceTransformer(str(directory), device="cpu")


def _bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None or t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def measure(mode: str, layers: int = 12, hidden: int = 768, rank: int = 8) -> dict[str, float]:
    """One training step in ``mode`` ("replicated" or "lora"); MiB of params, grads, optimizer state per worker."""
    from peft import LoraConfig

    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.testing import make_sentences
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.optim import build_optimizer
    from raystx.train.strategy import ReplicatedStrategy

    with tempfile.TemporaryDirectory(prefix="raystx-bench-lora-") as tmp:
        model = _model(Path(tmp), layers, hidden)
        if mode == "lora":
            model.add_adapter(
                LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["query", "key", "value", "dense"])
            )
        loss = MultipleNegativesRankingLoss(model)
        strategy = ReplicatedStrategy(model, {"train": loss})
        args = SentenceTransformerTrainingArguments(output_dir=tmp, optim="adamw_torch")
        optimizer = build_optimizer(strategy.named_parameters(), args)
        texts = make_sentences(8, 1)
        features = [model.tokenize(texts[:4]), model.tokenize(texts[4:])]
        loss(features, None).backward()
        strategy.sync(False)
        optimizer.step()
        params = list(model.parameters())
        state = [v for s in optimizer.state.values() for v in s.values() if hasattr(v, "data_ptr")]
        mib = 2**20
        out = {
            "params_M": sum(p.numel() for p in params) / 1e6,
            "trainable_M": sum(p.numel() for p in params if p.requires_grad) / 1e6,
            "params_MiB": _bytes(params) / mib,
            "grads_MiB": _bytes(p.grad for p in params) / mib,
            "optimizer_MiB": _bytes(state) / mib,
        }
        out["total_MiB"] = out["params_MiB"] + out["grads_MiB"] + out["optimizer_MiB"]
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--rank", type=int, default=8)
    a = parser.parse_args()
    rows = {mode: measure(mode, a.layers, a.hidden, a.rank) for mode in ("replicated", "lora")}
    for mode, row in rows.items():
        print(f"{mode:>10}: " + "  ".join(f"{k}={v:.2f}" for k, v in row.items()))
    ratio = rows["lora"]["total_MiB"] / rows["replicated"]["total_MiB"]
    print(f"lora / replicated (params + grads + AdamW state per worker): {ratio:.3f}  (target <= 0.35)")
    print(json.dumps({"memory_lora_ratio": round(ratio, 4), **{m: r for m, r in rows.items()}}))


if __name__ == "__main__":
    main()
