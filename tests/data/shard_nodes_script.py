"""Run by test_shard_reads_multinode.py in a fresh process: a two-node local Ray cluster
(``ray.cluster_utils.Cluster``), one training worker per node, on a Parquet file read in place with a windowed
epoch order. Each worker writes its ``RowGroupReader`` counters (``RAYSTX_DATA_STATS_DIR``); the script prints one
``RESULT {json}`` line with them and the file's row-group layout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

GROUPS, GROUP_ROWS, PER_DEVICE, WINDOW = 32, 16, 8, 2


def main() -> None:
    tmp = Path(sys.argv[1])
    os.environ["RAYSTX_DATA_STATS_DIR"] = str(tmp / "read-stats")  # before the nodes start: they inherit it

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    from ray.cluster_utils import Cluster
    from ray.train import RunConfig, ScalingConfig

    from raystx.data.read_stats import read_all
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.testing import build_tiny_bert, unique_sentences
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    rows = GROUPS * GROUP_ROWS
    path = tmp / "pairs.parquet"
    table = pa.table({"anchor": unique_sentences(rows, 1), "positive": unique_sentences(rows, 2)})
    pq.write_table(table, path, row_group_size=GROUP_ROWS)
    meta = pq.ParquetFile(path).metadata
    group_bytes = [
        sum(meta.row_group(g).column(i).total_compressed_size for i in range(meta.num_columns))
        for g in range(meta.num_row_groups)
    ]

    model_dir = build_tiny_bert(tmp / "tiny")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        cluster.add_node(num_cpus=1, resources={"slot": 1})
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()

    model = SentenceTransformer(str(model_dir))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp / "run"),
            num_train_epochs=1,
            per_device_train_batch_size=PER_DEVICE,
            logging_steps=100,
            save_strategy="no",
            seed=3,
            disable_tqdm=True,
            shuffle_window=WINDOW,
        ),
        train_dataset=str(path),
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=ScalingConfig(
            num_workers=2, resources_per_worker={"CPU": 1, "slot": 1}, placement_strategy="SPREAD"
        ),
        run_config=RunConfig(storage_path=str(tmp / "storage"), name="run"),
    )
    out = trainer.train()
    result = {
        "global_step": out.global_step,
        "group_bytes": group_bytes,
        "workers": read_all(tmp / "read-stats"),
        "staged": sorted(str(p) for p in (tmp / "storage").rglob("*.parquet")),
    }
    print("RESULT " + json.dumps(result), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
