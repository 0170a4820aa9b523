"""The multi-dataset step schedule and the row plan: pure functions of seed, epoch and dataset sizes.

Every worker computes the same schedule, so all ranks run the same dataset (and loss) in a global step, and
each rank takes its own disjoint slice of that step's global batch:

* ``dataset_order(num_rows, seed, epoch, name)`` is the permutation of a dataset's rows for an epoch: a full
  permutation by default, or with ``shuffle_window=k`` a seeded order of its shards (row groups, or blocks of
  ``shuffle_block_size`` rows) with rows mixed inside windows of ``k`` shards (``raystx.data.window_shuffle``).
* ``build_schedule(sizes, global_batch_size, seed, epoch, sampler, weights)`` lists, per global step, which
  dataset it draws from.
* ``compose_batches(...)`` cuts that order into global batches (plain, duplicate-free, or grouped by label);
  with a windowed order and the default sampler each rank instead walks its own stretch of the order
  (``rank_striped_batches``), so that it reads only its own shards.
* ``EpochPlan.rows(step, rank)`` gives the row indices one rank uses at one step.
* ``EpochPlan(..., consumed=...)`` plans the rest of an epoch whose first rows were already trained (a resume with
  another global batch size); ``EpochPlan.consumed_through(step)`` is what a checkpoint records for that.

Semantics follow sentence-transformers: ``round_robin`` cycles through the datasets in order and stops when
the smallest runs out; ``proportional`` uses every full batch of every dataset once, in a seeded random order
(so datasets are drawn in proportion to their size). Explicit ``weights`` draw datasets in proportion to the
weights; the epoch ends when the first dataset would run out. A last partial global batch of each dataset is
dropped (``drop_last=True``, raystx's default); with ``drop_last=False`` it is trained too: on several ranks it
is padded by repeating its own first rows to a multiple of the world size (as ``DistributedSampler`` pads), so
every rank still takes the same number of rows in every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raystx.data.window_shuffle import (
    DEFAULT_BLOCK_SIZE,
    block_rows,
    check_shard_rows,
    full_order,
    rank_striped_batches,
    window_order,
)
from raystx.data.window_shuffle import rng_for as _rng


def dataset_order(
    num_rows: int,
    seed: int,
    epoch: int,
    name: str,
    shuffle: bool = True,
    shuffle_window: int | None = None,
    shard_rows: Sequence[int] | None = None,
    shuffle_block_size: int = DEFAULT_BLOCK_SIZE,
) -> np.ndarray:
    """The order in which a dataset's rows are consumed in ``epoch`` (a permutation of ``range(num_rows)``).

    ``shuffle_window`` None/0: a full seeded permutation. ``k >= 1``: shards in a seeded order, rows shuffled
    within each window of ``k`` consecutive shards; the shards are ``shard_rows`` (rows per shard in storage
    order, e.g. Parquet row groups) or, when None, blocks of ``shuffle_block_size`` rows."""
    if not shuffle:
        return np.arange(num_rows, dtype=np.int64)
    if not shuffle_window:
        return full_order(num_rows, seed, epoch, name)
    shards = (
        check_shard_rows(name, num_rows, shard_rows)
        if shard_rows is not None
        else block_rows(num_rows, shuffle_block_size)
    )
    return window_order(shards, seed, epoch, name, shuffle_window)


Consumed = int | np.ndarray
"""Rows of a dataset already trained this epoch: a count (the first rows of its ``dataset_order``, what the
default batch sampler consumes) or the row ids themselves (any sampler)."""


def remaining_order(order: np.ndarray, consumed: Consumed | None) -> np.ndarray:
    """``order`` without the rows already ``consumed`` this epoch, the rest in the same order."""
    if consumed is None:
        return order
    if isinstance(consumed, (int, np.integer)):
        return order[int(consumed) :]
    used = np.zeros(len(order), dtype=bool)
    used[np.asarray(consumed, dtype=np.int64)] = True
    return order[~used[order]]


def batches_per_dataset(
    sizes: Mapping[str, int], global_batch_size: int, drop_last: bool = True
) -> dict[str, int]:
    """Number of global batches each dataset yields in one epoch (full ones only with ``drop_last``)."""
    g = int(global_batch_size)
    return {name: (int(n) // g if drop_last else -(-int(n) // g)) for name, n in sizes.items()}


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
    round_robin_start: int = 0,
) -> list[str]:
    """The schedule given how many global batches each dataset yields this epoch.

    ``round_robin_start`` (round robin only) begins the cycle at that dataset's position: the rest of an
    interrupted round is drawn first, then whole rounds until the smallest dataset runs out.
    """
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
        if not names:
            return []
        head: list[str] = []
        for name in names[round_robin_start % len(names) :] if round_robin_start % len(names) else []:
            if counts[name] < 1:
                return head
            head.append(name)
        rounds = min(counts[n] - head.count(n) for n in names)
        return head + [n for _ in range(rounds) for n in names]
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
    drop_last: bool = True,
) -> list[np.ndarray]:
    """Split a row order into global batches of ``global_batch_size`` rows; a last partial batch is dropped unless
    ``drop_last=False`` (then the rows left over form it, as sentence-transformers' samplers do).

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
        count = len(order) // g if drop_last else -(-len(order) // g)
        return [order[i * g : (i + 1) * g] for i in range(count)]
    if batch_sampler in ("no_duplicates", "no_duplicates_hashed"):  # hashed: ST's faster check, same batches
        if texts is None:
            raise ValueError("no_duplicates needs the texts of the dataset's rows")
        batches: list[np.ndarray] = []
        remaining = list(order.tolist())
        while remaining and (len(remaining) >= g or not drop_last):
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
            if len(batch) < g and drop_last:
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
        out = [flat[i * g : (i + 1) * g] for i in range(len(flat) // g)]
        rest = flat[len(out) * g :]
        if not drop_last and len(rest) >= 4:  # as sentence-transformers: >= 2 labels with >= 2 rows each
            out.append(rest)
        return out
    raise ValueError(f"Unknown batch_sampler {batch_sampler!r}")


def occurrence_index(schedule: Sequence[str], step: int) -> int:
    """How many earlier steps of ``schedule`` drew from the same dataset as ``step``."""
    name = schedule[step]
    return sum(1 for s in schedule[:step] if s == name)


class EpochPlan:
    """The schedule of one epoch plus each dataset's global batches, with O(1) lookup per step.

    ``columns(name) -> (texts, labels)`` supplies row values for the ``no_duplicates`` / ``group_by_label`` batch
    samplers (texts: a tuple of input texts per row; labels: one label per row); it is not called otherwise.

    ``consumed`` (per dataset, see ``Consumed``) plans only the rest of the epoch: each dataset's batches are
    composed from its epoch order without those rows, and the schedule is built from the batches that are left
    (``round_robin_start`` continues an interrupted round-robin cycle). This is how a run resumed with another
    global batch size (another number of workers) finishes an epoch without training a row twice:

    * one dataset, default sampler: exact. The rest of the epoch is ``order[consumed:]`` in new global batches;
      the only difference from an uninterrupted run is where batches start, and the rows dropped at the end
      (fewer than one new global batch, as ``drop_last`` does in any epoch).
    * several datasets, default sampler: each dataset continues exactly at its own row offset (every row at most
      once, at most one new global batch per dataset dropped), but the order of datasets is drawn afresh from
      the batches left: ``proportional`` uses every remaining full batch once in a new seeded order,
      ``round_robin`` continues the cycle at the dataset that was next, explicit weights split the remaining
      steps by weight.
    * ``shuffle_window`` / ``shard_rows`` / ``shuffle_block_size`` choose each dataset's epoch order (see
      ``dataset_order``); resume only needs that order, so it stays exact with any window as long as the
      resumed run uses the same window and shards.
    * ``no_duplicates`` / ``group_by_label``: ``consumed`` holds the row ids already trained; the rest of the
      epoch is composed by the sampler from the remaining rows, so no row repeats, but the batches (and which
      rows the sampler cannot place and leaves out) differ from an uninterrupted run.
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
        batch_sampler: Any = "batch_sampler",
        columns=None,
        consumed: Mapping[str, Consumed] | None = None,
        round_robin_start: int = 0,
        drop_last: bool = True,
        shuffle_window: int | None = None,
        shard_rows: Mapping[str, Sequence[int] | None] | None = None,
        shuffle_block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self.per_device_batch_size = int(per_device_batch_size)
        self.world_size = int(world_size)
        self.global_batch_size = self.per_device_batch_size * self.world_size
        self.sizes = {name: int(size) for name, size in sizes.items()}
        self.consumed = dict(consumed or {})
        self._round_robin = sampler == "round_robin" and not weights
        self.round_robin_start = int(round_robin_start) if self._round_robin else 0
        # A windowed order with the default sampler gives each rank its own stretch of the order (rank stripes:
        # a rank reads only its shards); what was trained is then not a prefix, so it is recorded as row ids.
        self.rank_stripes = bool(shuffle_window) and batch_sampler == "batch_sampler"
        self._prefix = (
            batch_sampler == "batch_sampler"
            and not self.rank_stripes
            and all(isinstance(c, (int, np.integer)) for c in self.consumed.values())
        )
        self._orders: dict[str, np.ndarray] = {}
        self._batches: dict[str, list[np.ndarray]] = {}
        for name, size in self.sizes.items():
            self._orders[name] = order = dataset_order(
                size,
                seed,
                epoch,
                name,
                shuffle,
                shuffle_window,
                (shard_rows or {}).get(name),
                shuffle_block_size,
            )
            if callable(batch_sampler):  # a user sampler: ``columns(name)`` gives (dataset, label columns)
                from raystx.data.custom_sampler import custom_batches

                dataset, label_columns = columns(name)
                self._batches[name] = custom_batches(
                    batch_sampler,
                    dataset,
                    self.per_device_batch_size,
                    self.world_size,
                    seed,
                    epoch,
                    label_columns,
                    self.consumed.get(name),
                )
                continue
            rest = remaining_order(order, self.consumed.get(name))
            if self.rank_stripes:
                self._batches[name] = rank_striped_batches(
                    rest, self.per_device_batch_size, self.world_size, drop_last
                )
                continue
            texts = labels = None
            if batch_sampler != "batch_sampler":
                texts, labels = columns(name)
            self._batches[name] = compose_batches(
                rest, self.global_batch_size, batch_sampler, texts, labels, drop_last
            )
        counts = {n: len(b) for n, b in self._batches.items()}
        self.schedule = schedule_from_counts(counts, seed, epoch, sampler, weights, self.round_robin_start)
        seen: dict[str, int] = {}
        self._occurrence: list[int] = []
        for name in self.schedule:
            self._occurrence.append(seen.get(name, 0))
            seen[name] = seen.get(name, 0) + 1

    def __len__(self) -> int:
        return len(self.schedule)

    def rows(self, step: int, rank: int) -> tuple[str, np.ndarray]:
        """(dataset name, row indices) that ``rank`` trains on at ``step`` of this epoch.

        A partial global batch (``drop_last=False``) is split evenly: ``ceil(rows / world_size)`` rows per rank,
        the batch padded by repeating its own first rows."""
        name, batch = self.global_rows(step)
        b = self.per_device_batch_size
        if len(batch) < self.global_batch_size:
            b = -(-len(batch) // self.world_size)
            batch = np.resize(batch, b * self.world_size)
        return name, batch[rank * b : (rank + 1) * b]

    def global_rows(self, step: int) -> tuple[str, np.ndarray]:
        """All rows of the global batch at ``step`` (every rank's slice, in rank order)."""
        name = self.schedule[step]
        return name, self._batches[name][self._occurrence[step]]

    def draws_before(self, step: int) -> dict[str, int]:
        """Global batches each dataset gave in steps ``0 .. step-1`` of this plan."""
        counts = dict.fromkeys(self.sizes, 0)
        for name in self.schedule[:step]:
            counts[name] += 1
        return counts

    def consumed_through(self, step: int) -> dict[str, Consumed]:
        """Rows of each dataset trained this epoch before ``step`` of this plan, ``consumed`` included.

        Counts (prefixes of each dataset's epoch order) for the default sampler, row ids otherwise; feed it back
        as ``consumed`` to plan the rest of the epoch with another global batch size.
        """
        step = min(max(int(step), 0), len(self))
        draws = self.draws_before(step)
        if self._prefix:
            return {
                n: int(self.consumed.get(n, 0)) + sum(len(b) for b in self._batches[n][: draws[n]])
                for n in self.sizes
            }
        out: dict[str, Consumed] = {}
        for name in self.sizes:
            before = self.consumed.get(name)
            if before is None:
                parts = []
            elif isinstance(before, (int, np.integer)):
                parts = [self._orders[name][: int(before)]]
            else:
                parts = [np.asarray(before, dtype=np.int64)]
            parts += self._batches[name][: draws[name]]
            out[name] = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        return out

    def round_robin_next(self, step: int) -> int:
        """Position (in dataset order) of the dataset a round-robin cycle draws next after ``step`` steps."""
        if not self._round_robin:
            return 0
        return (self.round_robin_start + int(step)) % max(len(self.sizes), 1)
