"""Run a function in N local processes joined by a gloo process group and collect what each returns.

``run_distributed(fn, world_size=2, args=(...))`` spawns ``world_size`` processes (``spawn`` start method,
loopback TCP rendezvous on a free port), calls ``fn(rank, world_size, *args)`` in each with the default
process group initialised, and returns the list of results in rank order. ``fn`` must be importable by
name (a module-level function) and its result must be ``torch.save``-able (tensors, dicts, lists, numbers).
An exception in a worker is re-raised in the caller with the worker's traceback; a worker that does not
finish within ``timeout`` seconds is killed and ``TimeoutError`` is raised.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str, fn: Callable[..., Any], args: tuple) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_distributed(
    fn: Callable[..., Any], world_size: int = 2, args: tuple = (), timeout: float = 120.0
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo ranks; return the results by rank."""
    with tempfile.TemporaryDirectory(prefix="raystx-dist-") as out_dir:
        context = mp.start_processes(
            _worker,
            args=(world_size, free_port(), out_dir, fn, args),
            nprocs=world_size,
            join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + timeout
        while not context.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                for process in context.processes:
                    if process.is_alive():
                        process.kill()
                raise TimeoutError(f"distributed run of {fn.__name__} did not finish within {timeout} s")
        return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


# -- small helpers shared by the loss tests (and by the distributed workers) ------------------------------


def loss_and_grads(
    model: torch.nn.Module,
    loss: Callable[..., Any],
    features: list[dict],
    scale: float = 1.0,
    labels: torch.Tensor | None = None,
):
    """``(loss value, {parameter name: gradient})`` after ``(scale * loss(features, labels)).backward()``.

    The feature dicts are shallow-copied first (models write their outputs into them). Parameter names
    of a sentence-transformers model (``0.model.*``) are renamed to raystx's (``0.auto_model.*``).
    """
    model.zero_grad(set_to_none=True)
    value = loss([dict(f) for f in features], labels)
    if isinstance(value, dict):
        value = sum(value.values())
    (value * scale).backward()
    grads = {
        name.replace("0.model.", "0.auto_model.", 1): p.grad.detach().clone()
        for name, p in model.named_parameters()
        if p.grad is not None
    }
    return value.detach(), grads


def assert_same_loss_and_grads(ours, reference, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Both results from :func:`loss_and_grads` agree (same value, same parameters, same gradients).

    The default tolerances suit float64 models (float32 sums of per-token gradients drift by ~1e-5).
    """
    value, grads = ours
    ref_value, ref_grads = reference
    torch.testing.assert_close(value, ref_value, rtol=rtol, atol=atol)
    assert grads.keys() == ref_grads.keys() and len(grads) > 0, sorted(set(grads) ^ set(ref_grads))
    for name in grads:
        torch.testing.assert_close(
            grads[name], ref_grads[name], rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )
