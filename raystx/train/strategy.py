"""How parameters are held and synced across workers: the one place the step loop asks.

A strategy is chosen once per run (``build_strategy``) and the loop calls the same four methods whatever it is:
``named_parameters()`` (what the optimizer trains), ``sync(local_bad)`` (average gradients over ranks after the
last micro-batch, returning whether any rank's loss was non-finite), ``clip_grad_norm(max_norm)`` and
``zero_grad(optimizer)``. Two more things describe it: ``weights`` writes and reads the model and optimizer part
of a checkpoint (``save``/``load``, called on every rank), and ``collective_forward`` says that every rank must
run every forward and backward (parameters are gathered inside them), so a non-finite loss is still
back-propagated (the step is skipped after) and the evaluator runs on every rank.

- ``ReplicatedStrategy`` (the default): every worker holds the whole model; dense gradients live in one flat
  buffer all-reduced in place, large embedding tables go row-sparse (``raystx.train.optim.GradientSync``).
- ``FsdpStrategy`` (``fsdp=True``, ``raystx.train.strategy_fsdp``): parameters, gradients and optimizer state
  sharded with FSDP2, checkpoints written with ``torch.distributed.checkpoint``.

Adapter (LoRA) strategies plug in here without the loop branching on them.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.checkpoint import ReplicatedWeights
from raystx.train.optim import GradientSync, row_sparse_flags, unique_parameters


class ParameterStrategy(Protocol):
    """What the step loop needs from a way of holding and syncing parameters."""

    name: str
    collective_forward: bool
    weights: Any

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]: ...

    def sync(self, local_bad: bool) -> bool: ...

    def clip_grad_norm(self, max_norm: float) -> None: ...

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None: ...


class ReplicatedStrategy:
    """Whole model on every worker; gradients averaged in one flat all-reduce (a no-op on one worker)."""

    name = "replicated"
    collective_forward = False

    def __init__(self, model: nn.Module, losses: dict[str, nn.Module]) -> None:
        self.weights = ReplicatedWeights(model)
        modules = [model, *losses.values()]
        self._named = unique_parameters(modules)
        self.params = [p for _, p in self._named]
        self._sync = GradientSync(self.params, row_sparse_flags(modules, self.params))

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return list(self._named)

    def sync(self, local_bad: bool) -> bool:
        return self._sync.sync(local_bad)

    def clip_grad_norm(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, max_norm)

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        self._sync.zero_grad(optimizer)


def build_strategy(
    args: SentenceTransformerTrainingArguments,
    model: nn.Module,
    losses: dict[str, nn.Module],
    device: torch.device | None = None,
    rank: int = 0,
) -> ParameterStrategy:
    """The parameter strategy the arguments ask for: ``FsdpStrategy`` with ``fsdp`` set, else replicated."""
    from raystx.train.fsdp_options import parse_fsdp

    options = parse_fsdp(getattr(args, "fsdp", None), getattr(args, "fsdp_config", None))
    if options is None:
        return ReplicatedStrategy(model, losses)
    from raystx.train.strategy_fsdp import FsdpStrategy

    return FsdpStrategy(model, losses, options, device or torch.device("cpu"), rank)
