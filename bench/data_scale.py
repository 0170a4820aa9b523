"""The scale section of ``bench/data.py``: training on synthetic Parquet of growing size, read in place.

    python bench/data.py --scale-only [--scale-rows 1000000,10000000] [--scale-steps 30]

For each size the bench writes synthetic (anchor, positive) Parquet files (1M rows per file, row groups of 8192
rows, generated here and deleted at the end), then runs ``SentenceTransformerTrainer.train()`` on them with 2
workers, a tiny random BERT (``raystx.testing.build_tiny_bert``: steps are cheap, so the data plane shows),
MNRL, batch 32 per worker and the suggested shuffle window (8 row groups). It reports:

* time from ``train()`` to the end of the first optimizer step (a callback at step 1, ``logging_first_step``);
  target: the largest size <= 1.3x the smallest (nothing is copied before the first step);
* per worker, what its ``RowGroupReader`` read (row groups, compressed bytes) and wrote to local disk (the
  counters the workers write to ``RAYSTX_DATA_STATS_DIR``); target: <= its share of the data + the cache cap;
* steady delivery: one rank's rows (its stretch of the windowed order) fetched through a cold
  ``RowGroupReader`` and tokenized, rows/s, against the training step's consumption (the tiny model's step on
  pre-tokenized batches, and MiniLM's when the main section ran); target >= 5x.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH = 32
WORKERS = 2
WINDOW = 8
ROW_GROUP = 8192
ROWS_PER_FILE = 1_000_000
CACHE_CAP = 256 * 1024**2


def write_synthetic(directory: Path, rows: int) -> list[str]:
    """``rows`` (anchor, positive) pairs as Parquet files of up to 1M rows, row groups of 8192 rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for k, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        ids = pa.array(range(start, min(rows, start + ROWS_PER_FILE)), pa.int64())
        text = pc.cast(ids, pa.string())
        topic = pc.cast(pc.bit_wise_and(ids, 255), pa.string())
        anchor = pc.binary_join_element_wise(
            "what is the answer to question", text, "about topic", topic, " "
        )
        positive = pc.binary_join_element_wise("the answer to question", text, "is a passage on", topic, " ")
        path = directory / f"part-{k:03d}.parquet"
        pq.write_table(pa.table({"anchor": anchor, "positive": positive}), path, row_group_size=ROW_GROUP)
        files.append(str(path))
    return files


def data_bytes(files: list[str]) -> int:
    """Compressed bytes of all column chunks of ``files`` (what reading everything would fetch)."""
    import pyarrow.parquet as pq

    total = 0
    for path in files:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            total += sum(group.column(i).total_compressed_size for i in range(group.num_columns))
    return total


class FirstStep:
    """Writes the wall-clock time of the first logged step (step 1) to ``path`` (rank 0, same machine)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, logs: dict, **kwargs: Any) -> None:
        if state.global_step == 1 and not os.path.exists(self.path):
            Path(self.path).write_text(repr(time.time()))


def train_once(files: list[str], model_dir: Path, out: Path, steps: int, stats_dir: Path) -> dict[str, Any]:
    """One 2-worker run on ``files``: seconds to the first step, total seconds, and the workers' counters."""
    from ray.train import ScalingConfig

    from raystx.data.read_stats import read_all
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    shutil.rmtree(stats_dir, ignore_errors=True)
    marker = str(out / "first-step")
    model = SentenceTransformer(str(model_dir))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            max_steps=steps,
            per_device_train_batch_size=BATCH,
            logging_first_step=True,
            logging_steps=steps,
            save_strategy="no",
            seed=1,
            disable_tqdm=True,
            shuffle_window=WINDOW,
            data_cache_max_bytes=CACHE_CAP,
        ),
        train_dataset=files if len(files) > 1 else files[0],
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[FirstStep(marker)],
        scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
    )
    start = time.time()
    trainer.train()
    total = time.time() - start
    first = float(Path(marker).read_text()) - start
    return {
        "first_step_s": first,
        "total_s": total,
        "workers": read_all(stats_dir),
        "timings": trainer.timings,
    }


def delivery_vs_step(files: list[str], model_dir: Path, batches: int) -> tuple[float, float]:
    """(rows/s one rank gets through a cold RowGroupReader + tokenizing, rows/s of the tiny model's step)."""
    import datasets  # noqa: F401 - imported by the source machinery anyway; keep the timing clean
    from data import TrainStep, consumption_rate, delivery_rate  # the main section's helpers

    from raystx.data.collate import BatchCollator, thread_private_tokenize
    from raystx.data.schedule import EpochPlan
    from raystx.data.sources import prepare_sources
    from raystx.models import SentenceTransformer

    with tempfile.TemporaryDirectory(prefix="raystx-bench-scale-") as tmp:
        (source,) = prepare_sources(files, staging_dir=tmp).values()
        plan = EpochPlan(
            {"train": source.num_rows},
            BATCH,
            WORKERS,
            seed=1,
            epoch=0,
            shuffle_window=WINDOW,
            shard_rows={"train": source.shard_rows},
        )
        model = SentenceTransformer(str(model_dir))
        collate = BatchCollator(
            thread_private_tokenize(model),
            {"train": ["anchor", "positive"]},
            {"train": None},
            {"train": "none"},
        )
        delivered, _, _ = delivery_rate(source, collate, plan, batches)
        step = consumption_rate(TrainStep(model), collate, source, plan, steps=20, warmup=2)
    return delivered, step


def run_scale(sizes: list[int], steps: int, batches: int, minilm_rate: float | None) -> list[tuple]:
    """Run the section for every size; returns the table rows (variant, value, ratio, notes)."""
    import ray

    from raystx.data.read_stats import STATS_DIR_ENV
    from raystx.testing import build_tiny_bert

    root = Path(tempfile.mkdtemp(prefix="raystx-bench-scale-"))
    stats_dir = root / "read-stats"
    os.environ[STATS_DIR_ENV] = str(stats_dir)  # before Ray starts: its workers inherit it
    here = str(Path(__file__).parent)  # the workers unpickle FirstStep from this module
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    rows: list[tuple] = []
    try:
        if not ray.is_initialized():
            ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
        model_dir = build_tiny_bert(root / "tiny")
        results = {}
        for n in sizes:
            started = time.time()
            files = write_synthetic(root / f"data-{n}", n)
            made = time.time() - started
            total = data_bytes(files)
            run = train_once(files, model_dir, root / f"out-{n}", steps, stats_dir)
            delivered, step_rate = delivery_vs_step(files, model_dir, batches)
            results[n] = run
            share = total / WORKERS
            rows.append(
                (
                    f"{n:,} rows: train() -> first optimizer step",
                    f"{run['first_step_s']:.1f} s",
                    f"{run['first_step_s'] / results[sizes[0]]['first_step_s']:.2f}x",
                    f"vs {sizes[0]:,} rows (target <= 1.3x); driver prepare {run['timings'].get('prepare', 0):.1f} s; "
                    f"{len(files)} files, {total / 2**20:.0f} MiB written by the bench in {made:.0f} s; run "
                    f"{run['total_s']:.0f} s for {steps} steps",
                )
            )
            for worker in run["workers"]:
                stats = next(iter(worker["datasets"].values()))
                rows.append(
                    (
                        f"  rank {worker['rank']}: read / written to local disk",
                        f"{stats['bytes_read'] / 2**20:.1f} / {stats['bytes_written'] / 2**20:.1f} MiB",
                        f"{stats['bytes_read'] / share:.4f}",
                        f"of its share ({share / 2**20:.0f} MiB; target <= share + cap "
                        f"{CACHE_CAP / 2**20:.0f} MiB); {stats['row_groups_read']} row groups, peak cache "
                        f"{stats['peak_cache_bytes'] / 2**20:.1f} MiB",
                    )
                )
            notes = f"{batches} batches of {BATCH}, one rank's windowed rows, cold cache"
            rows.append(
                (
                    "  delivery: RowGroupReader -> tokenized batch",
                    f"{delivered:.0f} rows/s",
                    f"{delivered / step_rate:.1f}x",
                    f"vs the tiny model's step ({step_rate:.0f} rows/s; target >= 5x); {notes}",
                )
            )
            if minilm_rate:
                rows.append(
                    ("  delivery vs MiniLM's step", "", f"{delivered / minilm_rate:.1f}x", "target >= 5x")
                )
            shutil.rmtree(root / f"data-{n}", ignore_errors=True)
            shutil.rmtree(root / f"out-{n}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows
