"""Inference speed: raystx ``SentenceTransformer.encode`` vs sentence-transformers' ``encode`` on MiniLM.

    python bench/encode.py [--data-dir ../shared/data] [--sentences 2000] [--batch-size 32] [--repeats 3]

Both models load the same all-MiniLM-L6-v2 directory (max_seq_length 128) in this one process and embed the
same sentences (distinct STS-B train sentences, in file order) with the same batch size and thread count. Each
side is warmed up on one batch, then timed ``--repeats`` times with the order of the two sides alternated;
the best run of each counts (the least disturbed by other load on a shared machine). Prints sentences/s, the
ratio raystx / sentence-transformers (target >= 1.2x) and the largest absolute difference between the two
embedding matrices (must stay below 1e-4). A third row, ``raystx, HF forward``, runs raystx with its packed
(padding-free) forward switched off, which splits the gain between that forward and the rest of ``encode``;
``raystx, RAYSTX_FAST_INFERENCE=1`` adds the opt-in fast CPU inference (matmul attention for short texts, oneDNN
linears on prepacked weights; embeddings within ~1e-6 instead of bit-identical to the Hugging Face forward).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

MAX_LEN = 128
MAX_ABS_DIFF = 1e-4


def load_sentences(data_dir: Path, n: int) -> list[str]:
    """The first ``n`` distinct sentences of ``stsb/train.tsv`` (both columns, in file order)."""
    seen: dict[str, None] = {}
    for s1, s2 in read_tsv(data_dir / "stsb" / "train.tsv", ["sentence1", "sentence2"]):
        for s in (s1, s2):
            seen.setdefault(s, None)
        if len(seen) >= n:
            break
    return list(seen)[:n]


class _Padded:
    """The raystx model encoding with the Hugging Face forward (padding computed)."""

    def __init__(self, model) -> None:
        self.model = model

    def encode(self, *args, **kwargs):
        self.model[0].packed = False
        try:
            return self.model.encode(*args, **kwargs)
        finally:
            self.model[0].packed = True


class _FastInference:
    """The raystx model encoding with ``RAYSTX_FAST_INFERENCE=1``."""

    def __init__(self, model) -> None:
        self.model = model

    def encode(self, *args, **kwargs):
        os.environ["RAYSTX_FAST_INFERENCE"] = "1"
        try:
            return self.model.encode(*args, **kwargs)
        finally:
            os.environ.pop("RAYSTX_FAST_INFERENCE", None)


def time_encode(model, sentences: list[str], batch_size: int):
    """(seconds, embeddings as a float32 numpy array) of one ``encode`` call."""
    start = time.perf_counter()
    out = model.encode(sentences, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return time.perf_counter() - start, out


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side, order alternated")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import sentence_transformers
    import torch

    import raystx.models

    torch.set_num_threads(args.threads)
    model_dir = minilm_dir(args.model)
    sentences = load_sentences(args.data_dir, args.sentences)
    models = {
        "raystx": raystx.models.SentenceTransformer(model_dir, device="cpu"),
        "st": sentence_transformers.SentenceTransformer(model_dir, device="cpu"),
    }
    for model in models.values():
        model.max_seq_length = MAX_LEN
    models["hf"] = _Padded(models["raystx"])
    models["fast"] = _FastInference(models["raystx"])
    for model in models.values():
        model.encode(sentences[: args.batch_size], batch_size=args.batch_size, show_progress_bar=False)

    best = {name: float("inf") for name in models}
    outputs = {}
    for repeat in range(args.repeats):
        order = list(models) if repeat % 2 == 0 else list(reversed(models))
        for name in order:
            seconds, outputs[name] = time_encode(models[name], sentences, args.batch_size)
            best[name] = min(best[name], seconds)
            print(f"run {repeat + 1} {name:<6} {len(sentences) / seconds:8.1f} sentences/s", flush=True)

    diff = float(np.abs(outputs["raystx"] - outputs["st"]).max())
    ours = len(sentences) / best["raystx"]
    st = len(sentences) / best["st"]
    print(
        f"\nMiniLM-L6 encode, {len(sentences)} STS-B sentences, batch {args.batch_size}, max_seq_length "
        f"{MAX_LEN}, {args.threads} threads, best of {args.repeats}"
    )
    print_table(
        [
            ("sentence-transformers encode (baseline)", f"{st:.1f} sentences/s", "1.00x", ""),
            ("raystx encode", f"{ours:.1f} sentences/s", f"{ours / st:.2f}x", "target >= 1.2x"),
            (
                "raystx, HF forward",
                f"{len(sentences) / best['hf']:.1f} sentences/s",
                f"{len(sentences) / best['hf'] / st:.2f}x",
                "packed forward off: padding computed",
            ),
            (
                "raystx, RAYSTX_FAST_INFERENCE=1",
                f"{len(sentences) / best['fast']:.1f} sentences/s",
                f"{len(sentences) / best['fast'] / st:.2f}x",
                f"opt-in; max diff to ST {float(np.abs(outputs['fast'] - outputs['st']).max()):.1e}",
            ),
            (
                "max |raystx - ST| embedding",
                f"{diff:.2e}",
                "",
                "ok (< 1e-4)" if diff < MAX_ABS_DIFF else "FAIL: outputs differ (>= 1e-4)",
            ),
        ]
    )
    if diff >= MAX_ABS_DIFF:
        sys.exit(1)


if __name__ == "__main__":
    main()
