"""Fixed cost of a run: time spent outside the step loop, phase by phase, and a short fine-tune end to end vs ST.

    python bench/overhead.py [--data-dir ../shared/data] [--rows 0] [--workers 2] [--skip-st]
    python bench/overhead.py --quick          # 480 STS-B rows (30 steps), a smoke run

Fine-tunes all-MiniLM-L6-v2 on STS-B train (CoSENT, scores / 5, global batch 16 = 2 workers x 8, one epoch,
``save_strategy="no"``: the final checkpoint is still written) three times:

1. **cold**: the way a new user's script runs, ``ray.init`` included (``raystx.ray_init.ensure_ray``, what
   ``train()`` calls: a local instance with Ray's defaults);
2. **warm**: the same again with Ray already running;
3. **sentence-transformers' trainer** on the same data, hyperparameters and threads (the baseline).

Driver phases come from ``trainer.timings`` (prepare, workers, load_result, finish); the step loop's start and end
from a callback on the rank-0 worker (``on_train_begin``/``on_train_end``, wall clock; one machine), so
``workers`` splits into worker start + setup, the loop, and final checkpoint + teardown.
Targets (issue 18): outside the loop <= 20 s cold, <= 10 s warm; raystx end to end <= 1.0x ST.

It also measures the **Ray Train floor**: ``TorchTrainer.fit`` of a train function that does nothing, same workers
and settings, Ray already up. That is Ray Train's own process start and stop, which no raystx change can remove;
the warm rows "above the floor" are raystx's own share of the time outside the loop.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table  # noqa: E402
from quality import BATCH, LR, MAX_LEN, load_stsb  # noqa: E402  (same data and settings as the quality bench)


def loop_clock(path: str):
    """A callback writing the rank-0 worker's ``on_train_begin``/``on_train_end`` wall times to ``path``."""
    from raystx.train.callbacks import TrainerCallback

    class LoopClock(TrainerCallback):
        def __init__(self) -> None:
            self.path = path

        def _write(self, event: str) -> None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"event": event, "t": time.time()}) + "\n")

        def on_train_begin(self, args, state, **kwargs):
            self._write("loop_begin")

        def on_train_end(self, args, state, **kwargs):
            self._write("loop_end")

    return LoopClock()


def raystx_run(model_dir: str, columns: dict[str, list], workers: int, out: Path) -> dict[str, float]:
    """One raystx fine-tune; returns its phases in seconds (``ray_init`` when this call started Ray)."""
    import datasets
    import ray
    from ray.train import ScalingConfig

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.losses import CoSENTLoss

    started = time.time()
    phases: dict[str, float] = {}
    if not ray.is_initialized():
        from raystx.ray_init import ensure_ray

        ensure_ray()  # what trainer.train() would call first: a local Ray, as a new user's script gets it
        phases["ray_init"] = time.time() - started
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    clock_file = out / "clock.jsonl"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out / "run"),
            num_train_epochs=1,
            per_device_train_batch_size=BATCH // workers,
            learning_rate=LR,
            logging_steps=50,
            save_strategy="no",
            disable_tqdm=True,
            seed=42,
        ),
        train_dataset=datasets.Dataset.from_dict(columns),
        loss=CoSENTLoss(model),
        callbacks=[loop_clock(str(clock_file))],
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
    )
    fit_called = time.time()
    trainer.train()
    total = time.time() - started
    events = {e["event"]: e["t"] for e in map(json.loads, clock_file.read_text().splitlines())}
    t = trainer.timings
    workers_start = fit_called + t["prepare"]
    phases.update(
        {
            "model_load": fit_called - started - phases.get("ray_init", 0.0),
            "prepare (checks, staging)": t["prepare"],
            "worker start + setup": events["loop_begin"] - workers_start,
            "step loop": events["loop_end"] - events["loop_begin"],
            "final checkpoint + teardown": workers_start + t["workers"] - events["loop_end"],
            "load result": t["load_result"],
            "summary + card": t["finish"],
            "total": total,
        }
    )
    return phases


def _noop_worker(config: dict) -> None:
    """A Ray Train worker that does nothing: what is left of a run is Ray Train's own start and stop."""


def ray_train_floor(workers: int, out: Path) -> float:
    """Seconds of ``TorchTrainer.fit`` for a train function that returns at once, with the same workers and the
    same Ray Train settings as a raystx run: the controller and worker processes' start (imports, actor
    creation, the torch process group) and teardown. No raystx code runs in it, so raystx cannot go below it."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raystx.train.driver import ray_train_logging, train_environment

    trainer = TorchTrainer(
        _noop_worker,
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(out), name="floor", logging_config=ray_train_logging()),
    )
    started = time.time()
    with train_environment():
        trainer.fit()
    return time.time() - started


def st_run(model_dir: str, columns: dict[str, list], threads: int) -> float:
    """sentence-transformers' trainer on the same data; returns model load + ``train()`` wall time."""
    import datasets
    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    torch.set_num_threads(threads)
    started = time.time()
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    with tempfile.TemporaryDirectory(prefix="st-overhead-") as tmp:
        trainer = SentenceTransformerTrainer(
            model=model,
            args=SentenceTransformerTrainingArguments(
                output_dir=tmp,
                num_train_epochs=1,
                per_device_train_batch_size=BATCH,
                learning_rate=LR,
                seed=42,
                save_strategy="no",
                report_to="none",
                logging_steps=50,
                disable_tqdm=True,
                use_cpu=True,
            ),
            train_dataset=datasets.Dataset.from_dict(columns),
            loss=CoSENTLoss(model),
        )
        trainer.train()
    return time.time() - started


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--rows", type=int, default=0, help="STS-B train rows (0: all 5,749 = 359 steps)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-st", action="store_true", help="no sentence-transformers baseline")
    parser.add_argument("--quick", action="store_true", help="480 rows (30 steps), a smoke run")
    parser.add_argument(
        "--ab-preimport",
        action="store_true",
        help="a third run, warm, with the workers' pre-import hook off (RAYSTX_DISABLE_PREIMPORT=1)",
    )
    args = parser.parse_args()
    rows = 480 if args.quick and not args.rows else args.rows
    model_dir = minilm_dir(args.model)
    columns = load_stsb(Path(args.data_dir), "train", rows or None)
    results = {}
    runs = ["cold", "warm"] + (["warm, no pre-import"] if args.ab_preimport else [])
    for name in runs:
        if name == "warm, no pre-import":
            os.environ["RAYSTX_DISABLE_PREIMPORT"] = "1"
        with tempfile.TemporaryDirectory(prefix="raystx-overhead-") as tmp:
            results[name] = raystx_run(model_dir, columns, args.workers, Path(tmp))
    os.environ.pop("RAYSTX_DISABLE_PREIMPORT", None)
    with tempfile.TemporaryDirectory(prefix="raystx-overhead-") as tmp:
        floor = ray_train_floor(args.workers, Path(tmp))
    st_wall = None if args.skip_st else st_run(model_dir, columns, threads=args.workers)

    print(f"STS-B train rows: {len(columns['score'])}, {args.workers} workers x {BATCH // args.workers}")
    table = []
    for name, phases in results.items():
        for phase, seconds in phases.items():
            table.append(
                (f"{name}: {phase}", f"{seconds:.1f} s", f"{seconds / phases['total']:.2f}", "share")
            )
        outside = phases["total"] - phases["step loop"]
        target = 20.0 if name == "cold" else 10.0  # warm runs: Ray already up
        table.append(
            (
                f"{name}: outside the step loop",
                f"{outside:.1f} s",
                f"{outside / target:.2f}",
                f"/ {target:.0f} s target",
            )
        )
    table.append(("Ray Train floor: no-op TorchTrainer.fit", f"{floor:.1f} s", "1.00", "Ray already up"))
    for name in runs[1:]:
        outside = results[name]["total"] - results[name]["step loop"]
        table.append(
            (
                f"{name}: outside the loop, above the floor",
                f"{outside - floor:.1f} s",
                f"{(outside - floor) / floor:.2f}",
                "raystx's own share vs floor",
            )
        )
    if st_wall is not None:
        table.append(("ST trainer: model load + train()", f"{st_wall:.1f} s", "1.00", "baseline"))
        for name in runs:
            total = results[name]["total"]
            table.append(
                (
                    f"raystx {name}: end to end",
                    f"{total:.1f} s",
                    f"{total / st_wall:.2f}",
                    "vs ST (target <= 1.0)",
                )
            )
    print_table(table)


if __name__ == "__main__":
    main()
