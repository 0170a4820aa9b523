"""Packed (padding-free) vs padded forward+backward of decoder embedders and ModernBERT (random weights).

    python bench/packed_decoder.py [--families qwen3,llama,modernbert] [--hidden 256] [--layers 4] [--batch 32]
                                   [--min-len 8] [--max-len 128] [--steps 5] [--threads 2] [--device cpu]

Per family: one batch of ``--batch`` rows with lengths uniform in [min-len, max-len] (right padded), the time of
forward + backward of a sum-of-squares loss over real tokens with transformers' padded forward and with
``raystx.models.packed_hf``, the real-token rate of each, the speed-up, and the largest difference of the outputs
on real tokens (0 = bit-identical). Median of ``--steps`` after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raystx.models.packed_hf import hf_packed_forward  # noqa: E402
from raystx.testing_decoder import build_tiny_decoder  # noqa: E402


def _batch(vocab: int, batch: int, lo: int, hi: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(lo, hi + 1, (batch,), generator=g)
    length = int(lengths.max())
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return {"input_ids": (ids * mask).to(device), "attention_mask": mask.to(device)}


def _time(step, steps: int, device: str) -> float:
    step()
    times = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(family: str, args: argparse.Namespace) -> dict[str, float | str]:
    from transformers import AutoModel

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_decoder(Path(tmp) / family, family, hidden=args.hidden, layers=args.layers)
        model = AutoModel.from_pretrained(str(path)).to(args.device).train()
    inputs = _batch(model.config.vocab_size, args.batch, args.min_len, args.max_len, args.device)
    real = inputs["attention_mask"].bool()
    extra = {} if family == "modernbert" else {"use_cache": False}

    def padded() -> torch.Tensor:
        out = model(**inputs, **extra).last_hidden_state
        (out[real] ** 2).sum().backward()
        return out

    def packed() -> torch.Tensor:
        out, _ = hf_packed_forward(model, inputs)
        (out[real] ** 2).sum().backward()
        return out

    diff = float((padded()[real] - packed()[real]).detach().abs().max())
    t_padded, t_packed = _time(padded, args.steps, args.device), _time(packed, args.steps, args.device)
    tokens = int(real.sum())
    return {
        "family": family,
        "padding": f"{1 - tokens / real.numel():.0%}",
        "padded tok/s": round(tokens / t_padded),
        "packed tok/s": round(tokens / t_packed),
        "speed-up": round(t_padded / t_packed, 2),
        "max |diff|": diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="qwen3,llama,modernbert")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--min-len", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run(f, args) for f in args.families.split(",")]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()
