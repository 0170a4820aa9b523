"""Shuffle quality vs read locality of the shard-windowed epoch order (``shuffle_window``, issue 17).

    python bench/shuffle.py [--rows 1000000] [--shards 100] [--sources 10] [--batch 32] [--world 2]
                            [--windows 1,2,4,8,16,32]

A synthetic dataset sorted by source: ``--rows`` rows in ``--shards`` equal shards (row groups), the rows of
``--sources`` sources contiguous (source of row r = r * sources // rows). For each epoch order, built by the
real ``EpochPlan`` (global batch ``--batch`` on ``--world`` ranks):

* mixing: the fraction of global batches holding rows of >= 2 sources, and the mean number of distinct sources
  per batch (what an in-batch-negatives loss sees);
* locality: the number of distinct shards rank 0 touches in a run of 100 consecutive steps (mean and max over
  runs starting every 7 steps),
  i.e. how many shards a per-rank reader must hold to serve them; and the plan's build time.

The baseline is today's full permutation (``shuffle_window=None``). Ratios: value / baseline. No model, no Ray,
no files: the numbers depend only on the plan.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import print_table  # noqa: E402

from raystx.data.schedule import EpochPlan  # noqa: E402
from raystx.data.window_shuffle import SUGGESTED_WINDOW, shard_of_rows  # noqa: E402

STEPS_PER_SPAN = 100
SPAN_STRIDE = 7
"""Spans start every 7 steps (they overlap), so spans that straddle two windows are counted too."""


def measure(
    rows: int, shards: int, sources: int, batch: int, world: int, window: int | None
) -> dict[str, float]:
    """Mixing and locality numbers of one epoch order (see the module docstring)."""
    shard_rows = [rows // shards + (1 if i < rows % shards else 0) for i in range(shards)]
    start = time.perf_counter()
    plan = EpochPlan(
        {"d": rows},
        batch // world,
        world,
        seed=42,
        epoch=0,
        shuffle_window=window,
        shard_rows={"d": shard_rows},
    )
    build_s = time.perf_counter() - start
    source_of = np.arange(rows, dtype=np.int64) * sources // rows
    shard_of = shard_of_rows(shard_rows)
    steps = len(plan)
    batches = np.stack([plan.global_rows(s)[1] for s in range(steps)])  # (steps, batch)
    src = np.sort(source_of[batches], axis=1)
    distinct_sources = 1 + (np.diff(src, axis=1) != 0).sum(axis=1)
    rank0 = np.stack([plan.rows(s, 0)[1] for s in range(steps)])
    touched = [
        len(np.unique(shard_of[rank0[i : i + STEPS_PER_SPAN]]))
        for i in range(0, steps - STEPS_PER_SPAN + 1, SPAN_STRIDE)
    ]
    return {
        "mixed": float((distinct_sources >= 2).mean()),
        "sources": float(distinct_sources.mean()),
        "shards_mean": float(np.mean(touched)),
        "shards_max": float(np.max(touched)),
        "build_s": build_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32, help="global batch size")
    parser.add_argument("--world", type=int, default=2, help="ranks (the batch is split over them)")
    parser.add_argument(
        "--windows", default="1,2,4,8,16,32", help="windowed variants besides the suggested one"
    )
    args = parser.parse_args()
    windows = sorted({int(w) for w in args.windows.split(",") if w} | {SUGGESTED_WINDOW})
    print(
        f"{args.rows} rows sorted by source ({args.sources} sources contiguous) in {args.shards} shards of "
        f"~{args.rows // args.shards} rows; global batch {args.batch} on {args.world} ranks "
        f"({args.batch // args.world} rows per rank per step); suggested window {SUGGESTED_WINDOW}"
    )
    base = measure(args.rows, args.shards, args.sources, args.batch, args.world, None)
    results = {
        None: base,
        **{w: measure(args.rows, args.shards, args.sources, args.batch, args.world, w) for w in windows},
    }

    def ratio(value: float, ref: float) -> str:
        return f"{value / ref:.3f}x" if ref else "-"

    rows = []
    for window, r in results.items():
        label = "full permutation" if window is None else f"window={window}"
        if window == SUGGESTED_WINDOW:
            label += " (suggested)"
        rows += [
            (
                f"{label}: batches mixing >=2 sources",
                f"{r['mixed']:.4f}",
                ratio(r["mixed"], base["mixed"]),
                "",
            ),
            (
                f"{label}: distinct sources per batch",
                f"{r['sources']:.2f}",
                ratio(r["sources"], base["sources"]),
                f"of {args.sources}",
            ),
            (
                f"{label}: shards rank 0 touches / {STEPS_PER_SPAN} steps",
                f"{r['shards_mean']:.1f}",
                ratio(r["shards_mean"], base["shards_mean"]),
                f"max {r['shards_max']:.0f} of {args.shards}",
            ),
            (f"{label}: plan build", f"{r['build_s']:.3f} s", ratio(r["build_s"], base["build_s"]), ""),
        ]
    print_table(rows)


if __name__ == "__main__":
    main()
