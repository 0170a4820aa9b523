"""GPU check: raystx's per-worker loop (padded and packed) vs a plain PyTorch loop, bf16, three model shapes.

    bash bench/gpu_check.sh                 # on a single-GPU machine with torch + transformers (no Ray needed)
    python bench/gpu_check.py --device cpu --tiny                  # a quick CPU dry run of every section

Sections (``--sections``, default all, in this order):

* ``bge``: a bge-base-shaped encoder (BERT, 12 layers, hidden 768, 12 heads), mean pooling, MNRL, on pairs of
  variable length (short anchors, longer positives: real retrieval data's padding);
* ``qwen3``: a Qwen3-0.6B-shaped decoder (28 layers, hidden 1024, 16/8 heads, head_dim 128, vocab 151936),
  last-token pooling, MNRL, on the same kind of pairs, then every text exactly ``--decoder-len`` (256) tokens
  long for the MFU target;
* ``minilm``: the all-MiniLM-L6-v2 shape (6 layers, hidden 384), the first check this script made.

Weights are random (from configs), so nothing large has to reach the machine; the tokenizers are small WordPiece
ones written on the spot (``--tokenizer-dir`` uses a real BERT tokenizer for the encoders instead). Each section
prints pairs/s of the plain loop (AutoModel, autocast bf16, hand-written pooling and MNRL, fused AdamW), of the
raystx loop (``LocalRuntime``, ``bf16=True``) with the padded Hugging Face forward and with the packed
(padding-free) forward, their ratios to the plain loop, and the model FLOP utilization: useful FLOPs (6 x
non-embedding parameters x real tokens, plus attention over real tokens, causal halved) over the GPU's bf16 dense
peak. Targets (issue 15): raystx packed >= 1.3x the plain loop; MFU >= 35% on the 0.6B decoder at 256 tokens.
The machine has no Ray and no package registry: this script imports only torch, transformers, tokenizers and
raystx modules that need neither Ray nor pydantic.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}
TARGET_PACKED_RATIO = 1.3
TARGET_MFU = 0.35


# ------------------------------------------------------------------------------------------------ data
def load_pairs(path: Path | None, n: int) -> list[tuple[str, str]] | None:
    """(anchor, positive) rows of a TSV with those columns, when it has at least ``n`` rows."""
    if not (path and path.is_file()):
        return None
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [
            (r["anchor"], r["positive"])
            for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    return rows[:n] if len(rows) >= n else None


def synthetic_pairs(n: int, seed: int, anchor_words: float, positive_words: float, fixed: int = 0):
    """Pairs of texts over raystx's test vocabulary: anchors and positives of log-normal word counts (medians
    ``anchor_words`` / ``positive_words``), or every text ``fixed`` words long (longer than any max length)."""
    from raystx.testing import WORDS

    rng = random.Random(seed)

    def text(median: float) -> str:
        count = fixed or max(2, int(rng.lognormvariate(math.log(median), 0.6)))
        return " ".join(rng.choice(WORDS) for _ in range(count))

    return [(text(anchor_words), text(positive_words)) for _ in range(n)]


# ------------------------------------------------------------------------------------------------ models
@dataclass
class Shape:
    """A model shape to check: how to build it, how it pools, and what its FLOPs are."""

    name: str
    kind: str  # "encoder" (BERT) or "decoder" (Qwen3)
    config: dict[str, Any]
    pooling: str  # "mean" or "lasttoken"


def shapes(tiny: bool) -> dict[str, Shape]:
    """The three shapes; ``tiny`` shrinks each to a few layers of width 64 (the CPU dry run)."""
    bge = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    minilm = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    qwen3 = dict(
        hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        intermediate_size=3072, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True,
        rope_theta=1000000.0, rms_norm_eps=1e-6,
    )  # fmt: skip
    if tiny:
        small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
        bge, minilm = dict(small), dict(small)
        qwen3 = dict(qwen3, **small, num_key_value_heads=2, head_dim=16, vocab_size=4096)
    return {
        "bge": Shape("bge-base-shaped BERT", "encoder", bge, "mean"),
        "qwen3": Shape("Qwen3-0.6B-shaped decoder", "decoder", qwen3, "lasttoken"),
        "minilm": Shape("MiniLM-L6-shaped BERT", "encoder", minilm, "mean"),
    }


def build_model_dir(shape: Shape, out: Path, tokenizer_dir: Path | None, device: str) -> Path:
    """Write ``shape`` with random weights (initialised on ``device``: fast for 0.6B) and a tokenizer."""
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    if shape.kind == "decoder":
        from raystx.testing_decoder import build_decoder_tokenizer

        tokenizer = build_decoder_tokenizer("qwen3")
        fields = dict(shape.config, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        config = transformers.Qwen3Config(**fields)
    else:
        if tokenizer_dir and (tokenizer_dir / "tokenizer.json").is_file():
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
        else:
            from raystx.testing import build_wordpiece_tokenizer, write_wordpiece_vocab

            tokenizer = build_wordpiece_tokenizer(write_wordpiece_vocab(out / "vocab.txt"))
        config = transformers.BertConfig(
            vocab_size=max(len(tokenizer), 30522), max_position_embeddings=512, **shape.config
        )
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModel.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return out


@dataclass
class FlopModel:
    """What the FLOP count needs: non-embedding parameters, layers, attention width, causal or not."""

    params: int
    layers: int
    attention_width: int
    causal: bool

    @classmethod
    def of(cls, model_dir: Path, shape: Shape) -> FlopModel:
        import torch
        import transformers

        config = transformers.AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            model = transformers.AutoModel.from_config(config)
        skip = ("embeddings", "embed_tokens", "pooler")
        params = sum(p.numel() for n, p in model.named_parameters() if not any(s in n for s in skip))
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        width = config.num_attention_heads * head_dim
        return cls(params, config.num_hidden_layers, width, shape.kind == "decoder")

    def per_step(self, stats: StepStats) -> float:
        """Useful training FLOPs of one step (forward + backward = 3x forward)."""
        attention = 12 * self.layers * self.attention_width * stats.squares * (0.5 if self.causal else 1.0)
        return 6 * self.params * stats.real + attention


@dataclass
class StepStats:
    """Per-step token counts of the measured steps: real tokens, padded tokens, sum of squared real lengths."""

    real: float = 0.0
    padded: float = 0.0
    squares: float = 0.0


# ------------------------------------------------------------------------------------------------ loops
def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(
    model_dir: Path, pairs, batch: int, steps: int, warmup: int, device: str, max_len: int, pooling: str
):
    """Hand-written loop with the same math: tokenize, encode, pool, MNRL (cos x 20, CE), fused AdamW, bf16.
    Returns (pairs/s, StepStats of the measured steps)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from raystx.data.schedule import EpochPlan

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=device.startswith("cuda"))
    plan = EpochPlan({"train": len(pairs)}, batch, 1, seed=42, epoch=0)
    stats = StepStats()

    def embed(texts, count: bool):
        f = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(device)
        mask = f["attention_mask"]
        if count:
            lengths = mask.sum(1).double()
            stats.real += float(lengths.sum())
            stats.padded += mask.numel()
            stats.squares += float((lengths**2).sum())
        out = model(**f).last_hidden_state
        if pooling == "lasttoken":
            last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)  # last real token, either padding side
            return out[torch.arange(out.shape[0], device=out.device), last]
        m = mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1e-9)

    start = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        _, rows = plan.rows(step, 0)
        counting = step >= warmup
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            ea = embed([pairs[i][0] for i in rows], counting)
            ep = embed([pairs[i][1] for i in rows], counting)
            scores = F.normalize(ea, dim=-1) @ F.normalize(ep, dim=-1).T * 20
            loss = F.cross_entropy(scores.float(), torch.arange(len(rows), device=device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    seconds = time.perf_counter() - start
    per_step = StepStats(stats.real / steps, stats.padded / steps, stats.squares / steps)
    return steps * batch / seconds, per_step


def raystx_loop(
    model_dir: Path, pairs, batch: int, steps: int, warmup: int, device: str, max_len: int, pooling: str,
    packed: bool,
) -> float:  # fmt: skip
    """The raystx per-worker loop in one process (LocalRuntime), bf16; ``packed`` False forces the padded
    Hugging Face forward. Returns pairs/s over the steps after ``warmup``."""
    from raystx.data.memory import InMemorySource
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import Pooling, SentenceTransformer, Transformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.runtime import LocalRuntime
    from raystx.train.worker import WorkerPayload, train_worker

    word = Transformer(str(model_dir), max_seq_length=max_len)
    word.packed = packed
    model = SentenceTransformer(
        modules=[word, Pooling(word.get_word_embedding_dimension(), pooling)], device="cpu"
    )
    if packed and not word._use_packed(dict(word.tokenize(["a b", "a"]))):
        print(f"    (note: {type(word.auto_model).__name__} has no packed forward here; padded used)")
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            max_steps=warmup + steps,
            per_device_train_batch_size=batch,
            learning_rate=2e-5,
            bf16=True,
            logging_steps=math.gcd(warmup, steps),
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
    del model, payload
    return steps * batch / (marks[warmup + steps] - marks[warmup])


# ------------------------------------------------------------------------------------------------ report
@dataclass
class Run:
    """One measured variant: its label and pairs/s (None when it failed, with the reason)."""

    label: str
    rate: float | None
    error: str = ""


def _free() -> None:
    """Drop the last variant's model and optimizer from the GPU before the next one starts."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _measure(label: str, fn, *args, **kwargs) -> Run:
    import torch

    try:
        return Run(label, fn(*args, **kwargs))
    except torch.cuda.OutOfMemoryError:
        return Run(label, None, "out of GPU memory: lower the batch")
    finally:
        _free()


def report(
    title: str, runs: list[Run], stats: StepStats, batch: int, flops: FlopModel, peak: float | None,
    targets: dict[str, float],
) -> None:  # fmt: skip
    """Print the runs' pairs/s, ratios to the first (plain) run, MFU, and the targets met or missed."""
    padding = 1 - stats.real / stats.padded if stats.padded else 0.0
    print(f"\n{title}")
    print(
        f"  real tokens/step {stats.real:.0f}, padded {stats.padded:.0f} ({100 * padding:.0f}% padding); "
        f"useful {flops.per_step(stats) / 1e9:.1f} GFLOP/step"
    )
    base = runs[0].rate
    for run in runs:
        if run.rate is None:
            print(f"  {run.label:<30} {'failed':>14}   {run.error}")
            continue
        ratio = f"{run.rate / base:.2f}x" if base else "n/a"
        achieved = flops.per_step(stats) * run.rate / batch / 1e12
        mfu = f"MFU {100 * achieved / peak:5.1f}%" if peak else "MFU n/a (unknown peak)"
        print(f"  {run.label:<30} {run.rate:9.1f} pairs/s {ratio:>7}   {achieved:8.3f} TFLOP/s  {mfu}")
    by_label = {r.label: r.rate for r in runs}
    for name, target in targets.items():
        if name == "packed_ratio":
            ours, plain = by_label.get("raystx packed"), base
            value = ours / plain if ours and plain else None
            shown = "n/a" if value is None else f"{value:.2f}x"
            verdict = "n/a" if value is None else ("MET" if value >= target else "MISSED")
            print(f"  target: raystx packed >= {target:.1f}x plain loop: {shown}  {verdict}")
        elif name == "mfu":
            rate = max((r for r in by_label.values() if r), default=None)
            value = flops.per_step(stats) * rate / batch / 1e12 / peak if rate and peak else None
            shown = "n/a" if value is None else f"{100 * value:.1f}%"
            verdict = "n/a" if value is None else ("MET" if value >= target else "MISSED")
            print(f"  target: MFU >= {100 * target:.0f}% (best variant): {shown}  {verdict}")
    sys.stdout.flush()


def run_section(
    shape: Shape, pairs, batch: int, steps: int, warmup: int, device: str, max_len: int, work: Path,
    tokenizer_dir: Path | None, peak: float | None, targets: dict[str, float], model_dir: Path | None = None,
    title: str = "", variants: tuple[str, ...] = ("plain", "padded", "packed"),
) -> Path:  # fmt: skip
    """Build (or reuse) the model directory, run the variants, print the report; returns the directory."""
    if model_dir is None:
        started = time.perf_counter()
        model_dir = build_model_dir(shape, work / shape.name.split()[0], tokenizer_dir, device)
        print(f"\n[{shape.name}: random weights written in {time.perf_counter() - started:.0f} s]")
    flops = FlopModel.of(model_dir, shape)
    common = (model_dir, pairs, batch, steps, warmup, device, max_len, shape.pooling)
    stats = StepStats()
    runs = []
    if "plain" in variants:
        try:
            rate, stats = plain_loop(*common)
            runs.append(Run("plain PyTorch loop", rate))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other variants
            runs.append(Run("plain PyTorch loop", None, f"{type(exc).__name__}: {exc}"[:160]))
        _free()
    if "padded" in variants:
        runs.append(_measure("raystx padded", raystx_loop, *common, packed=False))
    if "packed" in variants:
        runs.append(_measure("raystx packed", raystx_loop, *common, packed=True))
    header = title or f"{shape.name} ({flops.params / 1e6:.1f}M non-embedding params)"
    report(
        f"{header}, MNRL, batch {batch} pairs, max_len {max_len}, {steps} steps after {warmup} warm-up",
        runs, stats, batch, flops, peak, targets,
    )  # fmt: skip
    return model_dir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sections", default="bge,qwen3,minilm")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, few steps (CPU dry run)")
    parser.add_argument("--batch", type=int, default=128, help="pairs per step, encoders")
    parser.add_argument("--decoder-batch", type=int, default=64, help="pairs per step, the 0.6B decoder")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--decoder-len", type=int, default=256, help="fixed text length of the MFU run")
    parser.add_argument("--budget-s", type=float, default=360.0, help="skip sections that would start later")
    parser.add_argument("--tokenizer-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=REPO / "bench" / ".gpu_data.tsv")
    args = parser.parse_args()
    if args.tiny:
        args.batch, args.decoder_batch, args.steps, args.warmup = 8, 4, 2, 1
        args.max_len, args.decoder_len = 64, 32

    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars between the result lines
    clock = time.perf_counter()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    print(f"device: {name}; torch {torch.__version__}; transformers {transformers.__version__}")
    print(
        f"targets: raystx packed >= {TARGET_PACKED_RATIO}x the plain loop; MFU >= {100 * TARGET_MFU:.0f}% on "
        f"the 0.6B decoder at {args.decoder_len} tokens (peak {peak or 'unknown'} TFLOP/s bf16 dense)"
    )
    all_shapes = shapes(args.tiny)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for section in [s.strip() for s in args.sections.split(",") if s.strip()]:
            if time.perf_counter() - clock > args.budget_s:
                print(f"\n[{section}: skipped, {args.budget_s:.0f} s budget used]")
                continue
            shape = all_shapes[section]
            batch = args.decoder_batch if shape.kind == "decoder" else args.batch
            n = (args.steps + args.warmup + 1) * batch
            varlen = load_pairs(args.data, n) or synthetic_pairs(
                n, seed=0, anchor_words=10, positive_words=45
            )
            targets = {"packed_ratio": TARGET_PACKED_RATIO}
            model_dir = run_section(
                shape, varlen, batch, args.steps, args.warmup, args.device, args.max_len, work,
                args.tokenizer_dir, peak, targets,
            )  # fmt: skip
            if shape.kind == "decoder" and time.perf_counter() - clock <= args.budget_s:
                fixed = synthetic_pairs(
                    n, seed=1, anchor_words=0, positive_words=0, fixed=2 * args.decoder_len
                )
                run_section(
                    shape, fixed, batch, args.steps, args.warmup, args.device, args.decoder_len, work,
                    args.tokenizer_dir, peak, {"mfu": TARGET_MFU}, model_dir=model_dir,
                    title=f"{shape.name}, every text {args.decoder_len} tokens (the MFU target)",
                    variants=("plain", "packed"),
                )  # fmt: skip
            sys.stdout.flush()
    print(f"\ntotal {time.perf_counter() - clock:.0f} s")


if __name__ == "__main__":
    main()
