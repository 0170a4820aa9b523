"""Sharded data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``): ``FsdpStrategy``.

What goes in: the model (on its device, not yet sharded), the losses, ``FsdpOptions``. What it does:

- **Wrapping.** Every top-level module of the sentence-transformers model that has parameters (the
  ``Transformer``, a ``Dense``, ...) becomes an FSDP root of its own, and inside it each transformer block (the
  classes of the Hugging Face model's ``_no_split_modules``, or ``fsdp_config["transformer_layer_cls_to_wrap"]``,
  else the children of the largest ``nn.ModuleList``) is sharded on its own. The model itself is not an FSDP
  module: ``encode`` calls ``model.forward`` directly, which would skip a root's hooks, while the top-level
  modules are always called through ``__call__``. The packed (padding-free) forward stays on: the BERT-style
  packed layer is registered as each sharded layer's FSDP forward method (torch's
  ``register_fsdp_forward_method``), so its weights are all-gathered around it and its gradients reduce-scattered
  as for ``forward``; decoders' packed forward calls the Hugging Face layers themselves. Where the wrapping puts
  FSDP units inside a layer, packing is switched off for that model (the padded forward gives the same
  embeddings on real tokens).
- **Gradients.** Backward reduce-scatters each block's gradient (averaged over ranks, as the replicated flat
  all-reduce does); ``sync`` then only averages the loss modules' own parameters (kept replicated, e.g. the
  ``SoftmaxLoss`` head) and carries the non-finite flag in the same all-reduce, as ``ReplicatedStrategy`` does. A
  sharded parameter that got no gradient (an unused pooler) gets a zero one, so AdamW's weight decay and step
  count treat it as the replicated strategy does. ``clip_grad_norm`` takes the norm over the sharded gradients
  (DTensors: one all-reduce) and the replicated ones together.
- **Every rank runs every forward and backward** (``collective_forward``): a block's parameters are all-gathered
  inside its forward, so a rank whose loss is not finite still runs backward (the step is skipped afterwards),
  and the evaluator runs on every rank (rank 0 keeps the metrics).
- **GradCache.** A cached loss embeds mini-batches without a graph (each block is all-gathered and freed again),
  then, inside the loss's backward, re-embeds each mini-batch with a graph and back-propagates the cached
  embedding gradients: every re-forward all-gathers the blocks again and every mini-batch backward
  reduce-scatters its gradient, which FSDP accumulates into the sharded gradient. Ranks must therefore run the
  same number of mini-batches: equal per-rank batches with ``mini_batch_size`` (``mini_batch_num_tokens``, which
  cuts by local token counts, is refused on the driver).
- **Checkpoints** (``FsdpWeights``): ``fsdp/`` holds the model and optimizer shards written with
  ``torch.distributed.checkpoint`` (each rank its own file, rank 0 the metadata; DCP re-shards on load, so a
  checkpoint resumes on another number of workers), ``model/`` the consolidated sentence-transformers
  directory, streamed to rank 0's disk one weights file at a time (``raystx.train.fsdp_export``: files of at most
  ``fsdp_config["max_shard_size"]``, the Hugging Face sharded layout; never the full model on a GPU).
- **PEFT adapters (LoRA + FSDP).** ``add_adapter`` froze the base weights, so the blocks hold frozen base and
  trainable adapter parameters in one FSDP unit: FSDP2 all-gathers both for the forward and reduce-scatters only
  the gradients that exist (the adapter's); ``named_parameters`` (hence the optimizer, ``sync`` and the clipping)
  covers the trainable parameters only. The sharded checkpoint then holds the adapter and its optimizer state
  (the frozen base is never written: the run rebuilds it from the base model), and the exported ``model/`` is
  the PEFT adapter layout that replicated LoRA writes, gathered from the adapter (and any other trainable
  module) alone: the frozen base weights of the adapter's host are never gathered to rank 0.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from raystx.train.fsdp_options import FsdpOptions
from raystx.train.optim import GradientSync, row_sparse_flags, unique_parameters

logger = logging.getLogger("raystx.train")

FSDP_DIR = "fsdp"


def _is_dtensor(tensor: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def block_classes(module: nn.Module, wanted: tuple[str, ...] = ()) -> set[str]:
    """Class names of the transformer blocks in ``module``: ``wanted`` if given, else every Hugging Face
    model's ``_no_split_modules`` found inside it."""
    if wanted:
        return set(wanted)
    names: set[str] = set()
    for sub in module.modules():
        names.update(getattr(sub, "_no_split_modules", None) or ())
    return names


def find_blocks(module: nn.Module, wanted: tuple[str, ...] = ()) -> list[nn.Module]:
    """The sub-modules of ``module`` to shard one by one (outermost matches only), else the children of the
    largest ``nn.ModuleList`` (the layers of an encoder without ``_no_split_modules``)."""
    classes = block_classes(module, wanted)
    found: list[nn.Module] = []
    inside: set[int] = set()
    for sub in module.modules():
        if sub is module or id(sub) in inside:
            continue
        if type(sub).__name__ in classes:
            found.append(sub)
            inside.update(id(m) for m in sub.modules())
    if found or wanted:
        return found
    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        return []
    largest = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
    return list(largest)


def top_level_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that become FSDP roots: the model's children with parameters, or the model itself when
    it holds parameters of its own."""
    if any(True for _ in model.parameters(recurse=False)) or not model._modules:
        return [model]
    return [m for m in model.children() if any(True for _ in m.parameters())]


def _adapter_host(model: nn.Module) -> nn.Module | None:
    """The Hugging Face model inside ``model`` that carries PEFT adapters, or None."""
    from raystx.models.adapters import find_adapter_host

    return find_adapter_host(model)


def frozen_base_names(model: nn.Module, host: nn.Module | None) -> set[str]:
    """Names (in ``model.named_parameters()``) of the frozen parameters inside the adapter host ``host``: the
    base weights an adapter run never changes, hence never checkpoints nor exports. Empty without an adapter."""
    if host is None:
        return set()
    inside = {id(p) for p in host.parameters() if not p.requires_grad}
    return {name for name, p in model.named_parameters() if id(p) in inside}


def export_skeleton(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters live on the meta device (no memory), buffers and tokenizer kept:
    the consolidated state dict is assigned into a copy of it to write the sentence-transformers directory."""
    memo: dict[int, Any] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def _keep_packing_where_sharding_allows(model: nn.Module) -> None:
    """The packed (padding-free) forward under FSDP: BERT-style encoders run each sharded layer through FSDP
    (``raystx.models.packed.prepare_for_fsdp``), or switch packing off where the wrapping does not allow it;
    decoders and ModernBERT (``raystx.models.packed_hf``) call the unchanged Hugging Face layers, so FSDP's hooks
    fire as in the padded forward."""
    from raystx.models.packed import packed_supported, prepare_for_fsdp

    for sub in model.modules():
        auto_model = getattr(sub, "auto_model", None)
        if getattr(sub, "packed", False) and auto_model is not None and packed_supported(auto_model):
            sub.packed = prepare_for_fsdp(auto_model)


class FsdpStrategy:
    """Parameters, gradients and optimizer state sharded over the ranks (see the module docstring)."""

    name = "fsdp"
    collective_forward = True

    def __init__(
        self,
        model: nn.Module,
        losses: dict[str, nn.Module],
        options: FsdpOptions,
        device: torch.device,
        rank: int = 0,
    ) -> None:
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "fsdp=True needs a torch.distributed process group (every Ray Train worker has one); this "
                "process has none (a LocalRuntime run): train through the Trainer, or with fsdp off"
            )
        self.model, self.losses, self.options, self.device = model, losses, options, device
        self.skeleton = export_skeleton(model) if rank == 0 else None
        if options.activation_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable({"use_reentrant": False})
        kwargs: dict[str, Any] = {"reshard_after_forward": options.reshard_after_forward}
        if options.mixed_precision:
            dtype = torch.bfloat16 if options.mixed_precision == "bf16" else torch.float16
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        if options.cpu_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=device.type == "cuda")
        self.blocks = 0
        for root in top_level_modules(model):
            for block in find_blocks(root, options.transformer_layer_cls_to_wrap):
                fully_shard(block, **kwargs)
                self.blocks += 1
            fully_shard(root, **kwargs)
        _keep_packing_where_sharding_allows(model)
        self.adapter_host = _adapter_host(model)
        self._named = unique_parameters([model, *losses.values()])
        self.sharded = [p for _, p in self._named if _is_dtensor(p)]
        self.replicated = [p for _, p in self._named if not _is_dtensor(p)]
        modules = [model, *losses.values()]
        flags = row_sparse_flags(modules, self.replicated)
        self._head_sync = GradientSync(self.replicated, flags) if self.replicated else None
        self.weights = FsdpWeights(self)

    # ------------------------------------------------------------------ what the loop calls
    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return list(self._named)

    def sync(self, local_bad: bool) -> bool:
        """Gradients of sharded parameters were averaged by backward's reduce-scatter; average the replicated
        ones and agree on the non-finite flag (one all-reduce). True if any rank's loss was not finite."""
        for p in self.sharded:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self._head_sync is not None:
            return self._head_sync.sync(local_bad)
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return local_bad
        flag = torch.tensor([1.0 if local_bad else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.SUM)
        return bool(flag.item() > 0)

    def clip_grad_norm(self, max_norm: float) -> None:
        """Scale every gradient so that the global norm (sharded and replicated together) is <= ``max_norm``,
        with the coefficient ``clip_grad_norm_`` uses."""
        from torch.nn.utils import get_total_norm

        squares = torch.zeros((), dtype=torch.float32, device=self.device)
        sharded = [p.grad for p in self.sharded if p.grad is not None]
        if sharded:
            norm = get_total_norm(sharded, 2.0)
            norm = norm.full_tensor() if _is_dtensor(norm) else norm
            squares = squares + norm.to(squares.device, torch.float32) ** 2
        plain = [p.grad for p in self.replicated if p.grad is not None]
        if plain:
            squares = squares + get_total_norm(plain, 2.0).to(squares.device, torch.float32) ** 2
        total = squares.sqrt()
        coef = float(torch.clamp(max_norm / (total + 1e-6), max=1.0))
        if coef < 1.0:
            for grad in [*sharded, *plain]:
                grad.mul_(coef)

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        for p in self.sharded:
            p.grad = None
        if self._head_sync is not None:
            self._head_sync.zero_grad(optimizer)

    # ------------------------------------------------------------------ export
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's full state dict in rank 0's host memory (empty on the other ranks); every rank calls it.
        With a PEFT adapter, the frozen base weights of the adapter's host are left out (never gathered)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if self.adapter_host is None:
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_model_state_dict(self.model, options=options)
        skip = frozen_base_names(self.model, self.adapter_host)
        rank0 = not (dist.is_initialized() and dist.get_rank() != 0)
        out: dict[str, torch.Tensor] = {}
        for name, tensor in self.model.state_dict().items():
            if name in skip:
                continue
            # full_tensor() is a collective: every rank gathers the same tensors in the same order
            full = tensor.full_tensor() if _is_dtensor(tensor) else tensor
            if rank0:
                out[name] = full.detach().to("cpu", copy=True)
        return out

    def export(self, directory: Path) -> None:
        """Write the consolidated sentence-transformers directory (rank 0 writes; every rank calls this): the
        Transformers' weights streamed one shard file at a time (``raystx.train.fsdp_export``); with a PEFT adapter,
        the adapter layout from the gathered trainable state."""
        from raystx.train.fsdp_export import default_max_shard_size, stream_export, streamed_modules

        if self.adapter_host is None and streamed_modules(self.model):
            size = self.options.max_shard_size or default_max_shard_size()
            stream_export(self.model, self.skeleton, directory, size, self.device)
            return
        state = self.full_state_dict()
        if self.skeleton is None:
            return
        model = copy.deepcopy(self.skeleton)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        skip = frozen_base_names(model, _adapter_host(model))
        if unexpected or any(p.is_meta for name, p in model.named_parameters() if name not in skip):
            raise RuntimeError(
                f"FSDP export: the full state dict does not fit the model ({missing[:5]}, {unexpected[:5]})"
            )
        model.save_pretrained(str(directory))
        del model, state


class FsdpWeights:
    """How an FSDP run writes and reads the model and optimizer part of a checkpoint (every rank calls both)."""

    def __init__(self, strategy: FsdpStrategy) -> None:
        self.strategy = strategy

    def save(self, directory: Path, rank: int, optimizer: torch.optim.Optimizer, resumable: bool) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        self.strategy.export(directory / "model")
        if resumable:
            state = {"model": self._model_tree(get_model_state_dict), "optim": self._optim_tree(optimizer)}
            dcp.save(state, checkpoint_id=str(directory / FSDP_DIR))

    def load(self, directory: Path, optimizer: torch.optim.Optimizer | None) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            _init_optim_state,
            get_model_state_dict,
            set_model_state_dict,
        )

        from raystx.train.checkpoint import CorruptCheckpointError

        source = directory / FSDP_DIR
        if not source.is_dir():
            raise ValueError(
                f"{directory} has no sharded state ({FSDP_DIR}/): it was written by replicated training "
                "(fsdp off). Resume it with fsdp off, or start the FSDP run from its model/ directory."
            )
        state: dict[str, Any] = {"model": self._model_tree(get_model_state_dict)}
        if optimizer is not None:
            _init_optim_state(optimizer)
            if self.strategy._head_sync is not None:  # _init_optim_state set the gradients to None
                self.strategy._head_sync.zero_grad(optimizer)
            state["optim"] = self._optim_tree(optimizer)
        try:
            dcp.load(state, checkpoint_id=str(source))
        except (FileNotFoundError, dcp.api.CheckpointException) as exc:
            raise CorruptCheckpointError(f"cannot load the sharded state in {source}: {exc}") from exc
        # with an adapter the tree lacks the frozen base weights: the model already holds them
        strict = StateDictOptions(strict=self.strategy.adapter_host is None)
        set_model_state_dict(self.strategy.model, state["model"], options=strict)
        if optimizer is not None:
            groups = state["optim"]["param_groups"]
            for index, group in enumerate(optimizer.param_groups):
                group.update(groups[str(index)])

    def _model_tree(self, get_model_state_dict: Any) -> dict[str, Any]:
        """The model's sharded state dict for DCP; with a PEFT adapter, without the frozen base weights (the
        checkpoint holds the adapter only, as a replicated adapter run's does)."""
        state = get_model_state_dict(self.strategy.model)
        skip = frozen_base_names(self.strategy.model, self.strategy.adapter_host)
        return {k: v for k, v in state.items() if k not in skip}

    def _optim_tree(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's state keyed by parameter name (the same on any number of workers): the state tensors
        themselves (DTensor shards for sharded parameters), so that loading writes into the optimizer."""
        names = {id(p): name for name, p in self.strategy.named_parameters()}
        state = {names[id(p)]: dict(s) for p, s in optimizer.state.items() if id(p) in names}
        groups = {
            str(i): {k: v for k, v in group.items() if k != "params"}
            for i, group in enumerate(optimizer.param_groups)
        }
        return {"state": state, "param_groups": groups}
