"""The evaluation loss of ``eval_dataset``, computed by all ranks together: ``eval_loss`` / ``eval_{name}_loss``.

Names follow sentence-transformers (transformers' ``evaluate(metric_key_prefix=...)``): one eval dataset gives
``eval_loss``, a dict of them ``eval_{name}_loss`` each. The value is transformers' ``evaluation_loop`` mean: the
batch losses weighted by their rows, ``sum(loss_b * rows_b) / sum(rows_b)``.

Sharding: the eval rows, in order, are cut into batches of ``per_device_eval_batch_size`` (the last one partial)
and rank ``r`` of ``W`` takes batches ``r, r + W, r + 2W, ...``. Each rank computes the loss of its batches on its
own rows only (``raystx.distributed.local_only``: no gather of in-batch candidates, so ranks may run different
numbers of batches); the sums of ``loss * rows`` and ``rows`` are then all-reduced once per evaluation. The batches
are exactly the batches one process would form, so the result equals the single-process value for every loss,
in-batch-negative losses included.

In: the eval sources (staged on the driver like the training data), the loss for each (the training loss of the
dataset with the same name, or the single loss), a collator for their columns. Out: ``{metric: float}`` on every
rank.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from raystx.distributed import all_reduce_mean, local_only
from raystx.util import batch_to_device


@dataclass
class EvalDataset:
    """One eval dataset on the worker: its source, the key of its loss in the loop's losses, its metric name."""

    source: Any
    loss_key: str
    metric: str


def eval_metric_name(name: str, several: bool) -> str:
    """``eval_loss`` for the only eval dataset, ``eval_{name}_loss`` for each of a dict (sentence-transformers)."""
    return f"eval_{name}_loss" if several else "eval_loss"


def rank_batches(num_rows: int, batch_size: int, rank: int, world_size: int) -> list[np.ndarray]:
    """Row ids of this rank's eval batches: consecutive batches of ``batch_size`` rows, every ``world_size``-th."""
    starts = range(rank * batch_size, num_rows, batch_size * world_size)
    return [np.arange(s, min(s + batch_size, num_rows), dtype=np.int64) for s in starts]


class EvalLoss:
    """Computes the eval losses of ``datasets`` on one rank and combines them across ranks (see the module doc)."""

    def __init__(
        self,
        datasets: Mapping[str, EvalDataset],
        batch_size: int,
        collate: Callable[[str, Any], tuple[list[dict[str, Any]], Any]],
        rank: int,
        world_size: int,
    ) -> None:
        self.datasets = dict(datasets)
        self.batch_size = int(batch_size)
        self.collate = collate
        self.rank = rank
        self.world_size = world_size

    def __call__(
        self,
        model: nn.Module,
        losses: Mapping[str, nn.Module],
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
    ) -> dict[str, float]:
        """Every rank must call this at the same time (one all-reduce)."""
        modules = [model, *losses.values()]
        modes = [m.training for m in modules]
        for module in modules:
            module.eval()
        sums = torch.zeros(2 * len(self.datasets), dtype=torch.float64)
        try:
            with local_only(), torch.no_grad():
                for i, (name, item) in enumerate(self.datasets.items()):
                    loss_sum, rows = self._local_sums(
                        name, item, losses[item.loss_key], device, autocast_dtype
                    )
                    sums[2 * i], sums[2 * i + 1] = loss_sum, rows
        finally:
            for module, mode in zip(modules, modes):
                module.train(mode)
        totals = all_reduce_mean(sums.to(device)).cpu()  # the ratio of the means is the ratio of the sums
        return {
            item.metric: float(totals[2 * i] / totals[2 * i + 1])
            for i, item in enumerate(self.datasets.values())
        }

    def _local_sums(
        self,
        name: str,
        item: EvalDataset,
        loss_fn: nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> tuple[float, int]:
        table = item.source.open()
        loss_sum, rows = 0.0, 0
        for batch in rank_batches(item.source.num_rows, self.batch_size, self.rank, self.world_size):
            features, labels = self.collate(name, table[[int(i) for i in batch]])
            features = [batch_to_device(f, device) for f in features]
            labels = labels.to(device) if labels is not None else None
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = loss_fn(features, labels)
            total = sum(out.values()) if isinstance(out, dict) else out
            loss_sum += float(total.detach().double()) * len(batch)
            rows += len(batch)
        return loss_sum, rows
