"""MNRL vs CachedMultipleNegativesRankingLoss (GradCache, mini_batch_size 32) on MiniLM: speed and peak memory.

    python bench/losses.py [--data-dir ../shared/data] [--batches 32,128,512] [--steps 1] [--threads 2]

For each loss and batch size a fresh subprocess loads MiniLM (max_seq_length 64), tokenizes the batch of NLI
entailment pairs, runs one warm-up step on 8 pairs (so AdamW's state, the gradients and the allocator exist
before measuring), records its peak RSS (``getrusage``), then times ``--steps`` full training steps (loss
forward, backward, AdamW). It reports pairs/s, CPU seconds per step (on a shared machine a steadier measure
than wall time) and the growth of peak RSS during the timed steps: the memory one step of that batch size needs
on top of the model and optimizer. MNRL's grows with the batch (activations of every sequence are kept for
backward); the cached loss embeds without a graph, then re-runs and backpropagates 32 pairs at a time, so its
peak stays near that of batch 32. The two losses print equal loss values at batch 32 only: MiniLM keeps dropout
on in training, and the cached loss draws its masks per mini-batch. A configuration whose projected peak would
exceed 60% (``--memory-share``) of the machine's available memory is skipped and said so, so that the benchmark
cannot exhaust a shared machine (MNRL at batch 512 needs ~8 GiB).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

MAX_LEN = 64
MINI_BATCH = 32
WARMUP_PAIRS = 8
MEMORY_SHARE = 0.6  # skip a configuration whose projected peak exceeds this share of the available memory
LOSSES = {"mnrl": "MultipleNegativesRankingLoss", "cached": f"CachedMNRL (mini_batch_size {MINI_BATCH})"}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process (less sensitive than wall time to other load on the machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(loss_kind: str, batch: int, steps: int, threads: int, data_dir: Path, model_dir: str) -> dict:
    """Child side: one configuration in this (fresh) process; returns the measurements."""
    import torch

    from raystx.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir)
    model.max_seq_length = MAX_LEN
    model.train()
    if loss_kind == "mnrl":
        loss = MultipleNegativesRankingLoss(model)
    else:
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=MINI_BATCH)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5)
    pairs = read_tsv(
        data_dir / "nli" / "nli_entailment_pairs.tsv", ["anchor", "positive"], limit=batch * steps
    )

    def features(chunk):
        return [model.tokenize([a for a, _ in chunk]), model.tokenize([p for _, p in chunk])]

    def train_step(feats) -> float:
        value = loss(feats, None)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(value.detach())

    batches = [features(pairs[i * batch : (i + 1) * batch]) for i in range(steps)]
    train_step(features(pairs[:WARMUP_PAIRS]))
    before = peak_rss_mib()
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    values = [train_step(feats) for feats in batches]
    elapsed = time.perf_counter() - start
    return {
        "pairs_per_s": batch * steps / elapsed,
        "s_per_step": elapsed / steps,
        "cpu_s_per_step": (cpu_seconds() - cpu_start) / steps,
        "peak_before_mib": before,
        "peak_mib": peak_rss_mib(),
        "tokens_per_sequence": int(batches[0][0]["input_ids"].shape[1]),
        "loss": values[0],
    }


def available_mib() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**20


def projected_peak_mib(results: dict, kind: str, batch: int, batches: list[int]) -> float | None:
    """Peak RSS a configuration would reach, extrapolated linearly in the batch (times 1.5 for longer padding)
    from the largest smaller batch of the same loss that ran; None when there is none."""
    done = [b for b in batches if b < batch and results.get((kind, b))]
    if not done:
        return None
    prev = results[kind, max(done)]
    growth = prev["peak_mib"] - prev["peak_before_mib"]
    return prev["peak_before_mib"] + 1.5 * growth * batch / max(done)


def spawn(loss_kind: str, batch: int, args) -> dict:
    """Parent side: run one configuration in a fresh interpreter, for a clean peak RSS."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        loss_kind,
        "--child-batch",
        str(batch),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--data-dir",
        str(args.data_dir),
    ]
    if args.model:
        cmd += ["--model", args.model]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--batches", default="32,128,512", help="comma-separated batch sizes (pairs)")
    parser.add_argument("--steps", type=int, default=1, help="timed training steps per configuration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--memory-share",
        type=float,
        default=MEMORY_SHARE,
        help="skip a configuration whose projected peak RSS exceeds this share of the available memory",
    )
    parser.add_argument("--child", choices=sorted(LOSSES), help=argparse_hidden())
    parser.add_argument("--child-batch", type=int, help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        result = run_one(
            args.child, args.child_batch, args.steps, args.threads, args.data_dir, minilm_dir(args.model)
        )
        print(json.dumps(result))
        return

    batches = [int(b) for b in args.batches.split(",")]
    results: dict[tuple[str, int], dict | None] = {}
    for batch in batches:
        for kind in LOSSES:
            projected = projected_peak_mib(results, kind, batch, batches)
            available = available_mib()
            if projected is not None and projected > args.memory_share * available:
                results[kind, batch] = None
                print(
                    f"{LOSSES[kind]:<40} batch {batch:>4}: skipped, its peak would be about {projected:.0f} MiB "
                    f"and {available:.0f} MiB are available",
                    flush=True,
                )
                continue
            results[kind, batch] = r = spawn(kind, batch, args)
            print(
                f"{LOSSES[kind]:<40} batch {batch:>4}: {r['pairs_per_s']:.1f} pairs/s, "
                f"peak +{r['peak_mib'] - r['peak_before_mib']:.0f} MiB",
                flush=True,
            )

    speed = []
    memory = []
    for kind in LOSSES:
        base_growth = None
        for batch in batches:
            r, ref = results[kind, batch], results["mnrl", batch]
            label = f"{LOSSES[kind]}, batch {batch}"
            if r is None:
                speed.append((label, "skipped", "", "not enough free memory on this machine"))
                memory.append((label, "skipped", "", "not enough free memory on this machine"))
                continue
            ratio = f"{r['pairs_per_s'] / ref['pairs_per_s']:.2f}x" if ref else ""
            speed.append(
                (
                    label,
                    f"{r['pairs_per_s']:.1f} pairs/s",
                    ratio,
                    f"{r['s_per_step']:.2f} s/step wall, {r['cpu_s_per_step']:.1f} CPU-s/step, "
                    f"{r['tokens_per_sequence']} tokens/seq, loss {r['loss']:.4f}",
                )
            )
            growth = r["peak_mib"] - r["peak_before_mib"]
            base_growth = growth if base_growth is None else base_growth
            memory.append(
                (
                    label,
                    f"+{growth:.0f} MiB",
                    f"{growth / max(base_growth, 1.0):.2f}x",
                    f"total peak {r['peak_mib']:.0f} MiB (before the step: {r['peak_before_mib']:.0f} MiB)",
                )
            )
    print(
        f"\nMiniLM-L6, max_seq_length {MAX_LEN}, {args.threads} threads, {args.steps} timed step(s) per config"
    )
    print("\npairs/s of a training step (ratio: to MNRL at the same batch)")
    print_table(speed)
    print(f"\npeak RSS growth during the step (ratio: to the same loss at batch {batches[0]})")
    print_table(memory)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
