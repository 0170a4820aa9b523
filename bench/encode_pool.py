"""Distributed bulk encoding: ``model.encode(..., pool=...)`` on 1 vs 2 Ray actors vs ``encode`` in-process.

    python bench/encode_pool.py [--data-dir ../shared/data] [--sentences 4000] [--batch-size 32]

Model: all-MiniLM-L6-v2 (max_seq_length 128). Texts: distinct STS-B train sentences, then NLI anchors, in
file order. Every side uses one torch thread per model replica: the in-process baseline runs with
``torch.set_num_threads(1)``; the pools run ``num_workers`` Ray actors with ``cpus_per_worker=1`` (model
replicas started once by ``start_multi_process_pool``). Printed: the pool's start-up (until every replica has
loaded the model), then the steady-state passages/s of ``encode(pool=...)`` after a small warm-up call and
the ratios (2 actors vs 1 actor, each vs in-process), and the largest absolute difference of the pool's
embeddings to the in-process ones (must stay below 1e-5). Target (issue 16, by analogy with
mining): 2 actors >= 1.7x 1 actor.
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
MAX_ABS_DIFF = 1e-5


def load_texts(data_dir: Path, n: int) -> list[str]:
    """``n`` distinct sentences: STS-B train (both columns), then NLI anchors, in file order."""
    seen: dict[str, None] = {}
    for s1, s2 in read_tsv(data_dir / "stsb" / "train.tsv", ["sentence1", "sentence2"]):
        seen.setdefault(s1, None)
        seen.setdefault(s2, None)
    if len(seen) < n:
        for (anchor,) in read_tsv(data_dir / "nli" / "nli_entailment_pairs.tsv", ["anchor"]):
            seen.setdefault(anchor, None)
            if len(seen) >= n:
                break
    return list(seen)[:n]


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import numpy as np
    import ray
    import torch

    from raystx.models import SentenceTransformer

    torch.set_num_threads(1)
    model = SentenceTransformer(minilm_dir(args.model), device="cpu")
    model.max_seq_length = MAX_LEN
    texts = load_texts(args.data_dir, args.sentences)
    model.encode(texts[: args.batch_size], batch_size=args.batch_size, show_progress_bar=False)  # warm-up

    start = time.perf_counter()
    local = model.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
    local_s = time.perf_counter() - start
    print(f"in-process, 1 thread: {len(texts) / local_s:.1f} passages/s", flush=True)

    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    seconds, diffs, startup = {}, {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        pool = model.start_multi_process_pool(num_workers=workers, cpus_per_worker=1)
        pool.wait_ready()
        startup[workers] = time.perf_counter() - start
        model.encode(texts[: workers * args.batch_size], pool=pool, chunk_size=args.batch_size)  # warm-up
        start = time.perf_counter()
        emb = model.encode(texts, pool=pool, batch_size=args.batch_size)
        seconds[workers] = time.perf_counter() - start
        model.stop_multi_process_pool(pool)
        diffs[workers] = float(np.abs(emb - local).max())
        print(f"{workers} actor(s): {len(texts) / seconds[workers]:.1f} passages/s", flush=True)

    base = len(texts) / local_s
    rows = [("encode in-process, 1 thread (baseline)", f"{base:.1f} passages/s", "1.00x", "")]
    for workers in (1, 2):
        pps = len(texts) / seconds[workers]
        note = f"pool start-up {startup[workers]:.1f} s, not included" + (
            "" if workers == 1 else f"; vs 1 actor: {seconds[1] / seconds[2]:.2f}x"
        )
        rows.append(
            (
                f"encode(pool=...), {workers} actor(s) x 1 thread",
                f"{pps:.1f} passages/s",
                f"{pps / base:.2f}x",
                note,
            )
        )
    worst = max(diffs.values())
    rows.append(
        (
            "max |pool - in-process| embedding",
            f"{worst:.1e}",
            "",
            "ok (< 1e-5)" if worst < MAX_ABS_DIFF else "FAIL",
        )
    )
    print(
        f"\nMiniLM-L6 bulk encode, {len(texts)} sentences, batch {args.batch_size}, max_seq_length {MAX_LEN}"
    )
    print_table(rows)
    if worst >= MAX_ABS_DIFF:
        sys.exit(1)


if __name__ == "__main__":
    main()
