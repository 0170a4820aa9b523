"""The two-level (shard-windowed) shuffle of a dataset's rows: a pure function of seed, epoch, name and shards.

A full permutation scatters the rows a rank needs in its next steps over the whole dataset. The windowed
shuffle keeps them in a few shards (MosaicML Streaming's block shuffle):

1. the shards (Parquet row groups of the staged data, or fixed blocks of ``block_size`` rows where the source
   has no row groups) are put in a seeded random order;
2. that order is cut into consecutive windows of ``window`` shards, and the rows inside each window are
   shuffled (seeded).

Every row still comes exactly once per epoch. Any run of ``window`` shards' worth of consecutive positions
touches at most ``2 * window`` shards (the tail of one window and the head of the next), so a rank's next
steps read from a bounded set of shards. The trade-off: a larger window mixes more (rows of different shards
meet in a batch) and reads from more shards at a time; a window covering every shard is the full permutation
(``window_order`` then returns exactly ``full_order``'s order).

In: ``shard_rows`` (rows per shard, in storage order, summing to the dataset's rows), ``seed``, ``epoch``,
``name`` (the dataset), ``window``. Out: an ``int64`` array, a permutation of ``range(sum(shard_rows))``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

DEFAULT_BLOCK_SIZE = 8192
"""Rows per shard for sources without row groups (``shuffle_block_size``'s default; the staged row group)."""

SUGGESTED_WINDOW = 8
"""The window ``bench/shuffle.py`` measures against the full permutation (documented suggestion, not a
default: ``shuffle_window=None`` keeps the full permutation)."""


def rng_for(seed: int, epoch: int, salt: str) -> np.random.Generator:
    """The seeded generator for one (seed, epoch, purpose)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), zlib.crc32(salt.encode("utf-8"))])


def full_order(num_rows: int, seed: int, epoch: int, name: str) -> np.ndarray:
    """The full permutation of a dataset's rows for ``epoch`` (raystx's default order)."""
    return rng_for(seed, epoch, "rows:" + name).permutation(num_rows).astype(np.int64)


def block_rows(num_rows: int, block_size: int) -> list[int]:
    """Rows per shard when a dataset is cut into fixed blocks of ``block_size`` rows (the last one shorter)."""
    size = int(block_size)
    if size < 1:
        raise ValueError(f"shuffle_block_size must be >= 1 (got {block_size})")
    full, rest = divmod(int(num_rows), size)
    return [size] * full + ([rest] if rest else [])


def check_shard_rows(name: str, num_rows: int, shard_rows: Sequence[int]) -> list[int]:
    """``shard_rows`` as ints, checked to be non-negative and to add up to ``num_rows``."""
    rows = [int(n) for n in shard_rows]
    if any(n < 0 for n in rows) or sum(rows) != int(num_rows):
        raise ValueError(
            f"dataset {name!r}: its shard sizes add up to {sum(rows)} rows (or hold a negative size) but the "
            f"dataset has {num_rows} rows; the shards must partition the dataset"
        )
    return rows


def window_order(shard_rows: Sequence[int], seed: int, epoch: int, name: str, window: int) -> np.ndarray:
    """The windowed order of a dataset's rows for ``epoch`` (see the module docstring)."""
    window = int(window)
    if window < 1:
        raise ValueError(
            f"shuffle_window must be >= 1 here (got {window}); None/0 means the full permutation"
        )
    sizes = np.asarray([int(n) for n in shard_rows], dtype=np.int64)
    total = int(sizes.sum())
    nonempty = int((sizes > 0).sum())
    if window >= nonempty:
        return full_order(total, seed, epoch, name)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = rng_for(seed, epoch, "shards:" + name)
    shards = rng.permutation(len(sizes))
    out = np.empty(total, dtype=np.int64)
    pos = 0
    for first in range(0, len(shards), window):
        group = shards[first : first + window]
        rows = np.concatenate([np.arange(starts[s], starts[s] + sizes[s], dtype=np.int64) for s in group])
        out[pos : pos + len(rows)] = rows[rng.permutation(len(rows))]
        pos += len(rows)
    return out


def shard_of_rows(shard_rows: Sequence[int]) -> np.ndarray:
    """For every row id, the index of the shard holding it (for locality checks and measurements)."""
    sizes = np.asarray([int(n) for n in shard_rows], dtype=np.int64)
    return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)


def rank_striped_batches(
    order: np.ndarray, per_device_batch_size: int, world_size: int, drop_last: bool = True
) -> list[np.ndarray]:
    """Global batches in which each rank walks its own stretch of ``order`` (used with a windowed order).

    ``order`` is cut into ``world_size`` consecutive stretches of ``n * per_device_batch_size`` rows (``n`` the
    number of full global batches); global batch ``s`` is rank 0's rows ``s*b .. (s+1)*b`` of stretch 0, then
    rank 1's of stretch 1, and so on, so ``EpochPlan.rows(s, r)`` are always rows of stretch ``r``: with a
    windowed order a rank then reads only the shards of its stretch (its share of the data) instead of every
    rank reading the shards of the same window. The rows left over (fewer than one global batch) are dropped,
    or with ``drop_last=False`` form a last partial batch in order. Every row of ``order`` appears at most once.
    """
    b, w = int(per_device_batch_size), int(world_size)
    n = len(order) // (b * w)
    stretches = [order[r * n * b : (r + 1) * n * b] for r in range(w)]
    batches = [np.concatenate([part[s * b : (s + 1) * b] for part in stretches]) for s in range(n)]
    rest = order[w * n * b :]
    if len(rest) and not drop_last:
        batches.append(rest)
    return batches
