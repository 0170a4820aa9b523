"""Early stopping pays: the same 8-trial sweep on MiniLM + STS-B with ASHA and without (FIFO), side by side.

    python bench/tune.py [--data-dir ../shared/data] [--trials 8] [--train-rows 256] [--eval-rows 200]

Both sweeps search the loss (CoSENT / AnglE with a conditional ``scale``, CosineSimilarityLoss) and the learning
rate with seeded Optuna TPE (fewer trials than TPE's random start-up, so both sweeps try the same configs) on
``--train-rows`` STS-B train pairs (scores / 5), evaluating Spearman (cosine) on ``--eval-rows`` STS-B validation
pairs every 2 steps; max_seq_length 64. Prints, for each: total trial-steps (the compute), wall time, the best
metric; then the ratios to the no-early-stopping baseline. Target: ASHA uses <= 50% of the trial-steps for a best
metric within 0.5 points (0.005 Spearman).
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from common import base_parser, minilm_dir, print_table, read_tsv  # noqa: E402


def write_scored(path: Path, rows: list[tuple]) -> str:
    """sentence1, sentence2, score / 5 as a properly quoted CSV."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "score"])
        for s1, s2, score in rows:
            writer.writerow([s1, s2, float(score) / 5.0])
    return str(path)


def sweep(work: Path, model: str, train: str, dev: str, trials: int, scheduler: dict, name: str) -> dict:
    return {
        "model": {"name_or_path": model, "max_seq_length": 64},
        "train_data": {"sts": {"path": train}},
        "loss": {"type": "CoSENTLoss"},
        "evaluator": {
            "type": "EmbeddingSimilarityEvaluator",
            "path": dev,
            "columns": {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"},
            "kwargs": {"name": "sts-dev", "batch_size": 64},
        },
        "args": {
            "output_dir": str(work / "runs"),
            "num_train_epochs": 1,
            "per_device_train_batch_size": 16,
            "warmup_ratio": 0.1,
            "logging_steps": 2,
            "seed": 42,
        },
        "search": {
            "args.learning_rate": {"loguniform": [1e-6, 5e-4]},
            "loss": {
                "choice": {
                    "cosent": {"type": "CoSENTLoss", "kwargs": {"scale": {"uniform": [10, 40]}}},
                    "angle": {"type": "AnglELoss", "kwargs": {"scale": {"uniform": [10, 40]}}},
                    "cosine": {"type": "CosineSimilarityLoss"},
                }
            },
        },
        "tune": {
            "num_samples": trials,
            "searcher": "tpe",
            "seed": 0,
            "scheduler": scheduler,
            "eval_steps": 2,
            "storage_path": str(work / "sweeps"),
            "name": name,
            "plots": False,
            "max_failures": 1,  # retry a trial killed by the memory monitor on a crowded machine
        },
    }


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray instance")
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args()

    import ray

    from raystx.tune import run_sweep

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="raystx-bench-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    columns = ["sentence1", "sentence2", "score"]
    train = write_scored(
        work / "train.csv", read_tsv(args.data_dir / "stsb" / "train.tsv", columns, args.train_rows)
    )
    dev = write_scored(
        work / "dev.csv", read_tsv(args.data_dir / "stsb" / "validation.tsv", columns, args.eval_rows)
    )
    model = minilm_dir(args.model)
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)

    results = {}
    for name, scheduler in (
        ("no early stopping", {"type": "none"}),
        ("ASHA", {"type": "asha", "grace_period": 1, "reduction_factor": 2}),
    ):
        started = time.perf_counter()
        key = "asha" if name == "ASHA" else "fifo"
        result = run_sweep(sweep(work, model, train, dev, args.trials, scheduler, key))
        wall = time.perf_counter() - started
        print(f"\n=== {name} ===\n{result.summary()}\n")
        metric = result.objective.metric
        best = result.best.value(metric) if result.best is not None else float("nan")  # a trial with a model
        configs = sorted(tuple(sorted((k, repr(v)) for k, v in r.params.items())) for r in result.rows)
        results[name] = (result.total_steps, wall, best, configs, len(result.rows))

    base_steps, base_wall, base_best, base_configs, _ = results["no early stopping"]
    steps, wall, best, configs, n = results["ASHA"]
    rows = [
        (
            "trial-steps, no early stopping",
            str(base_steps),
            "1.00",
            f"{results['no early stopping'][4]} trials",
        ),
        ("trial-steps, ASHA", str(steps), f"{steps / base_steps:.2f}", f"{n} trials"),
        ("wall s, no early stopping", f"{base_wall:.0f}", "1.00", ""),
        ("wall s, ASHA", f"{wall:.0f}", f"{wall / base_wall:.2f}", ""),
        ("best spearman, no early stopping", f"{base_best:.4f}", "", ""),
        ("best spearman, ASHA", f"{best:.4f}", f"{(best - base_best) * 100:+.2f} pts", ""),
    ]
    print_table(rows)
    print(f"same trial configs in both sweeps: {configs == base_configs}")
    ok = steps <= 0.5 * base_steps and best >= base_best - 0.005
    print(
        f"target (ASHA <= 50% of the trial-steps, best within 0.5 points): {'met' if ok else 'NOT met'} "
        f"({steps / base_steps:.0%} of the compute, {(best - base_best) * 100:+.2f} points)"
    )


if __name__ == "__main__":
    main()
