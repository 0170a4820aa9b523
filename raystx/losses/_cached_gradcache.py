"""GradCache machinery shared by the cached losses (https://arxiv.org/abs/2101.06983).

A cached loss bounds activation memory by the mini-batch size instead of the batch size:

1. every column is embedded mini-batch by mini-batch **without** a graph; the RNG state before each
   mini-batch is kept so that dropout can be replayed;
2. the loss is computed on those cached embeddings (leaf tensors) and back-propagated to them, chunk by
   chunk, which leaves d(loss)/d(embedding) on each leaf;
3. the detached loss is returned with a gradient hook; when the trainer calls ``.backward()`` the hook
   re-embeds each mini-batch **with** a graph under the recorded RNG state and back-propagates
   ``<embedding, cached gradient> * grad_output`` into the model parameters.

Subclasses implement :meth:`GradCacheLoss.calculate_loss`. Wrappers such as ``MatryoshkaLoss`` plug in
through :meth:`GradCacheLoss.wrap_calculate_loss` (they see the cached embeddings, not the model).

Across workers, :func:`global_leaves` gathers the cached embeddings without a graph and
:func:`local_gradients` sums the gradient of the gathered leaves over ranks and keeps this rank's rows:
the same convention as ``raystx.distributed.all_gather_with_grad``, with one collective per column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from raystx.distributed import all_gather_no_grad, is_distributed, local_offset
from raystx.losses.base import RaystxLoss

CalculateLoss = Callable[..., Tensor]


class RngSnapshot:
    """The CPU RNG state and the CUDA RNG state of the devices ``tensors`` live on, restorable later.

    Use as a context manager: inside the block the recorded states are active; on exit the states from
    before the block come back (so replaying does not disturb the caller's random stream).
    """

    def __init__(self, tensors: Sequence[Any]) -> None:
        self.cpu_state = torch.get_rng_state()
        self.cuda_devices = sorted(
            {t.device.index or 0 for t in tensors if isinstance(t, Tensor) and t.device.type == "cuda"}
        )
        self.cuda_states = [torch.cuda.get_rng_state(d) for d in self.cuda_devices]
        self._fork: Any = None

    def __enter__(self) -> RngSnapshot:
        self._fork = torch.random.fork_rng(devices=self.cuda_devices)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        for device, state in zip(self.cuda_devices, self.cuda_states):
            torch.cuda.set_rng_state(state, device)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)
        self._fork = None


def batch_size_of(features: dict[str, Any]) -> int:
    """Number of rows of a tokenized feature dict (first dimension of ``input_ids`` or any tensor)."""
    for key in ("input_ids", "attention_mask"):
        value = features.get(key)
        if isinstance(value, Tensor):
            return value.shape[0]
    return next(v.shape[0] for v in features.values() if isinstance(v, Tensor) and v.dim() > 0)


def slice_features(features: dict[str, Any], begin: int, end: int) -> dict[str, Any]:
    """Rows ``begin:end`` of a padded feature dict, with padding columns unused by those rows trimmed.

    Tensors whose second dimension is the sequence length lose the trailing columns that are padding
    for every selected row (right padding only; leading columns are kept). Non-tensors are copied by
    reference.
    """
    width = None
    keep = None
    mask = features.get("attention_mask")
    if isinstance(mask, Tensor) and mask.dim() == 2:
        width = mask.shape[1]
        used = mask[begin:end].bool().any(dim=0).nonzero()
        if used.numel() and int(used.max()) + 1 < width:
            keep = int(used.max()) + 1
    out: dict[str, Any] = {}
    for key, value in features.items():
        if not isinstance(value, Tensor) or value.dim() == 0:
            out[key] = value
        elif keep is not None and value.dim() >= 2 and value.shape[1] == width:
            out[key] = value[begin:end, :keep]
        else:
            out[key] = value[begin:end]
    return out


def minibatch_ranges(
    features: dict[str, Any], mini_batch_size: int, mini_batch_num_tokens: int | None = None
) -> list[tuple[int, int]]:
    """``(begin, end)`` row ranges covering the batch.

    Without ``mini_batch_num_tokens`` every range has ``mini_batch_size`` rows (the last may be shorter).
    With it, consecutive rows are packed while their non-padding token count (from ``attention_mask``)
    stays within the budget; a single row longer than the budget gets a range of its own.
    """
    n = batch_size_of(features)
    if mini_batch_num_tokens is None:
        return [(b, min(b + mini_batch_size, n)) for b in range(0, n, mini_batch_size)]
    mask = features.get("attention_mask")
    if not isinstance(mask, Tensor):
        raise ValueError("mini_batch_num_tokens needs an attention_mask in the features; use mini_batch_size")
    lengths = mask.reshape(n, -1).sum(dim=1).tolist()
    ranges: list[tuple[int, int]] = []
    begin, used = 0, 0
    for row, length in enumerate(lengths):
        if row > begin and used + length > mini_batch_num_tokens:
            ranges.append((begin, row))
            begin, used = row, 0
        used += length
    if begin < n:
        ranges.append((begin, n))
    return ranges


def validate_mini_batch_num_tokens(mini_batch_num_tokens: int | None) -> None:
    if mini_batch_num_tokens is not None and mini_batch_num_tokens <= 0:
        raise ValueError(
            f"mini_batch_num_tokens must be a positive integer or None, got {mini_batch_num_tokens}"
        )


def global_leaves(local: Sequence[Tensor], gather: bool) -> list[Tensor]:
    """Leaves holding the global batch of each column (gathered without graph when ``gather``)."""
    if not gather or not is_distributed():
        return list(local)
    return [all_gather_no_grad(t).requires_grad_(t.requires_grad) for t in local]


def local_gradients(local: Sequence[Tensor], leaves: Sequence[Tensor], gather: bool) -> None:
    """Move the gradient of the global ``leaves`` onto the ``local`` leaves (sum over ranks, own rows).

    No-op when the leaves are the local tensors themselves.
    """
    if not gather or not is_distributed():
        return
    for mine, leaf in zip(local, leaves):
        if leaf.grad is None:
            continue
        grad = leaf.grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = local_offset(mine.shape[0])
        mine.backward(grad[start : start + mine.shape[0]])


def _replay_hook(
    grad_output: Tensor,
    loss: GradCacheLoss,
    sentence_features: list[dict[str, Any]],
    ranges: list[list[tuple[int, int]]],
    states: list[list[RngSnapshot | None]],
    cache: list[Tensor],
) -> None:
    """Step 3: re-embed every mini-batch with a graph and push the cached gradient into the model."""
    with torch.enable_grad():
        for features, column_ranges, column_states, grad in zip(sentence_features, ranges, states, cache):
            for (begin, end), state in zip(column_ranges, column_states):
                with state if state is not None else nullcontext():
                    reps = loss.embed_minibatch(slice_features(features, begin, end))
                if not reps.requires_grad:
                    continue
                dtype = torch.promote_types(reps.dtype, grad.dtype)
                if dtype in (torch.float16, torch.bfloat16):
                    dtype = torch.float32
                surrogate = (reps.to(dtype) * grad[begin:end].to(dtype)).sum() * grad_output
                surrogate.backward()


class GradCacheLoss(RaystxLoss):
    """Base class of the cached losses: the three GradCache steps around :meth:`calculate_loss`.

    ``calculate_loss(reps, labels, with_backward)`` gets one (B, d) leaf tensor per input column (the
    cached embeddings of this rank) and returns the scalar loss. With ``with_backward=True`` it must also
    back-propagate into those leaves (chunk by chunk, to bound memory) and return a detached value.
    """

    uses_gradient_cache = True

    def __init__(
        self,
        model: torch.nn.Module,
        mini_batch_size: int,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model)
        if mini_batch_size <= 0:
            raise ValueError(f"mini_batch_size must be positive, got {mini_batch_size}")
        validate_mini_batch_num_tokens(mini_batch_num_tokens)
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self._calculate_loss_wrappers: list[Callable[[CalculateLoss], CalculateLoss]] = []

    # -- to implement -------------------------------------------------------------------------------
    def calculate_loss(
        self, reps: list[Tensor], labels: Tensor | None, with_backward: bool = False
    ) -> Tensor:
        raise NotImplementedError

    # -- hooks ----------------------------------------------------------------------------------------
    def wrap_calculate_loss(self, wrapper: Callable[[CalculateLoss], CalculateLoss]) -> None:
        """Register ``wrapper(calculate_loss) -> calculate_loss``, applied on every forward (outermost last)."""
        self._calculate_loss_wrappers.append(wrapper)

    def _wrapped_calculate_loss(self) -> CalculateLoss:
        fn: CalculateLoss = self.calculate_loss
        for wrapper in self._calculate_loss_wrappers:
            fn = wrapper(fn)
        return fn

    def embed_minibatch(self, features: dict[str, Any]) -> Tensor:
        """Sentence embeddings of one mini-batch (grad mode is the caller's)."""
        return self.model(features)["sentence_embedding"]

    def begin_first_pass(self, num_columns: int) -> None:
        """Called before step 1 (e.g. to reset per-batch state such as guide embeddings)."""

    def on_first_pass_minibatch(self, column: int, features: dict[str, Any]) -> None:
        """Called without grad for every mini-batch of step 1, before the model embeds it.

        ``features`` is the mini-batch the model is about to see; copy it before handing it to another
        module that writes into it (e.g. a guide model).
        """

    # -- the three steps ------------------------------------------------------------------------------
    def forward(self, sentence_features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        return self.forward_cached(list(sentence_features), labels)

    def forward_cached(self, sentence_features: list[dict[str, Any]], labels: Tensor | None) -> Tensor:
        """Run steps 1-3 and return the (detached, hooked) loss."""
        grad_enabled = torch.is_grad_enabled()
        ranges = [
            minibatch_ranges(f, self.mini_batch_size, self.mini_batch_num_tokens) for f in sentence_features
        ]
        reps: list[Tensor] = []
        states: list[list[RngSnapshot | None]] = []
        self.begin_first_pass(len(sentence_features))
        for column, (features, column_ranges) in enumerate(zip(sentence_features, ranges)):
            parts, column_states = [], []
            for begin, end in column_ranges:
                mb = slice_features(features, begin, end)
                with torch.no_grad():
                    self.on_first_pass_minibatch(column, mb)
                    # only the backward replay needs the RNG state, and it only runs with grad enabled
                    column_states.append(RngSnapshot(list(mb.values())) if grad_enabled else None)
                    parts.append(self.embed_minibatch(mb))
            reps.append(torch.cat(parts).detach().requires_grad_(grad_enabled))
            states.append(column_states)

        calculate = self._wrapped_calculate_loss()
        if not grad_enabled:
            return calculate(reps, labels, with_backward=False)

        value = calculate(reps, labels, with_backward=True)
        missing = [str(i) for i, r in enumerate(reps) if r.grad is None]
        if missing:
            raise ValueError(
                f"{type(self).__name__} did not use input column(s) {', '.join(missing)}; "
                "remove them from the dataset"
            )
        cache = [r.grad for r in reps]
        out = value.detach().requires_grad_()
        out.register_hook(
            partial(
                _replay_hook,
                loss=self,
                sentence_features=sentence_features,
                ranges=ranges,
                states=states,
                cache=cache,
            )
        )
        return out
