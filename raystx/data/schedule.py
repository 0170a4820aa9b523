"""The multi-dataset step schedule and the row plan: pure functions of seed, epoch and dataset sizes.

Every worker computes the same schedule, so all ranks run the same dataset (and loss) in a global step, and
each rank takes its own disjoint slice of that step's global batch:

* ``dataset_order(num_rows, seed, epoch, name)`` is the permutation of a dataset's rows for an epoch.
* ``build_schedule(sizes, global_batch_size, seed, epoch, sampler, weights)`` lists, per global step, which
  dataset it draws from.
* ``compose_batches(...)`` cuts that order into global batches (plain, duplicate-free, or grouped by label).
* ``EpochPlan.rows(step, rank)`` gives the row indices one rank uses at one step.

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
    return schedule_from_counts(batches_per_dataset(sizes, global_batch_size), seed, epoch, sampler, weights)


def schedule_from_counts(
    counts: Mapping[str, int],
    seed: int,
    epoch: int,
    sampler: str = "proportional",
    weights: Mapping[str, float] | None = None,
) -> list[str]:
    """The schedule given how many global batches each dataset yields this epoch."""
    names = list(counts)
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


def compose_batches(
    order: np.ndarray,
    global_batch_size: int,
    batch_sampler: str = "batch_sampler",
    texts: Sequence[tuple] | None = None,
    labels: Sequence | None = None,
) -> list[np.ndarray]:
    """Split a row order into global batches (each ``global_batch_size`` rows; a last partial batch is dropped).

    ``batch_sampler``:
      * ``batch_sampler`` — consecutive chunks of ``order``.
      * ``no_duplicates`` — like sentence-transformers' NoDuplicatesBatchSampler: walk ``order`` and put a row in the
        current batch only if none of its texts (``texts[row]``, all input columns) is already in it; skipped rows wait
        for later batches. Deterministic, so every rank forms the same batches.
      * ``group_by_label`` — rows of the same label (``labels[row]``) come in pairs, so every label in a batch has at
        least two members (what the batch triplet losses need); labels with one row are left out.
    """
    g = int(global_batch_size)
    if batch_sampler == "batch_sampler":
        return [order[i * g : (i + 1) * g] for i in range(len(order) // g)]
    if batch_sampler == "no_duplicates":
        if texts is None:
            raise ValueError("no_duplicates needs the texts of the dataset's rows")
        batches: list[np.ndarray] = []
        remaining = list(order.tolist())
        while len(remaining) >= g:
            batch: list[int] = []
            seen: set = set()
            deferred: list[int] = []
            for pos, row in enumerate(remaining):
                values = texts[row]
                if any(v in seen for v in values):
                    deferred.append(row)
                    continue
                batch.append(row)
                seen.update(values)
                if len(batch) == g:
                    deferred.extend(remaining[pos + 1 :])
                    break
            if len(batch) < g:
                break  # the rest cannot form a duplicate-free batch
            batches.append(np.asarray(batch, dtype=np.int64))
            remaining = deferred
        return batches
    if batch_sampler == "group_by_label":
        if labels is None:
            raise ValueError("group_by_label needs the label column")
        if g % 2:
            raise ValueError(f"group_by_label needs an even global batch size, got {g}")
        by_label: dict = {}
        for row in order.tolist():
            by_label.setdefault(labels[row], []).append(row)
        pairs = [rows[i : i + 2] for rows in by_label.values() for i in range(0, len(rows) - 1, 2)]
        # interleave pairs in the order their first row appears in ``order`` (already random)
        position = {row: i for i, row in enumerate(order.tolist())}
        pairs.sort(key=lambda p: position[p[0]])
        flat = np.asarray([r for p in pairs for r in p], dtype=np.int64)
        return [flat[i * g : (i + 1) * g] for i in range(len(flat) // g)]
    raise ValueError(f"Unknown batch_sampler {batch_sampler!r}")


def occurrence_index(schedule: Sequence[str], step: int) -> int:
    """How many earlier steps of ``schedule`` drew from the same dataset as ``step``."""
    name = schedule[step]
    return sum(1 for s in schedule[:step] if s == name)


class EpochPlan:
    """The schedule of one epoch plus each dataset's global batches, with O(1) lookup per step.

    ``columns(name) -> (texts, labels)`` supplies row values for the ``no_duplicates`` / ``group_by_label`` batch
    samplers (texts: a tuple of input texts per row; labels: one label per row); it is not called otherwise.
    """

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
        batch_sampler: str = "batch_sampler",
        columns=None,
    ) -> None:
        self.per_device_batch_size = int(per_device_batch_size)
        self.world_size = int(world_size)
        self.global_batch_size = self.per_device_batch_size * self.world_size
        self._batches: dict[str, list[np.ndarray]] = {}
        for name, size in sizes.items():
            order = dataset_order(int(size), seed, epoch, name, shuffle)
            texts = labels = None
            if batch_sampler != "batch_sampler":
                texts, labels = columns(name)
            self._batches[name] = compose_batches(order, self.global_batch_size, batch_sampler, texts, labels)
        counts = {n: len(b) for n, b in self._batches.items()}
        self.schedule = schedule_from_counts(counts, seed, epoch, sampler, weights)
        seen: dict[str, int] = {}
        self._occurrence: list[int] = []
        for name in self.schedule:
            self._occurrence.append(seen.get(name, 0))
            seen[name] = seen.get(name, 0) + 1

    def __len__(self) -> int:
        return len(self.schedule)

    def rows(self, step: int, rank: int) -> tuple[str, np.ndarray]:
        """(dataset name, row indices) that ``rank`` trains on at ``step`` of this epoch."""
        name, batch = self.global_rows(step)
        b = self.per_device_batch_size
        return name, batch[rank * b : (rank + 1) * b]

    def global_rows(self, step: int) -> tuple[str, np.ndarray]:
        """All rows of the global batch at ``step`` (every rank's slice, in rank order)."""
        name = self.schedule[step]
        return name, self._batches[name][self._occurrence[step]]
