"""Helpers for the wrapper losses (Matryoshka, AdaptiveLayer): temporary forward patches and loss arithmetic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

LossValue = Tensor | dict[str, Tensor]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model behind DistributedDataParallel (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


@contextmanager
def patched_forward(module: nn.Module, forward: Callable[..., Any]) -> Iterator[None]:
    """Make ``module(...)`` call ``forward`` inside the block; the previous forward is restored afterwards."""
    had_own = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if had_own:
            module.forward = previous
        else:
            del module.forward


def add_weighted(total: LossValue | None, value: LossValue, weight: float) -> LossValue:
    """``total + weight * value`` for scalar losses or dicts of named components (keys are merged)."""
    if isinstance(value, dict):
        out = dict(total) if isinstance(total, dict) else {}
        for key, component in value.items():
            out[key] = out[key] + weight * component if key in out else weight * component
        return out
    scaled = value * weight
    return scaled if total is None else total + scaled


def sum_components(value: LossValue) -> Tensor:
    """A scalar loss, or the sum of a dict's components."""
    return sum(value.values()) if isinstance(value, dict) else value  # type: ignore[return-value]
