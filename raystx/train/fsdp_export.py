"""The consolidated sentence-transformers directory of an FSDP run, streamed from the shards: ``stream_export``.

What goes in: the sharded model (``FsdpStrategy.model``), rank 0's weightless skeleton of it, a directory and
``max_shard_size``. What comes out: on rank 0's file system, the directory ``model.save(...)`` would write, every
Transformer module's weights as ``model.safetensors`` or, when bigger than ``max_shard_size``,
``model-0000i-of-0000N.safetensors`` + ``model.safetensors.index.json`` (the Hugging Face layout; the split is
huggingface_hub's ``split_torch_state_dict_into_shards``, the one transformers' ``save_pretrained`` uses, tied
weights removed by transformers' own rule).

How: every rank calls it (gathers are collectives). The small rest (modules other than the Transformers' Hugging
Face models: a Dense, buffers) is gathered to rank 0's host memory and written by ``model.save`` on a copy of the
skeleton whose Transformers write their config but no weights (``Transformer.save_weights``). Then each
Transformer's weights are gathered one shard file at a time: each tensor is all-gathered (``full_tensor``), copied
to rank 0's host memory and dropped from the device, and rank 0 writes the file before the next one is gathered.
So rank 0 holds at most one shard file in host memory, and no device ever holds more than one full tensor.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

WEIGHTS_PATTERN = "model{suffix}.safetensors"
INDEX_NAME = "model.safetensors.index.json"


def default_max_shard_size() -> int | str:
    """transformers' ``PreTrainedModel.save_pretrained`` default ``max_shard_size``."""
    from transformers import PreTrainedModel

    return inspect.signature(PreTrainedModel.save_pretrained).parameters["max_shard_size"].default


def _is_dtensor(tensor: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _rank0() -> bool:
    return not (dist.is_initialized() and dist.get_rank() != 0)


def streamed_modules(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """``(index, child name, Transformer)`` for each top-level Transformer whose Hugging Face model's weights
    are streamed (modules with a PEFT adapter are not: they save the small adapter layout)."""
    from raystx.models.adapters import has_adapters
    from raystx.models.transformer import Transformer

    return [
        (idx, name, module)
        for idx, (name, module) in enumerate(model.named_children())
        if isinstance(module, Transformer) and not has_adapters(module.auto_model)
    ]


class _Gather:
    """Full tensors of the sharded state dict, one at a time, on rank 0's host (None on the other ranks)."""

    def __init__(self, state: dict[str, Any], device: torch.device) -> None:
        self.state, self.device, self.rank0 = state, device, _rank0()

    def __call__(self, key: str) -> torch.Tensor | None:
        value = self.state[key]
        if _is_dtensor(value):
            if value.device.type == "cpu" and self.device.type == "cuda":  # CPU-offloaded shard, NCCL group
                value = value.to(self.device)
            value = value.full_tensor()
        if not self.rank0:
            return None
        return value.detach().to("cpu", copy=True).contiguous()


def stream_export(
    model: nn.Module,
    skeleton: nn.Module | None,
    directory: Path,
    max_shard_size: int | str,
    device: torch.device,
) -> None:
    """Write the sentence-transformers directory of the sharded ``model`` (see the module docstring); every rank
    calls it, ``skeleton`` (``export_skeleton`` of the model) is rank 0's and None elsewhere."""
    directory = Path(directory)
    state = model.state_dict()  # DTensors for sharded parameters: nothing is gathered here
    gather = _Gather(state, device)
    streamed = streamed_modules(model)
    prefixes = tuple(f"{name}.auto_model." for _, name, _ in streamed)
    rest: dict[str, torch.Tensor] = {}
    for key in state:
        if not key.startswith(prefixes):
            full = gather(key)
            if full is not None:
                rest[key] = full
    plans: list[Any] = [None]
    writer: nn.Module | None = None
    if _rank0():
        assert skeleton is not None
        writer = copy.deepcopy(skeleton)
        _load_rest(writer, rest, prefixes)
        for _, name, _ in streamed:
            writer._modules[name].save_weights = False
        writer.save(str(directory))
        plans = [[_shard_plan(writer._modules[name].auto_model, max_shard_size) for _, name, _ in streamed]]
    if dist.is_initialized():
        dist.broadcast_object_list(plans, src=0)
    from raystx.models.sentence_transformer import module_folder

    for (idx, name, module), plan in zip(streamed, plans[0]):
        auto_model = writer._modules[name].auto_model if writer is not None else None
        _write_shards(directory / module_folder(idx, module), f"{name}.auto_model.", plan, gather, auto_model)


def _load_rest(writer: nn.Module, rest: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    """Assign the gathered tensors into the weightless copy; every parameter outside ``prefixes`` must get one."""
    _, unexpected = writer.load_state_dict(rest, strict=False, assign=True)
    empty = [n for n, p in writer.named_parameters() if p.is_meta and not n.startswith(prefixes)]
    if unexpected or empty:
        raise RuntimeError(
            f"FSDP export: the gathered state does not fit the model ({empty[:5]}, {unexpected[:5]})"
        )


def _shard_plan(auto_model: nn.Module, max_shard_size: int | str) -> dict[str, Any]:
    """Which tensor names go to which file (transformers' split and tied-weight rule on the weightless model)."""
    from huggingface_hub import split_torch_state_dict_into_shards

    meta = {k: v.to("meta") for k, v in auto_model.state_dict().items()}
    meta = _without_tied(meta, auto_model)
    # save_pretrained splits the state dict after reverting transformers' weight conversions; where that only
    # reorders the names (no renaming), split in that order and write the tensors as they are, as it does;
    # otherwise split the model's own names and revert each file's tensors (its path for offloaded models)
    reverted = _revert_conversions(auto_model, meta)
    per_file = set(reverted) != set(meta)
    if not per_file:
        meta = {name: meta[name] for name in reverted}
    split = split_torch_state_dict_into_shards(
        meta, filename_pattern=WEIGHTS_PATTERN, max_shard_size=max_shard_size
    )
    return {
        "files": [(file, list(names)) for file, names in split.filename_to_tensors.items()],
        "sharded": split.is_sharded,
        "metadata": dict(split.metadata),
        "revert_per_file": per_file,
    }


def _without_tied(meta: dict[str, torch.Tensor], auto_model: nn.Module) -> dict[str, torch.Tensor]:
    """``meta`` without the aliases of tied weights: transformers' own rule where it has one (5.x), else the
    first name of each shared parameter."""
    try:
        from transformers.modeling_utils import remove_tied_weights_from_state_dict
    except ImportError:
        seen: set[int] = set()
        aliases = set()
        for name, param in auto_model.named_parameters(remove_duplicate=False):
            if id(param) in seen:
                aliases.add(name)
            seen.add(id(param))
        return {k: v for k, v in meta.items() if k not in aliases}
    return remove_tied_weights_from_state_dict(meta, auto_model)


def _write_shards(
    folder: Path, prefix: str, plan: dict[str, Any], gather: _Gather, auto_model: nn.Module | None
) -> None:
    """Gather and write the files of ``plan`` one by one (rank 0 writes), then the index when sharded."""
    from safetensors.torch import save_file

    weight_map: dict[str, str] = {}
    for file, names in plan["files"]:
        tensors = {name: gather(prefix + name) for name in names}
        if auto_model is None:
            continue
        if plan["revert_per_file"]:
            tensors = _revert_conversions(auto_model, tensors)
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, file))
        del tensors
    if auto_model is not None and plan["sharded"]:
        total = sum(p.numel() for p in auto_model.parameters())
        index = {"metadata": {"total_parameters": total, **plan["metadata"]}, "weight_map": weight_map}
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _revert_conversions(auto_model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' renaming back to the checkpoint's original names, as ``save_pretrained`` does per shard for
    offloaded models (a no-op for models loaded without conversions)."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # transformers without weight conversions
        return tensors
    return revert_weight_conversion(auto_model, tensors)
