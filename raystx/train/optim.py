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


def build_optimizer(
    named_params: list[tuple[str, nn.Parameter]], args: SentenceTransformerTrainingArguments
) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay (none on biases and norms), per-parameter lr from learning_rate_mapping.

    ``learning_rate_mapping`` maps regexes over parameter names to learning rates, as in sentence-transformers.
    Uses the fused implementation where torch offers it for the parameters' device.
    """
    import re

    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    mapping = [(re.compile(p), lr) for p, lr in (args.learning_rate_mapping or {}).items()]
    for name, param in named_params:
        lr = next((lr for pattern, lr in mapping if pattern.search(name)), args.learning_rate)
        decay = 0.0 if any(k in name for k in _NO_DECAY) else args.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    kwargs = dict(lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    try:
        return torch.optim.AdamW(param_groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(param_groups, **kwargs)


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


def sync_gradients(params: list[nn.Parameter], local_bad: bool) -> bool:
    """Average gradients over ranks in one flat all-reduce; returns True if any rank had a non-finite loss.

    The bad-step flag rides in the same buffer, so skipping a step costs no extra collective and every rank
    takes the same decision. Parameters without a gradient (e.g. an unused pooler) count as zero.
    """
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not distributed:
        return local_bad
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    device = grads[0].device if grads else torch.device("cpu")
    flag = torch.tensor([1.0 if local_bad else 0.0], device=device, dtype=torch.float32)
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [flag])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    any_bad = bool(flat[-1].item() > 0)
    flat = flat[:-1] / dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        chunk = flat[offset : offset + n].view_as(g).to(g.dtype)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n
    return any_bad
