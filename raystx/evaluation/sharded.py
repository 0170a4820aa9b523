"""Sharded evaluation: every rank of a ``torch.distributed`` group encodes a slice of an evaluator's texts.

Evaluators encode through one seam (``raystx.evaluation._encode.encode``), which calls :func:`encode_rows`.
Inside :func:`sharded_encoding` on a group of ``W > 1`` ranks, a list of ``n`` texts is cut into ``W``
contiguous slices (rank ``r`` takes ``[r * n // W, (r + 1) * n // W)``), each rank encodes its slice, and the
pieces are all-gathered (bytes of each row, so any dtype — float, int8/uint8 quantized — comes back bit for
bit) into the original order on every rank. Evaluators already deduplicate before they encode, so a text is
encoded once. Every rank then computes the metric on the full embeddings; the caller keeps rank 0's result.
Outside the context, or in one process, :func:`encode_rows` just encodes locally.

Contract: every rank runs the same evaluator on the same data, so all ranks make the same collective calls in
the same order. That holds for raystx's evaluators; a user evaluator may do anything, so
:func:`run_evaluator` runs an evaluator on all ranks only when :func:`is_shardable` says so — its ``__call__``
is raystx's own, or it sets ``shardable = True`` — and otherwise on rank 0 alone with sharding suspended
(exactly the old, unsharded behaviour). ``SequentialEvaluator`` applies the same rule to each child
(:func:`run_child`), so built-in children are sharded next to a custom one.

In: a function that encodes a list locally (returns an ``(n, ...)`` numpy array or tensor) and the list.
Out: the same type, shape and dtype as one local call on the whole list would give.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from raystx.distributed import all_gather_no_grad, get_rank, get_world_size, is_distributed

MIN_ROWS_PER_RANK = 2
"""Lists shorter than ``MIN_ROWS_PER_RANK * world_size`` are encoded whole on every rank (no collective):
a single query, say, costs less to encode than to gather."""

_state = {"active": 0, "suspended": 0}

Embeddings = TypeVar("Embeddings", np.ndarray, torch.Tensor)


@contextmanager
def sharded_encoding() -> Iterator[None]:
    """Inside the block, evaluator encodes are split across the ranks of the default process group."""
    _state["active"] += 1
    try:
        yield
    finally:
        _state["active"] -= 1


@contextmanager
def rank_local() -> Iterator[None]:
    """Inside the block, encodes stay local even within :func:`sharded_encoding` (one rank runs alone)."""
    _state["suspended"] += 1
    try:
        yield
    finally:
        _state["suspended"] -= 1


def sharding_active() -> bool:
    """Whether an encode now is split across ranks."""
    return bool(_state["active"]) and not _state["suspended"] and is_distributed()


def shard_bounds(num_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, end)`` of rank ``rank``'s contiguous slice; the slices of all ranks cover ``range(num_rows)``."""
    return rank * num_rows // world_size, (rank + 1) * num_rows // world_size


def _comm_device() -> torch.device:
    """Where the process group's collectives run: the current CUDA device for NCCL, the CPU otherwise."""
    if "nccl" in str(dist.get_backend()).lower():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(local: Embeddings) -> Embeddings:
    """All ranks' ``local`` rows concatenated in rank order (rows may differ in number, not in shape or dtype).

    The rows travel as raw bytes, so the result is bit-identical to each rank's piece whatever the dtype.
    A numpy input gives a numpy output; a tensor gives a tensor on ``local``'s device.
    """
    as_numpy = not isinstance(local, torch.Tensor)
    tensor = torch.from_numpy(np.ascontiguousarray(local)) if as_numpy else local.detach()
    row_shape, dtype, device = tuple(tensor.shape[1:]), tensor.dtype, tensor.device
    raw = tensor.contiguous().reshape(tensor.shape[0], -1).view(torch.uint8)
    gathered = all_gather_no_grad(raw.to(_comm_device()))
    out = gathered.to(device).view(dtype).reshape(-1, *row_shape)
    return out.numpy() if as_numpy else out


def encode_rows(encode_local: Callable[[list[Any]], Embeddings], sentences: Sequence[Any]) -> Embeddings:
    """``encode_local(sentences)``, split across ranks when :func:`sharding_active` (see the module doc)."""
    sentences = list(sentences)
    if not sharding_active():
        return encode_local(sentences)
    world = get_world_size()
    if len(sentences) < MIN_ROWS_PER_RANK * world:
        return encode_local(sentences)
    start, end = shard_bounds(len(sentences), get_rank(), world)
    piece = encode_local(sentences[start:end])
    if not isinstance(piece, (np.ndarray, torch.Tensor)):
        piece = np.asarray(piece)
    return gather_rows(piece)


def is_shardable(evaluator: Any) -> bool:
    """Whether ``evaluator`` may run on every rank with sharded encodes: its ``shardable`` attribute when it has
    one, else whether the ``__call__`` it runs is defined by raystx's evaluators (not by a user's class)."""
    flag = getattr(evaluator, "shardable", None)
    if flag is not None:
        return bool(flag)
    for cls in type(evaluator).__mro__:
        if "__call__" in vars(cls):
            return cls.__module__.startswith("raystx.evaluation.")
    return False


@contextmanager
def _quiet_logs(quiet: bool) -> Iterator[None]:
    """Raise ``raystx.evaluation``'s log level to WARNING in the block (ranks other than 0 repeat rank 0's lines)."""
    if not quiet:
        yield
        return
    log = logging.getLogger("raystx.evaluation")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _call(evaluator: Any, model: Any, output_path: str | None, epoch: int, steps: int) -> dict[str, float]:
    """``evaluator(model)`` when the other arguments are the defaults (a plain callable may take only the model)."""
    if output_path is None and epoch == -1 and steps == -1:
        return evaluator(model)
    return evaluator(model, output_path, epoch, steps)


def run_evaluator(
    evaluator: Any, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
) -> dict[str, float] | None:
    """Evaluate ``model`` with all ranks of the process group; every rank must call this at the same time.

    Returns the metrics on rank 0 and ``None`` on the other ranks (in one process: the metrics). A shardable
    evaluator runs on every rank with sharded encodes (``output_path`` is given to rank 0 only, so files are
    written once); any other runs on rank 0 alone, as an unsharded evaluation would.
    """
    if not is_distributed():
        return _call(evaluator, model, output_path, epoch, steps)
    rank = get_rank()
    if is_shardable(evaluator):
        with sharded_encoding(), _quiet_logs(rank != 0):
            metrics = _call(evaluator, model, output_path if rank == 0 else None, epoch, steps)
        return metrics if rank == 0 else None
    if rank != 0:
        return None
    with rank_local():
        return _call(evaluator, model, output_path, epoch, steps)


def run_child(
    evaluator: Any, model: Any, output_path: str | None, epoch: int, steps: int
) -> dict[str, float] | float | None:
    """One child of a composite evaluator (``SequentialEvaluator``): inside a sharded evaluation a child that is
    not shardable runs on rank 0 alone (``None`` elsewhere); otherwise the child is simply called."""
    if not sharding_active() or is_shardable(evaluator):
        return evaluator(model, output_path, epoch, steps)
    if get_rank() != 0:
        return None
    with rank_local():
        return evaluator(model, output_path, epoch, steps)
