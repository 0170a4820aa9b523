"""The multi-dataset step schedule and the row plan: pure functions of seed, epoch and dataset sizes.

Every worker computes the same schedule, so all ranks run the same dataset (and loss) in a global step, and
each rank takes its own disjoint slice of that step's global batch:

* ``dataset_order(num_rows, seed, epoch, name)`` is the permutation of a dataset's rows for an epoch.
* ``build_schedule(sizes, global_batch_size, seed, epoch, sampler, weights)`` lists, per global step, which
  dataset it draws from.
* ``rank_rows(...)`` gives the row indices one rank uses at one step.

Semantics follow sentence-transformers: ``round_robin`` cycles through the datasets in order and stops when
the smallest runs out; ``proportional`` uses every full batch of every dataset once, in a seeded random order
(so datasets are drawn in proportion to their size). Explicit ``weights`` draw datasets in proportion to the
weights; the epoch ends when the first dataset would run out. A last partial global batch of each dataset is
dropped (``drop_last``), which is what keeps every rank on the same number of steps.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np


def _rng(seed: int, epoch: int, salt: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), zlib.crc32(salt.encode("utf-8"))])


def dataset_order(num_rows: int, seed: int, epoch: int, name: str, shuffle: bool = True) -> np.ndarray:
    """The order in which a dataset's rows are consumed in ``epoch`` (a permutation of ``range(num_rows)``)."""
    if not shuffle:
        return np.arange(num_rows, dtype=np.int64)
    return _rng(seed, epoch, "rows:" + name).permutation(num_rows).astype(np.int64)


def batches_per_dataset(sizes: Mapping[str, int], global_batch_size: int) -> dict[str, int]:
    """Number of full global batches each dataset yields in one epoch."""
    return {name: int(n) // int(global_batch_size) for name, n in sizes.items()}


def build_schedule(
    sizes: Mapping[str, int],
    global_batch_size: int,
    seed: int,
    epoch: int,
    sampler: str = "proportional",
    weights: Mapping[str, float] | None = None,
) -> list[str]:
    """Dataset name for every global step of ``epoch``; identical on every worker."""
    names = list(sizes)
    counts = batches_per_dataset(sizes, global_batch_size)
    if weights:
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"multi_dataset_weights names unknown datasets: {sorted(unknown)}")
        w = {n: float(weights.get(n, 0.0)) for n in names}
        active = [n for n in names if w[n] > 0]
        total_w = sum(w[n] for n in active)
        # Largest epoch length T such that no dataset needs more batches than it has.
        t = min(counts[n] * total_w / w[n] for n in active)
        steps = {n: int(np.floor(t * w[n] / total_w + 1e-9)) if n in active else 0 for n in names}
        pool = [n for n in names for _ in range(steps[n])]
        order = _rng(seed, epoch, "schedule").permutation(len(pool))
        return [pool[i] for i in order]
    if sampler == "round_robin":
        rounds = min(counts.values()) if counts else 0
        return [n for _ in range(rounds) for n in names]
    if sampler == "proportional":
        pool = [n for n in names for _ in range(counts[n])]
        order = _rng(seed, epoch, "schedule").permutation(len(pool))
        return [pool[i] for i in order]
    raise ValueError(f"Unknown multi_dataset_batch_sampler {sampler!r}; use 'round_robin' or 'proportional'")


def occurrence_index(schedule: Sequence[str], step: int) -> int:
    """How many earlier steps of ``schedule`` drew from the same dataset as ``step``."""
    name = schedule[step]
    return sum(1 for s in schedule[:step] if s == name)


def rank_rows(
    order: np.ndarray, occurrence: int, global_batch_size: int, rank: int, per_device_batch_size: int
) -> np.ndarray:
    """Row indices rank ``rank`` uses for the ``occurrence``-th batch of a dataset in this epoch."""
    start = occurrence * global_batch_size + rank * per_device_batch_size
    return order[start : start + per_device_batch_size]


class EpochPlan:
    """The schedule of one epoch plus each dataset's row order, with O(1) lookup per step."""

    def __init__(
        self,
        sizes: Mapping[str, int],
        per_device_batch_size: int,
        world_size: int,
        seed: int,
        epoch: int,
        sampler: str = "proportional",
        weights: Mapping[str, float] | None = None,
        shuffle: bool = True,
    ) -> None:
        self.per_device_batch_size = int(per_device_batch_size)
        self.world_size = int(world_size)
        self.global_batch_size = self.per_device_batch_size * self.world_size
        self.schedule = build_schedule(sizes, self.global_batch_size, seed, epoch, sampler, weights)
        self._orders = {n: dataset_order(int(sizes[n]), seed, epoch, n, shuffle) for n in sizes}
        seen: dict[str, int] = {}
        self._occurrence: list[int] = []
        for name in self.schedule:
            self._occurrence.append(seen.get(name, 0))
            seen[name] = seen.get(name, 0) + 1

    def __len__(self) -> int:
        return len(self.schedule)

    def rows(self, step: int, rank: int) -> tuple[str, np.ndarray]:
        """(dataset name, row indices) that ``rank`` trains on at ``step`` of this epoch."""
        name = self.schedule[step]
        idx = rank_rows(
            self._orders[name],
            self._occurrence[step],
            self.global_batch_size,
            rank,
            self.per_device_batch_size,
        )
        return name, idx

    def global_rows(self, step: int) -> tuple[str, np.ndarray]:
        """All rows of the global batch at ``step`` (every rank's slice, in rank order)."""
        name = self.schedule[step]
        start = self._occurrence[step] * self.global_batch_size
        return name, self._orders[name][start : start + self.global_batch_size]
