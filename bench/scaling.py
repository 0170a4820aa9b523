"""Data-parallel scaling on one machine: 2 Ray workers x 1 thread vs 1 worker x 2 threads, same global batch.

    python bench/scaling.py [--data-dir ../shared/data] [--steps 12] [--warmup 3] [--batch 32]

Trains all-MiniLM-L6-v2 with MultipleNegativesRankingLoss (max_seq_length 128) on NLI entailment pairs through
``raystx.SentenceTransformerTrainer``, twice, on a private local Ray instance with 2 CPUs:

* baseline: ``ScalingConfig(num_workers=1, resources_per_worker={"CPU": 2})``, per-device batch 32;
* scaled: ``ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1})``, per-device batch 16 (in-batch
  negatives gathered across both workers, so the loss sees the same 32-pair global batch).

Steady-state pairs/s come from the ``elapsed_s`` the loop logs at step ``--warmup`` and at the last step (the
first steps, with allocator and thread-pool warm-up, are excluded). The ratio scaled / baseline is the target
(>= 1.0x). The torch thread count each run's rank 0 actually used is printed in the notes.

``raystx_train`` is also used by ``bench/first_step.py`` and ``bench/memory.py``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402

MAX_LEN = 128


def load_pairs(data_dir: Path, n: int) -> dict[str, list[str]]:
    """The first ``n`` (anchor, positive) rows of the NLI entailment file, as columns."""
    rows = read_tsv(data_dir / "nli" / "nli_entailment_pairs.tsv", ["anchor", "positive"], limit=n)
    return {"anchor": [a for a, _ in rows], "positive": [p for _, p in rows]}


def start_private_ray(num_cpus: int) -> None:
    """Start a Ray instance of our own (``address="local"``), never joining another engineer's cluster."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )


def thread_probe(path: str):
    """A rank-0 callback that writes the worker's pid and torch thread count to ``path`` at train begin."""
    from raystx.train.callbacks import TrainerCallback

    class ThreadProbe(TrainerCallback):
        def on_train_begin(self, args, state, **kwargs):
            import torch

            Path(path).write_text(json.dumps({"pid": os.getpid(), "threads": torch.get_num_threads()}))

    return ThreadProbe()


def raystx_train(
    model_dir: str,
    columns: dict[str, list[str]],
    *,
    steps: int,
    workers: int,
    threads: int,
    batch: int = 32,
    logging_steps: int = 1,
    logging_first_step: bool = False,
    callbacks: list[Any] | None = None,
    loss_name: str = "mnrl",
) -> dict[str, Any]:
    """Run ``steps`` optimizer steps of raystx MNRL training on ``workers`` Ray workers (global batch ``batch``).

    Returns ``{"log_history": [...], "train_call_time": time.time() at the train() call, "wall_s": seconds
    of train(), "threads": rank 0's torch thread count}``. Needs ``start_private_ray`` (or any Ray) first.
    """
    import datasets
    from ray.train import ScalingConfig

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    with tempfile.TemporaryDirectory(prefix="raystx-bench-") as tmp:
        probe_file = str(Path(tmp) / "threads.json")
        args = SentenceTransformerTrainingArguments(
            output_dir=str(Path(tmp) / "run"),
            max_steps=steps,
            per_device_train_batch_size=batch // workers,
            learning_rate=2e-5,
            logging_steps=logging_steps,
            logging_first_step=logging_first_step,
            save_strategy="no",
            seed=42,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_dict(columns),
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[thread_probe(probe_file), *(callbacks or [])],
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": threads}),
        )
        call_time = time.time()
        started = time.perf_counter()
        out = trainer.train()
        wall = time.perf_counter() - started
        probe = json.loads(Path(probe_file).read_text()) if Path(probe_file).is_file() else {}
    return {
        "log_history": out.log_history,
        "train_call_time": call_time,
        "wall_s": wall,
        "threads": probe.get("threads"),
    }


def steady_pairs_per_s(log_history: list[dict[str, Any]], warmup: int, last: int, batch: int) -> float:
    """Global pairs/s between the logged steps ``warmup`` and ``last`` (from the loop's ``elapsed_s``)."""
    marks = {h["step"]: h["elapsed_s"] for h in log_history if "elapsed_s" in h}
    return (last - warmup) * batch / (marks[last] - marks[warmup])


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--steps", type=int, default=12, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="global batch (pairs)")
    args = parser.parse_args()
    model_dir = minilm_dir(args.model)
    total = args.warmup + args.steps
    columns = load_pairs(args.data_dir, (total + 2) * args.batch)
    start_private_ray(2)

    results = {}
    for label, workers, threads in (("1x2", 1, 2), ("2x1", 2, 1)):
        run = raystx_train(
            model_dir,
            columns,
            steps=total,
            workers=workers,
            threads=threads,
            batch=args.batch,
            logging_steps=args.warmup,
        )
        results[label] = (steady_pairs_per_s(run["log_history"], args.warmup, total, args.batch), run)
        print(f"{label}: {results[label][0]:.2f} pairs/s (train() took {run['wall_s']:.1f} s)", flush=True)

    base, base_run = results["1x2"]
    scaled, scaled_run = results["2x1"]
    print(
        f"\nMiniLM-L6, MNRL, global batch {args.batch}, max_seq_length {MAX_LEN}, {args.steps} steps after "
        f"{args.warmup} warm-up, one private Ray instance with 2 CPUs"
    )
    print_table(
        [
            (
                "1 worker x 2 CPUs (baseline)",
                f"{base:.2f} pairs/s",
                "1.00x",
                f"per-device batch {args.batch}, torch threads {base_run['threads']}",
            ),
            (
                "2 workers x 1 CPU",
                f"{scaled:.2f} pairs/s",
                f"{scaled / base:.2f}x",
                f"per-device batch {args.batch // 2}, torch threads {scaled_run['threads']}; target >= 1.0x",
            ),
        ]
    )


if __name__ == "__main__":
    main()
