"""Optimizer, learning-rate schedule and gradient synchronisation for the per-worker loop."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from raystx.train.args import SentenceTransformerTrainingArguments

_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def unique_parameters(modules: Iterable[nn.Module]) -> list[tuple[str, nn.Parameter]]:
    """Named trainable parameters of several modules, each parameter once (losses share the model)."""
    seen: set[int] = set()
    out = []
    for index, module in enumerate(modules):
        for name, param in module.named_parameters():
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                out.append((f"{index}.{name}", param))
    return out


def parse_optim_args(optim_args: str | None) -> dict[str, str]:
    """``"momentum=0.9,nesterov=True"`` -> ``{"momentum": "0.9", "nesterov": "True"}`` (transformers' format)."""
    out: dict[str, str] = {}
    for item in (optim_args or "").replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"optim_args must look like 'key=value,key2=value2', got {optim_args!r}")
        out[key] = value
    return out


def _param_groups(
    named_params: list[tuple[str, nn.Parameter]], args: SentenceTransformerTrainingArguments
) -> list[dict]:
    import re

    groups: dict[tuple[float, float, str], list[nn.Parameter]] = {}
    mapping = [(re.compile(p), lr) for p, lr in (args.learning_rate_mapping or {}).items()]
    for name, param in named_params:
        lr = next((lr for pattern, lr in mapping if pattern.search(name)), args.learning_rate)
        decay = 0.0 if any(k in name for k in _NO_DECAY) else args.weight_decay
        # sharded (DTensor) and plain parameters in separate groups: foreach/fused kernels cannot mix them
        groups.setdefault((lr, decay, type(param.data).__name__), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd, _), ps in groups.items()]


def build_optimizer(
    named_params: list[tuple[str, nn.Parameter]], args: SentenceTransformerTrainingArguments
) -> torch.optim.Optimizer:
    """The optimizer named by ``args.optim``, with decoupled weight decay (none on biases and norms).

    ``learning_rate_mapping`` maps regexes over parameter names to learning rates, as in sentence-transformers.
    The optimizers and their settings follow transformers' Trainer: ``adamw_torch`` (torch AdamW with
    ``adam_beta1/2`` and ``adam_epsilon``), ``adamw_torch_fused`` (the same, fused where torch offers it for the
    parameters' device), ``adafactor`` (transformers' Adafactor with ``scale_parameter=False,
    relative_step=False`` and the given learning rate) and ``sgd`` (``momentum``, ``dampening``, ``nesterov``
    from ``optim_args``).
    """
    param_groups = _param_groups(named_params, args)
    extra = parse_optim_args(getattr(args, "optim_args", None))
    optim = getattr(args, "optim", "adamw_torch_fused")
    if optim in ("adamw_torch", "adamw_torch_fused"):
        betas = (float(extra.get("beta1", args.adam_beta1)), float(extra.get("beta2", args.adam_beta2)))
        kwargs = dict(lr=args.learning_rate, betas=betas, eps=float(extra.get("eps", args.adam_epsilon)))
        if optim == "adamw_torch_fused":
            try:
                return torch.optim.AdamW(param_groups, fused=True, **kwargs)
            except (RuntimeError, TypeError, ValueError):
                pass
        return torch.optim.AdamW(param_groups, **kwargs)
    if optim == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(param_groups, lr=args.learning_rate, scale_parameter=False, relative_step=False)
    if optim == "sgd":
        kwargs = {key: float(extra[key]) for key in ("momentum", "dampening") if key in extra}
        if "nesterov" in extra:
            kwargs["nesterov"] = extra["nesterov"].lower() in ("true", "1", "yes")
        return torch.optim.SGD(param_groups, lr=args.learning_rate, **kwargs)
    raise ValueError(
        f"optim={optim!r} is not supported by raystx; use one of adamw_torch, adamw_torch_fused, adafactor, sgd"
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, args: SentenceTransformerTrainingArguments, total_steps: int
):
    """The transformers schedule named by ``lr_scheduler_type`` with warmup from warmup_steps or warmup_ratio."""
    from transformers import get_scheduler

    warmup = args.warmup_steps if args.warmup_steps > 0 else math.ceil(args.warmup_ratio * total_steps)
    return get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs or None,
    )


# An embedding table this large has its gradient synced row-sparsely (only rows some rank's batch touched).
ROW_SPARSE_MIN_ROWS = 1024
# ... unless the touched rows are more than this share of the table; then dense is cheaper.
ROW_SPARSE_MAX_SHARE = 0.5


def row_sparse_flags(modules: Iterable[nn.Module], params: list[nn.Parameter]) -> list[bool]:
    """For each of ``params``: True if it is a large ``nn.Embedding``/``EmbeddingBag`` table (sparse rows)."""
    tables = {
        id(m.weight)
        for module in modules
        for m in module.modules()
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.num_embeddings >= ROW_SPARSE_MIN_ROWS
    }
    return [id(p) in tables for p in params]


def _grads(params: list[nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def sync_gradients(params: list[nn.Parameter], local_bad: bool, row_sparse: list[bool] | None = None) -> bool:
    """Average gradients over ranks in one flat all-reduce; returns True if any rank had a non-finite loss.

    The bad-step flag rides in the same buffer, so skipping a step costs no extra collective and every rank
    takes the same decision. Parameters without a gradient (e.g. an unused pooler) count as zero.

    ``row_sparse[i]`` marks an embedding table (see ``row_sparse_flags``): a batch touches a few thousand of its
    rows (token ids) and every other row's gradient is exactly zero on every rank. A first, small all-reduce
    takes the union of the rows each rank touched (and carries the bad-step flag); the flat all-reduce then
    carries only those rows. For MiniLM that is about half the bytes of a dense sync, with the same result.
    """
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not distributed:
        return local_bad
    grads = _grads(params)
    device = grads[0].device if grads else torch.device("cpu")
    flag = torch.tensor([1.0 if local_bad else 0.0], device=device, dtype=torch.float32)
    sparse = [i for i, s in enumerate(row_sparse or []) if s and grads[i].dim() == 2]
    rows: dict[int, torch.Tensor] = {}
    if sparse:
        touched = [(grads[i] != 0).any(dim=1).float() for i in sparse]
        union = torch.cat([*touched, flag])
        dist.all_reduce(union, op=dist.ReduceOp.SUM)
        flag = union[-1:]
        offset = 0
        for i, mask in zip(sparse, touched):
            hit = union[offset : offset + mask.numel()] > 0
            offset += mask.numel()
            if hit.sum().item() <= ROW_SPARSE_MAX_SHARE * mask.numel():  # same union, same choice, every rank
                rows[i] = hit.nonzero().squeeze(1)
    parts = [g[rows[i]] if i in rows else g for i, g in enumerate(grads)]
    flat = torch.cat([g.reshape(-1).float() for g in parts] + [flag])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    any_bad = bool(flat[-1].item() > 0)
    flat = flat[:-1] / dist.get_world_size()
    offset = 0
    for i, (p, g) in enumerate(zip(params, grads)):
        n = parts[i].numel()
        chunk = flat[offset : offset + n].view_as(parts[i]).to(g.dtype)
        offset += n
        if i in rows:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.index_copy_(0, rows[i], chunk)  # untouched rows are zero on every rank already
        elif p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
    return any_bad


class GradientSync:
    """Average gradients over ranks with the dense ones living in one flat buffer, so the all-reduce needs no copy.

    On more than one rank, every float32 parameter that is not a row-sparse embedding table (``row_sparse``) gets
    ``p.grad`` as a view into one flat buffer (autograd accumulates into an existing gradient in place, so the
    views stay), and ``sync`` all-reduces that buffer in place instead of concatenating the gradients (a 48 MB
    copy per step for MiniLM) and copying them back. Embedding tables go row-sparse as in ``sync_gradients``.
    ``zero_grad`` zeroes the buffer (the views stay) and drops the other gradients. A gradient that was replaced
    rather than accumulated (its storage is no longer the buffer's) is copied back in before the all-reduce, so the
    result is always the average of what the parameters hold. On one rank this is plain ``zero_grad``/no sync.
    """

    def __init__(self, params: list[nn.Parameter], row_sparse: list[bool] | None = None) -> None:
        self.params = params
        self.row_sparse = list(row_sparse or [False] * len(params))
        self.world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.buffer: torch.Tensor | None = None
        self.slots: list[tuple[nn.Parameter, int, int]] = []  # (parameter, offset, numel) in the buffer
        self.others: list[int] = list(range(len(params)))  # indices synced through sync_gradients' path
        if self.world_size <= 1 or not params:
            return
        device = params[0].device
        chosen = [
            i
            for i, p in enumerate(params)
            if not self.row_sparse[i] and p.dtype == torch.float32 and p.device == device
        ]
        total = sum(params[i].numel() for i in chosen)
        self.buffer = torch.zeros(total + 1, dtype=torch.float32, device=device)  # last slot: bad-step flag
        offset = 0
        for i in chosen:
            p = params[i]
            self.slots.append((p, offset, p.numel()))
            if p.grad is not None:
                self.buffer[offset : offset + p.numel()].copy_(p.grad.reshape(-1))
            p.grad = self.buffer[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self.others = [i for i in range(len(params)) if i not in set(chosen)]

    def _reattach(self) -> None:
        assert self.buffer is not None
        for p, offset, n in self.slots:
            view = self.buffer[offset : offset + n]
            if p.grad is None:
                view.zero_()
            elif p.grad.data_ptr() != view.data_ptr():
                view.copy_(p.grad.reshape(-1))
            else:
                continue
            p.grad = view.view_as(p)

    def sync(self, local_bad: bool) -> bool:
        """Average gradients over ranks; True if any rank had a non-finite loss (every rank gets the same)."""
        if self.buffer is None:
            return sync_gradients(self.params, local_bad, self.row_sparse)
        self._reattach()
        others = [self.params[i] for i in self.others]
        any_bad = (
            sync_gradients(others, local_bad, [self.row_sparse[i] for i in self.others])
            if others
            else local_bad
        )
        self.buffer[-1] = 1.0 if any_bad else 0.0
        dist.all_reduce(self.buffer, op=dist.ReduceOp.SUM)
        any_bad = bool(self.buffer[-1].item() > 0)
        self.buffer[:-1].div_(self.world_size)
        return any_bad

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradients for the next step (buffer views kept, the rest set to None)."""
        if self.buffer is None:
            optimizer.zero_grad(set_to_none=True)
            return
        self.buffer.zero_()
        for i in self.others:
            self.params[i].grad = None
