"""A user batch sampler (``batch_sampler=`` a class or callable, as sentence-transformers allows) in the EpochPlan.

sentence-transformers calls ``batch_sampler(dataset, batch_size=..., drop_last=..., valid_label_columns=...,
generator=..., seed=...)`` with the per-device batch size, calls ``set_epoch(epoch)`` when the sampler has it,
and under DDP each process takes every ``world_size``-th batch. raystx does the same, deterministically: every
Ray worker calls the sampler with the same arguments (``seed``, and a ``torch.Generator`` seeded with it), and
``world_size`` consecutive batches form one global step (rank ``r`` trains the ``r``-th). Batches that are not
exactly the per-device size, and a last incomplete group, are dropped, as ``drop_last`` does.

The plan must be identical on every rank, so the sampler is run twice per epoch on each worker and must give
the same batches both times; one that draws its randomness elsewhere (``random``, unseeded numpy, time) raises
``ValueError`` before training, naming the sampler and the fix.

``dataset`` is a ``datasets.Dataset`` of the training rows (input columns and the label column).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def sampler_name(sampler: Any) -> str:
    return getattr(sampler, "__qualname__", None) or type(sampler).__name__


def _run(
    factory: Callable[..., Any],
    dataset: Any,
    batch_size: int,
    label_columns: list[str],
    seed: int,
    epoch: int,
):
    import torch

    generator = torch.Generator()
    generator.manual_seed(int(seed))
    sampler = factory(
        dataset,
        batch_size=batch_size,
        drop_last=True,
        valid_label_columns=label_columns,
        generator=generator,
        seed=int(seed),
    )
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(int(epoch))
    return [np.asarray(list(batch), dtype=np.int64) for batch in sampler]


def custom_batches(
    factory: Callable[..., Any],
    dataset: Any,
    per_device_batch_size: int,
    world_size: int,
    seed: int,
    epoch: int,
    label_columns: Sequence[str] = (),
    consumed: Any = None,
) -> list[np.ndarray]:
    """Global batches (``world_size`` sampler batches each, rank order) of one epoch of ``factory``'s sampler.

    ``consumed`` (row ids already trained this epoch, on resume) drops every global batch that holds one of them.
    """
    first = _run(factory, dataset, per_device_batch_size, list(label_columns), seed, epoch)
    second = _run(factory, dataset, per_device_batch_size, list(label_columns), seed, epoch)
    if len(first) != len(second) or any(not np.array_equal(a, b) for a, b in zip(first, second)):
        raise ValueError(
            f"batch_sampler {sampler_name(factory)} gave different batches for the same seed. Every Ray worker "
            "computes the batches itself, so they must be a function of the arguments: draw random numbers only "
            "from the generator (or seed) the sampler is given."
        )
    n = len(dataset)
    for batch in first:
        if batch.size and (batch.min() < 0 or batch.max() >= n):
            raise ValueError(f"batch_sampler {sampler_name(factory)} yielded a row index outside 0..{n - 1}")
    full = [b for b in first if len(b) == per_device_batch_size]
    groups = [
        np.concatenate(full[i : i + world_size]) for i in range(0, len(full) - world_size + 1, world_size)
    ]
    if consumed is not None and not isinstance(consumed, (int, np.integer)):
        used = set(np.asarray(consumed, dtype=np.int64).tolist())
        groups = [g for g in groups if not used.intersection(g.tolist())]
    return groups
