"""Loading a model under FSDP without a full copy per worker (issue 15 item 3, the worker-side part).

What goes in: a model whose parameters are on the meta device (``meta_copy``: buffers kept, no parameter
memory), already sharded with ``fully_shard`` (``FsdpStrategy``), and a saved sentence-transformers directory.
What it does (``load_sharded``): allocates only this rank's shards (``to_empty``; the real buffers are put back,
since non-persistent ones such as BERT's ``position_ids`` are in no weights file), then rank 0 alone reads the
full weights from the directory (in host memory) and torch's ``set_model_state_dict(full_state_dict=True,
broadcast_from_rank0=True)`` sends every rank its shards. Only rank 0 ever holds the full weights.

On the worker: ``WorkerPayload.initial_weights`` (a saved model directory) with a payload whose model is a meta
copy (``meta_payload``) makes ``build_loop`` call ``load_sharded`` right after sharding. The driver builds such
payloads when it can prove the directory holds the model's weights and every node reads it
(``raystx.train.fsdp_ship``).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters are on the meta device (same names, shapes, dtypes, ``requires_grad``);
    buffers, tokenizers and configs are copied as they are."""
    memo: dict[int, Any] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def meta_payload(model: nn.Module, losses: dict[str, nn.Module]) -> tuple[nn.Module, dict[str, nn.Module]]:
    """``meta_copy`` of ``model`` and copies of ``losses`` that share it (a loss's own parameters, e.g. a
    SoftmaxLoss head, stay real): what a payload ships instead of the full model."""
    memo: dict[int, Any] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy((model, losses), memo)


def to_device(module: nn.Module, device: torch.device) -> nn.Module:
    """``module.to(device)``, leaving tensors on the meta device where they are (``to`` cannot copy them)."""
    return module._apply(lambda t: t if t.is_meta else t.to(device))


def load_sharded(
    model: nn.Module,
    model_dir: str | os.PathLike,
    device: torch.device,
    strategy: Any = None,
    loader_kwargs: dict[str, Any] | None = None,
) -> None:
    """Materialise the meta parameters of the sharded ``model`` on ``device`` with the weights saved in
    ``model_dir`` (every rank calls this; only rank 0 reads the directory, with ``SentenceTransformer``'s
    ``loader_kwargs``: those the driver's model was loaded with). ``strategy`` (the worker's) must be FSDP's:
    replicated training has no shards to fill. ``ValueError`` when the saved weights do not fit."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if strategy is not None and getattr(strategy, "name", None) != "fsdp":
        raise ValueError(
            "initial_weights (meta-device loading) needs fsdp=True: replicated training holds the full model "
            "on every worker anyway; ship the model itself"
        )

    buffers = {name: b.detach().clone() for name, b in model.named_buffers() if not b.is_meta}
    model.to_empty(device=device)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name in buffers:
                buffer.copy_(buffers[name])
    rank0 = not (dist.is_initialized() and dist.get_rank() != 0)
    state: dict[str, torch.Tensor] = {}
    if rank0:
        state = _read_full_state(model, model_dir, loader_kwargs or {})
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, state, options=options)


def _read_full_state(
    model: nn.Module, model_dir: str | os.PathLike, loader_kwargs: dict[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """The full state dict of the model saved in ``model_dir`` (host memory), checked against ``model``'s keys."""
    from raystx.models import SentenceTransformer

    loaded = SentenceTransformer(str(model_dir), device="cpu", **(loader_kwargs or {}))
    state = loaded.state_dict()
    wanted = set(model.state_dict())
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - wanted)
    if missing or unexpected:
        raise ValueError(
            f"the model saved in {model_dir} does not fit the model being sharded: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return state
