"""GPU check: the raystx per-worker loop vs a plain PyTorch loop, bf16, batch 128, MiniLM-shaped model.

    bash bench/gpu_check.sh                 # on a single-GPU machine with torch + transformers (no Ray needed)
    python bench/gpu_check.py --device cpu --batch 8 --steps 2 --warmup 1   # a quick CPU dry run

The model has all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads) with random weights, so nothing large
has to be brought to the machine. Prints pairs/s of both loops, their ratio, and the model FLOP utilization
(6 x non-embedding params x tokens + attention, over the GPU's bf16 dense peak).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}


def load_texts(path: Path | None, n: int, seed: int = 0) -> list[tuple[str, str]]:
    if path and path.is_file():
        csv.field_size_limit(sys.maxsize)
        with open(path, encoding="utf-8", newline="") as handle:
            rows = [
                (r["anchor"], r["positive"])
                for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            ]
        if len(rows) >= n:
            return rows[:n]
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(2000)]
    make = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(6, 30)))  # noqa: E731
    return [(make(), make()) for _ in range(n)]


def build_model_dir(tokenizer_dir: Path | None, out: Path) -> Path:
    """A random MiniLM-shaped BERT saved with a tokenizer (the real MiniLM tokenizer if available)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    if tokenizer_dir and (tokenizer_dir / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    else:
        from raystx.testing import build_wordpiece_tokenizer, write_wordpiece_vocab

        out.mkdir(parents=True, exist_ok=True)
        tokenizer = build_wordpiece_tokenizer(write_wordpiece_vocab(out / "vocab.txt"))
    config = BertConfig(
        vocab_size=max(len(tokenizer), 30522),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def plain_loop(model_dir: Path, pairs, batch: int, steps: int, warmup: int, device: str, max_len: int):
    """Hand-written loop with the same math: tokenize, encode, mean-pool, MNRL (cos x 20, CE), fused AdamW, bf16."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from raystx.data.schedule import EpochPlan

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
    plan = EpochPlan({"train": len(pairs)}, batch, 1, seed=42, epoch=0)
    tokens = 0

    def embed(texts):
        nonlocal tokens
        f = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(device)
        tokens += f["input_ids"].numel()
        out = model(**f).last_hidden_state
        mask = f["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    start = None
    for step in range(warmup + steps):
        if step == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start, tokens = time.perf_counter(), 0
        _, rows = plan.rows(step, 0)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            ea = embed([pairs[i][0] for i in rows])
            ep = embed([pairs[i][1] for i in rows])
            scores = (
                torch.nn.functional.normalize(ea, dim=-1) @ torch.nn.functional.normalize(ep, dim=-1).T * 20
            )
            loss = torch.nn.functional.cross_entropy(scores.float(), torch.arange(len(rows), device=device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return steps * batch / seconds, tokens / steps


def raystx_loop(
    model_dir: Path, pairs, batch: int, steps: int, warmup: int, device: str, max_len: int
) -> float:
    """The raystx per-worker loop in one process (LocalRuntime), bf16."""
    from raystx.data.memory import InMemorySource
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.runtime import LocalRuntime
    from raystx.train.worker import WorkerPayload, train_worker

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = max_len
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            max_steps=warmup + steps,
            per_device_train_batch_size=batch,
            learning_rate=2e-5,
            bf16=True,
            logging_steps=warmup,
            save_strategy="no",
            seed=42,
        )
        source = InMemorySource({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
        runtime = LocalRuntime(tmp, device=device)
        payload = WorkerPayload(
            model=model,
            losses={"train": MultipleNegativesRankingLoss(model)},
            args=args,
            sources={"train": source},
            label_kinds={"train": "none"},
        )
        train_worker(payload, runtime)
    marks = {r["step"]: r["elapsed_s"] for r in runtime.reports if "elapsed_s" in r}
    return steps * batch / (marks[warmup + steps] - marks[warmup])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--tokenizer-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=REPO / "bench" / ".gpu_data.tsv")
    args = parser.parse_args()

    import torch
    import transformers

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {name}; torch {torch.__version__}; transformers {transformers.__version__}")
    pairs = load_texts(args.data, (args.steps + args.warmup + 1) * args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(args.tokenizer_dir, Path(tmp) / "minilm-shaped")
        from transformers import AutoModel

        m = AutoModel.from_pretrained(str(model_dir))
        n_params = sum(p.numel() for p in m.parameters())
        n_embed = sum(p.numel() for n, p in m.named_parameters() if "embeddings" in n)
        cfg = m.config
        del m
        plain, tokens_per_step = plain_loop(
            model_dir, pairs, args.batch, args.steps, args.warmup, args.device, args.max_len
        )
        ours = raystx_loop(model_dir, pairs, args.batch, args.steps, args.warmup, args.device, args.max_len)

    seq = tokens_per_step / (2 * args.batch)  # mean padded length per text
    flops_per_step = (
        6 * (n_params - n_embed) * tokens_per_step
        + 12 * cfg.num_hidden_layers * cfg.hidden_size * (seq**2) * 2 * args.batch
    )
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    rows = [
        ("plain PyTorch loop, bf16", f"{plain:.1f} pairs/s", "1.00x"),
        ("raystx loop (LocalRuntime), bf16", f"{ours:.1f} pairs/s", f"{ours / plain:.2f}x"),
    ]
    print(
        f"\nMiniLM-shaped random BERT ({n_params / 1e6:.1f}M params), MNRL, batch {args.batch}, "
        f"max_len {args.max_len}, mean padded length {seq:.1f}, {args.steps} steps after {args.warmup} warm-up"
    )
    for variant, value, ratio in rows:
        print(f"  {variant:<36} {value:>16} {ratio:>7}")
    for label, rate in (("plain", plain), ("raystx", ours)):
        achieved = flops_per_step * rate / args.batch / 1e12
        mfu = f"{100 * achieved / peak:.1f}% of {peak:.0f} TFLOP/s" if peak else "n/a (unknown peak)"
        print(f"  MFU {label:<7} {achieved:8.1f} TFLOP/s  {mfu}")


if __name__ == "__main__":
    main()
