"""Data-plane delivery rate vs training consumption on MiniLM (MNRL, batch 32, max_seq_length 128).

    python bench/data.py [--data-dir ../shared/data] [--batches 60] [--train-steps 4] [--threads 2]
    python bench/data.py --scale [--scale-only] [--scale-rows 1000000,10000000] [--scale-steps 30]
    python bench/data.py --overlap [--overlap-only] [--overlap-rows 1500000] [--overlap-cpus 4]

Measures, in one process on NLI entailment pairs (``nli/nli_entailment_pairs.tsv``):

* delivery: what a worker's prefetch thread does per step — ``TrainingSource.open()`` once, then for each
  step ``EpochPlan.rows`` -> fetch the rows -> ``BatchCollator`` (tokenize every column with a thread-private
  tokenizer) — as rows/s, for a ``datasets.Dataset`` source and for a Parquet source (opened as a
  ``RowGroupReader``, which reads the row groups holding the rows asked for);
* consumption: one training step on already-tokenized batches (MNRL forward, backward, clip, AdamW) as rows/s;
* overlap: the loop's real arrangement, a ``Prefetcher`` thread feeding the training steps, as the share of
  step time spent waiting for data.

``--scale`` adds the scale section (``bench/data_scale.py``): synthetic Parquet of each ``--scale-rows`` size, read
in place by a 2-worker run of a tiny model: time to the first step, bytes each worker read and wrote, and the
delivery rate of its reader against the step.

``--overlap`` adds the staging-overlap section (``bench/data_overlap.py``): a synthetic CSV large enough that
staging takes several seconds, 2 workers, time from ``train()`` to the first optimizer step when the CSV is
staged before the workers start (``RAYSTX_STAGE_BEFORE_START=1``, the baseline) and while they start.

The ratio delivery/consumption is the headroom of the data plane (target >= 5x). A row is one (anchor,
positive) pair, i.e. two texts. The Parquet source is written to a temporary directory that is removed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

BATCH = 32
MAX_LEN = 128
COLUMNS = ["anchor", "positive"]


def load_pairs(data_dir: Path) -> dict[str, list[str]]:
    """All (anchor, positive) rows of the NLI entailment file, as columns."""
    rows = read_tsv(data_dir / "nli" / "nli_entailment_pairs.tsv", COLUMNS)
    return {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}


def dataset_source(columns: dict[str, list[str]], staging: Path):
    """A ``TrainingSource`` over an in-memory ``datasets.Dataset`` (no Ray needed for this kind)."""
    import datasets

    from raystx.data.sources import prepare_sources

    return prepare_sources(datasets.Dataset.from_dict(columns), staging_dir=str(staging))["train"]


def staged_parquet_source(columns: dict[str, list[str]], directory: Path):
    """A ``TrainingSource`` over a Parquet file written like ``prepare_sources`` stages file inputs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raystx.data.readers import STAGED_ROW_GROUP_SIZE, parquet_schema
    from raystx.data.sources import TrainingSource

    directory.mkdir(parents=True, exist_ok=True)
    path = str(directory / "part-0.parquet")
    pq.write_table(pa.table(columns), path, row_group_size=STAGED_ROW_GROUP_SIZE)
    schema = parquet_schema([path])
    return TrainingSource(
        name="train",
        input_columns=list(COLUMNS),
        label_column=None,
        num_rows=len(columns[COLUMNS[0]]),
        staged_files=[path],
        schema=schema,
        all_columns=list(schema.names),
        origin="parquet file (staged)",
    )


def make_collator(model):
    from raystx.data.collate import BatchCollator, thread_private_tokenize

    return BatchCollator(
        thread_private_tokenize(model), {"train": COLUMNS}, {"train": None}, {"train": "none"}
    )


def delivery_rate(source, collate, plan, batches: int) -> tuple[float, float, float]:
    """(rows/s fetched + tokenized, rows/s fetched only, seconds to open the source)."""
    started = time.perf_counter()
    opened = source.open()
    open_s = time.perf_counter() - started
    steps = [s % len(plan) for s in range(batches)]
    start = time.perf_counter()
    for step in steps:
        _, rows = plan.rows(step, 0)
        opened[[int(i) for i in rows]]
    fetch_s = time.perf_counter() - start
    start = time.perf_counter()
    for step in steps:
        name, rows = plan.rows(step, 0)
        collate(name, opened[[int(i) for i in rows]])
    full_s = time.perf_counter() - start
    return batches * BATCH / full_s, batches * BATCH / fetch_s, open_s


class TrainStep:
    """One training step as the loop runs it on a worker: loss forward, backward, clip, AdamW, zero grads."""

    def __init__(self, model) -> None:
        import torch

        from raystx.losses import MultipleNegativesRankingLoss

        self.loss = MultipleNegativesRankingLoss(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=2e-5)
        model.train()

    def __call__(self, features) -> None:
        import torch

        self.loss(features, None).backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def consumption_rate(step: TrainStep, collate, source, plan, steps: int, warmup: int) -> float:
    """Rows/s of training steps on batches tokenized beforehand (data cost excluded)."""
    opened = source.open()
    batches = []
    for s in range(warmup + steps):
        name, rows = plan.rows(s % len(plan), 0)
        batches.append(collate(name, opened[[int(i) for i in rows]])[0])
    for features in batches[:warmup]:
        step(features)
    start = time.perf_counter()
    for features in batches[warmup:]:
        step(features)
    return steps * BATCH / (time.perf_counter() - start)


def prefetch_wait(step: TrainStep, collate, source, plan, steps: int, first: int) -> tuple[float, float]:
    """(mean seconds per step waiting on the Prefetcher, mean step seconds) with prefetching as in the loop,
    after the first step."""
    from raystx.data.collate import Prefetcher

    opened = source.open()

    def make(s: int):
        name, rows = plan.rows(s, 0)
        return collate(name, opened[[int(i) for i in rows]])[0]

    prefetch = Prefetcher(range(first, first + steps + 1), make, depth=2)
    waited = 0.0
    try:
        iterator = iter(prefetch)
        step(next(iterator)[1])  # the first batch has no lead time (epoch start); not counted
        start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            _, features = next(iterator)
            waited += time.perf_counter() - t0
            step(features)
        elapsed = time.perf_counter() - start
    finally:
        prefetch.close()
    return waited / steps, elapsed / steps


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--batches", type=int, default=60, help="batches timed for delivery")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps timed (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the training step")
    parser.add_argument(
        "--scale", action="store_true", help="also run the scale section (bench/data_scale.py)"
    )
    parser.add_argument("--scale-only", action="store_true", help="run the scale section only")
    parser.add_argument(
        "--scale-rows", default="1000000,10000000", help="synthetic dataset sizes, comma-separated"
    )
    parser.add_argument("--scale-steps", type=int, default=30, help="training steps per scale run")
    parser.add_argument("--scale-batches", type=int, default=200, help="batches timed for scale delivery")
    parser.add_argument("--overlap", action="store_true", help="also run the staging-overlap section")
    parser.add_argument("--overlap-only", action="store_true", help="run the staging-overlap section only")
    parser.add_argument(
        "--overlap-rows", type=int, default=1_500_000, help="rows of the overlap section's CSV"
    )
    parser.add_argument("--overlap-steps", type=int, default=5, help="training steps per overlap run")
    parser.add_argument(
        "--overlap-cpus", type=int, default=4, help="logical CPUs of the overlap section's Ray"
    )
    args = parser.parse_args()
    train_rate = None
    if args.overlap_only:
        return overlap_section(args)
    if not args.scale_only:
        train_rate = nli_section(args)
    if args.scale or args.scale_only:
        from data_scale import run_scale

        sizes = [int(float(x)) for x in args.scale_rows.split(",")]
        rows = run_scale(sizes, args.scale_steps, args.scale_batches, train_rate)
        print(
            f"\nScale: synthetic Parquet read in place, 2 workers x batch 32, tiny BERT, MNRL, shuffle_window=8, "
            f"{args.scale_steps} steps"
        )
        print_table(rows)
    if args.overlap:
        overlap_section(args)


def overlap_section(args) -> None:
    """Print the staging-overlap table (``bench/data_overlap.py``)."""
    from data_overlap import run_overlap

    rows = run_overlap(args.overlap_rows, args.overlap_steps, args.overlap_cpus)
    print("\nStaging overlap: a CSV staged before vs while 2 workers start (private Ray), one run each")
    print_table(rows)


def nli_section(args) -> float:
    """The NLI delivery/consumption table (printed); returns MiniLM's training rows/s."""
    import torch

    from raystx.data.schedule import EpochPlan
    from raystx.models import SentenceTransformer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    columns = load_pairs(args.data_dir)
    model = SentenceTransformer(minilm_dir(args.model))
    model.max_seq_length = MAX_LEN
    collate = make_collator(model)
    plan = EpochPlan({"train": len(columns[COLUMNS[0]])}, BATCH, 1, seed=42, epoch=0)

    with tempfile.TemporaryDirectory(prefix="raystx-bench-data-") as tmp:
        tempfile.tempdir = tmp  # any node-local cache lands here and is removed
        try:
            in_memory = dataset_source(columns, Path(tmp) / "stage")
            staged = staged_parquet_source(columns, Path(tmp) / "staged")
            ds_rate, ds_fetch, _ = delivery_rate(in_memory, collate, plan, args.batches)
            pq_rate, pq_fetch, pq_open = delivery_rate(staged, collate, plan, args.batches)
            step = TrainStep(model)
            train_rate = consumption_rate(step, collate, in_memory, plan, args.train_steps, warmup=1)
            wait_s, step_s = prefetch_wait(
                step, collate, staged, plan, args.train_steps, first=args.train_steps + 1
            )
        finally:
            tempfile.tempdir = None

    rows = [
        (
            "training step consumption (baseline)",
            f"{train_rate:.1f} rows/s",
            "1.00x",
            f"MNRL fwd+bwd+AdamW on pre-tokenized batches, {args.threads} threads",
        ),
        (
            "delivery: datasets.Dataset -> tokenized batch",
            f"{ds_rate:.0f} rows/s",
            f"{ds_rate / train_rate:.1f}x",
            "target >= 5x",
        ),
        ("  row fetch only (no tokenize)", f"{ds_fetch:.0f} rows/s", f"{ds_fetch / train_rate:.1f}x", ""),
        (
            "delivery: Parquet (RowGroupReader) -> tokenized batch",
            f"{pq_rate:.0f} rows/s",
            f"{pq_rate / train_rate:.1f}x",
            f"target >= 5x; open() took {pq_open:.2f} s",
        ),
        ("  row fetch only (no tokenize)", f"{pq_fetch:.0f} rows/s", f"{pq_fetch / train_rate:.1f}x", ""),
        (
            "Prefetcher feeding training: wait per step",
            f"{wait_s * 1000:.1f} ms",
            f"{wait_s / step_s:.1%}",
            f"of a {step_s:.2f} s step (depth 2, {args.train_steps} steps)",
        ),
    ]
    n = len(columns[COLUMNS[0]])
    print(
        f"\nMiniLM-L6, batch {BATCH} pairs, max_seq_length {MAX_LEN}; {n} NLI pairs; delivery over "
        f"{args.batches} batches, training over {args.train_steps} steps after 1 warm-up"
    )
    print_table(rows)
    return train_rate


if __name__ == "__main__":
    main()
