"""Data files and a sweep config for the Ray sweep tests (tiny BERT, a few dozen rows)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from conftest import make_sentences


def write_pairs(path: Path, n: int = 32, seed: int = 1) -> Path:
    """(anchor, positive) pairs: in-batch-negative losses."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive"])
        for a, p in zip(make_sentences(n, seed), make_sentences(n, seed + 50)):
            writer.writerow([a, p])
    return path


def write_scored(path: Path, n: int = 32, seed: int = 3) -> Path:
    """(sentence1, sentence2, score in [0, 1]) pairs: CoSENT training data and the dev set."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "score"])
        for i, (a, b) in enumerate(zip(make_sentences(n, seed), make_sentences(n, seed + 50))):
            writer.writerow([a, b, round((i * 7 % 11) / 10, 2)])
    return path


def read_scored(path: Path) -> tuple[list[str], list[str], list[float]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [float(r["score"]) for r in rows]


def trial_base(root: Path, model_dir: Path) -> dict[str, Any]:
    """What every test sweep trains: tiny BERT, MNRL on ``root/pairs.csv``, STS evaluation on ``root/dev.csv``
    (both written here); the caller adds ``args``, ``search`` and ``tune``."""
    pairs = write_pairs(root / "pairs.csv")
    dev = write_scored(root / "dev.csv", n=24, seed=9)
    return {
        "model": {"name_or_path": str(model_dir), "max_seq_length": 16},
        "train_data": {"pairs": {"path": str(pairs)}},
        "loss": {"type": "MultipleNegativesRankingLoss"},
        "evaluator": {
            "type": "EmbeddingSimilarityEvaluator",
            "path": str(dev),
            "columns": {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"},
            "kwargs": {"name": "dev"},
        },
    }


def sweep_config(root: Path, model_dir: Path, **tune: Any) -> dict[str, Any]:
    """A sweep over the loss (MNRL / CachedMNRL on pairs, CoSENT on scored pairs) x learning rate."""
    scored = write_scored(root / "scored.csv", seed=5)
    return {
        **trial_base(root, model_dir),
        "args": {
            "output_dir": str(root / "out"),
            "max_steps": 8,
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "seed": 1,
        },
        "search": {
            "args.learning_rate": {"grid": [1e-5, 5e-3]},
            "loss": {
                "grid": {
                    "mnrl": {"type": "MultipleNegativesRankingLoss", "kwargs": {"scale": 20.0}},
                    "cmnrl": {"type": "CachedMultipleNegativesRankingLoss", "kwargs": {"mini_batch_size": 4}},
                    "cosent": {
                        "set": {
                            "loss": {"type": "CoSENTLoss", "kwargs": {"scale": 20.0}},
                            "train_data": {"scored": {"path": str(scored)}},
                        }
                    },
                }
            },
        },
        "tune": {
            "searcher": "grid",
            "num_samples": 1,
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 8},
            "eval_steps": 1,
            "storage_path": str(root / "sweeps"),
            "name": "losses",
            **tune,
        },
    }
