"""How many Ray Train workers a ``ScalingConfig`` asks for, fixed or elastic.

Ray Train 2.60 takes ``ScalingConfig(num_workers=n)`` (a fixed group) or ``num_workers=(min, max)`` (an elastic
group: it starts with as many workers as the cluster can hold, at least ``min`` and at most ``max``, restarts with
fewer after a failure, and grows when resources come back). raystx code that needs a number goes through here:

* ``worker_bounds(scaling) -> (min, max)`` (``(n, n)`` for a fixed group; ``(1, 1)`` for ``None``);
* ``is_elastic(scaling)``; ``max_workers(scaling)`` / ``min_workers(scaling)``;
* ``describe_workers(scaling)``: ``"2"`` or ``"1 to 4 (elastic)"`` for messages.

A run that changes size continues from its newest checkpoint; the data position is restored exactly on the new
world size by ``raystx.train.cursor.DataCursor``.
"""

from __future__ import annotations

from typing import Any


def worker_bounds(scaling: Any) -> tuple[int, int]:
    """``(min_workers, max_workers)`` of a ``ScalingConfig`` (or anything with ``num_workers``; ``None``: 1)."""
    value = getattr(scaling, "num_workers", 1) if scaling is not None else 1
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"num_workers={value!r}: give one int or a (min, max) pair of ints")
        low, high = int(value[0]), int(value[1])
        if low < 1 or high < low:
            raise ValueError(f"num_workers=({low}, {high}): an elastic group needs 1 <= min <= max")
        return low, high
    count = int(value or 1)
    return count, count


def is_elastic(scaling: Any) -> bool:
    """True for ``num_workers=(min, max)`` (even when ``min == max``, which Ray also treats as elastic)."""
    return isinstance(getattr(scaling, "num_workers", None), (tuple, list))


def min_workers(scaling: Any) -> int:
    """The fewest workers the run may train with."""
    return worker_bounds(scaling)[0]


def max_workers(scaling: Any) -> int:
    """The most workers the run may train with (the largest global batch, the most resources)."""
    return worker_bounds(scaling)[1]


def describe_workers(scaling: Any) -> str:
    """``"2"`` for a fixed group, ``"1 to 4 (elastic)"`` for an elastic one."""
    low, high = worker_bounds(scaling)
    return f"{low} to {high} (elastic)" if is_elastic(scaling) else str(low)


def trained_world_size(checkpoint_path: str | None, scaling: Any) -> int:
    """The world size a finished run last trained with: its final checkpoint's ``world_size`` (an elastic run may
    end smaller than it started), else ``max_workers(scaling)``."""
    if checkpoint_path:
        from raystx.train.checkpoint import read_trainer_state

        try:
            return int(read_trainer_state(checkpoint_path).world_size or max_workers(scaling))
        except (OSError, ValueError, RuntimeError):  # an unreadable state: the configured size
            pass
    return max_workers(scaling)
