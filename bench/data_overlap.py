"""The staging-overlap section of ``bench/data.py``: a large CSV staged before vs while the workers start.

    python bench/data.py --overlap-only [--overlap-rows 1500000] [--overlap-steps 5] [--overlap-cpus 4]

The bench writes a synthetic CSV of ``--overlap-rows`` short (anchor, positive) pairs (deleted at the end), starts
a private local Ray with ``--overlap-cpus`` logical CPUs (the trainer overlaps only when the 2 one-CPU workers leave
at least one free: with 2, both runs stage first), warms it up with one small run, and trains a tiny random BERT
(MNRL, 2 workers x batch 32) on the CSV twice:

* baseline: ``RAYSTX_STAGE_BEFORE_START=1``, the whole CSV staged to Parquet on the driver, then the workers start;
* overlap: the driver checks the first rows, a zero-CPU Ray task stages the CSV while the workers start, and
  the workers wait for it before their first step (``raystx.data.background``).

For each it prints the time from ``train()`` to the end of the first optimizer step (rank 0's clock, same
machine), the driver's ``prepare`` phase, and for the overlap run the staging pass's own wall time; the ratio
is overlap / baseline (lower is better). One run each: the machine is shared and noisy, read the ratio as rough.
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


def write_csv(path: Path, rows: int) -> int:
    """``rows`` synthetic (anchor, positive) pairs as one CSV; returns its size in bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    ids = pa.array(range(rows), pa.int64())
    text = pc.cast(ids, pa.string())
    topic = pc.cast(pc.bit_wise_and(ids, 255), pa.string())
    anchor = pc.binary_join_element_wise("what is the answer to question", text, "about topic", topic, " ")
    positive = pc.binary_join_element_wise("the answer to question", text, "is a passage on", topic, " ")
    pacsv.write_csv(pa.table({"anchor": anchor, "positive": positive}), path)
    return path.stat().st_size


def train_once(data: Path, model_dir: Path, out: Path, steps: int, sequential: bool) -> dict[str, Any]:
    """One 2-worker run on ``data``: seconds to the first step, the driver's phases, the staging pass's time."""
    from data_scale import FirstStep
    from ray.train import ScalingConfig

    from raystx.data.background import STAGE_BEFORE_START_ENV
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    marker = out / "first-step"
    out.mkdir(parents=True, exist_ok=True)
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
        ),
        train_dataset=str(data),
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[FirstStep(str(marker))],
        scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
    )
    saved = os.environ.pop(STAGE_BEFORE_START_ENV, None)
    if sequential:
        os.environ[STAGE_BEFORE_START_ENV] = "1"
    try:
        start = time.time()
        trainer.train()
        total = time.time() - start
    finally:
        os.environ.pop(STAGE_BEFORE_START_ENV, None)
        if saved is not None:
            os.environ[STAGE_BEFORE_START_ENV] = saved
    staged = trainer._staging.seconds() if trainer._staging.refs else {}
    return {
        "first_step_s": float(marker.read_text()) - start,
        "total_s": total,
        "prepare_s": trainer.timings.get("prepare", 0.0),
        "staging_s": sum(staged.values()),
        "overlapped": bool(staged),
    }


def run_overlap(rows: int, steps: int, cpus: int = 4) -> list[tuple]:
    """The section's table rows (variant, value, ratio, notes)."""
    import ray

    from raystx.testing import build_tiny_bert

    root = Path(tempfile.mkdtemp(prefix="raystx-bench-overlap-"))
    here = str(Path(__file__).parent)  # the workers unpickle FirstStep from data_scale
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    try:
        if not ray.is_initialized():
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        model_dir = build_tiny_bert(root / "tiny")
        started = time.time()
        size = write_csv(root / "pairs.csv", rows)
        made = time.time() - started
        write_csv(root / "warm.csv", 2000)
        train_once(
            root / "warm.csv", model_dir, root / "warm", 1, sequential=True
        )  # processes, imports, caches
        base = train_once(root / "pairs.csv", model_dir, root / "sequential", steps, sequential=True)
        lap = train_once(root / "pairs.csv", model_dir, root / "overlap", steps, sequential=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert lap["overlapped"] and not base["overlapped"], "the two runs did not take the two paths"
    note = f"{rows:,} rows, {size / 2**20:.0f} MiB CSV (written in {made:.0f} s); Ray with {cpus} CPUs"
    return [
        (
            "stage first, then start (baseline): train() -> first step",
            f"{base['first_step_s']:.1f} s",
            "1.00x",
            f"driver prepare (staging included) {base['prepare_s']:.1f} s; {note}",
        ),
        (
            "staging overlaps worker start: train() -> first step",
            f"{lap['first_step_s']:.1f} s",
            f"{lap['first_step_s'] / base['first_step_s']:.2f}x",
            f"driver prepare {lap['prepare_s']:.1f} s; the staging pass itself took {lap['staging_s']:.1f} s",
        ),
        (
            "  whole run (both)",
            f"{base['total_s']:.0f} / {lap['total_s']:.0f} s",
            f"{lap['total_s'] / base['total_s']:.2f}x",
            f"{steps} steps, 2 workers x batch {BATCH}, tiny BERT, MNRL",
        ),
    ]
