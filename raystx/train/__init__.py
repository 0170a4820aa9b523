"""Training: arguments, the per-worker loop, checkpoints and the Ray-backed trainer (imported lazily)."""

from __future__ import annotations

from raystx.train.args import BatchSamplers, MultiDatasetBatchSamplers, SentenceTransformerTrainingArguments

__all__ = [
    "BatchSamplers",
    "MultiDatasetBatchSamplers",
    "SentenceTransformerTrainer",
    "SentenceTransformerTrainingArguments",
]


def __getattr__(name: str):
    if name == "SentenceTransformerTrainer":
        from raystx.train.trainer import SentenceTransformerTrainer

        return SentenceTransformerTrainer
    raise AttributeError(name)
