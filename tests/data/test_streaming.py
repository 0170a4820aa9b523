"""A million-row Parquet dataset streams through a 2-worker Ray run without being materialized on the driver.

The file is written by a subprocess (so writing it does not raise this process's peak RSS). The driver reads
its Parquet footers and a sample of rows for validation (the file is read in place, not staged), and ships file
paths to the workers, which read the row groups holding their rows. The test measures the driver's peak RSS
(``ru_maxrss``) before and after ``train()`` and bounds its growth by half the size of the data (seen here:
about a third of it, 30-33 MiB of 94 MiB, mostly Ray Data's streaming executor and the validation sample).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROWS = 1_000_000

_WRITE = """
import sys, pyarrow as pa, pyarrow.parquet as pq
n, path, small = int(sys.argv[1]), sys.argv[2], sys.argv[3]
schema = pa.schema([("anchor", pa.string()), ("positive", pa.string())])
with pq.ParquetWriter(path, schema) as writer:
    for start in range(0, n, 100_000):
        # row numbers spelled with letters, so the tiny WordPiece vocabulary tells rows apart
        codes = ["".join("abcdefghij"[int(d)] for d in str(i)) for i in range(start, min(n, start + 100_000))]
        writer.write_table(pa.table({
            "anchor": [f"the cat {c} sits on the red house" for c in codes],
            "positive": [f"a small dog {c} runs in the green park near the sea" for c in codes],
        }, schema=schema))
pq.write_table(pq.ParquetFile(path).read_row_group(0).slice(0, 64), small)
"""


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _args(output_dir: Path, max_steps: int) -> SentenceTransformerTrainingArguments:
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )


def _train(model_dir: Path, data: str, output_dir: Path, max_steps: int):
    from ray.train import ScalingConfig

    model = SentenceTransformer(str(model_dir))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_args(output_dir, max_steps),
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
    )
    return trainer.train()


def test_million_row_parquet_streams_through_two_workers_with_flat_driver_memory(
    ray_session, tiny_bert_dir, tmp_path
):
    big, small = tmp_path / "big.parquet", tmp_path / "small.parquet"
    subprocess.run([sys.executable, "-c", _WRITE, str(ROWS), str(big), str(small)], check=True)
    meta = pq.read_metadata(big)
    assert meta.num_rows >= ROWS
    data_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    assert data_bytes > 80_000_000  # uncompressed size of the rows

    # Warm up the driver (imports, Ray Data executor, Train controller) on a small copy of the same schema.
    _train(tiny_bert_dir, str(small), tmp_path / "warm", max_steps=1)

    before = _peak_rss_bytes()
    out = _train(tiny_bert_dir, str(big), tmp_path / "run", max_steps=3)
    grown = _peak_rss_bytes() - before

    print(
        f"\ndriver peak RSS: {before / 2**20:.1f} MiB before, +{grown / 2**20:.1f} MiB during the 1M-row run "
        f"(data: {data_bytes / 2**20:.1f} MiB uncompressed, {os.path.getsize(big) / 2**20:.1f} MiB on disk)"
    )
    assert out.global_step == 3
    losses = [h["loss"] for h in out.log_history if "loss" in h]
    assert len(losses) == 3
    # Holding the rows would cost at least their Arrow size (Python strings: several times more).
    assert grown < data_bytes / 2, (grown, data_bytes)
