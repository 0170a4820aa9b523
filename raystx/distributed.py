"""Collectives that losses use to span the global batch across Ray Train workers.

Only ``torch.distributed`` is used here (no Ray import), so losses stay testable in one process: when no
process group is initialised every function is the identity on a world of size 1.

Gradient convention (the trainer relies on it): each rank computes its loss on its local rows against the
gathered candidates, gradients of the gathered tensor flow back to the rank that produced each row (summed
over all ranks' losses), and the trainer then *averages* parameter gradients over ranks. The result is the
gradient of ``mean_r(loss_r)``, i.e. exactly the single-process gradient on the union batch when every rank
holds the same number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor

_local_only_depth = 0


def is_distributed() -> bool:
    if _local_only_depth:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def local_only() -> Iterator[None]:
    """Inside the block every function here acts as in one process (no gather, world size 1): a rank computes a
    loss on its own rows only, as the sharded evaluation loss does (ranks may run different numbers of batches)."""
    global _local_only_depth
    _local_only_depth += 1
    try:
        yield
    finally:
        _local_only_depth -= 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _gather_padded(tensor: Tensor) -> tuple[list[Tensor], list[int]]:
    """All-gather tensors whose first dimension may differ between ranks."""
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    longest = max(lengths)
    padded = tensor
    if tensor.shape[0] < longest:
        pad = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad], dim=0)
    out = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(out, padded.contiguous())
    return out, lengths


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        parts, lengths = _gather_padded(tensor)
        ctx.lengths = lengths
        ctx.rank = dist.get_rank()
        return torch.cat([p[:n] for p, n in zip(parts, lengths)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss contributes to every row
        start = sum(ctx.lengths[: ctx.rank])
        return grad[start : start + ctx.lengths[ctx.rank]]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 (rank order); gradients flow to every producer."""
    if not is_distributed():
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 without gradient (labels, scores, ids)."""
    if not is_distributed():
        return tensor
    parts, lengths = _gather_padded(tensor.detach())
    return torch.cat([p[:n] for p, n in zip(parts, lengths)], dim=0)


def local_offset(local_size: int) -> int:
    """Index of this rank's first row in a tensor gathered with the functions above (equal sizes assumed)."""
    return get_rank() * local_size


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over ranks (no gradient); identity in one process."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()
