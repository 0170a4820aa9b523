"""Unpadded ("packed") forward for BERT-style encoders: no compute is spent on padding tokens.

In a random training batch about a third to a half of the tokens are padding (each column is padded to its longest
text). A BERT layer's cost is almost all in its linear layers (Q/K/V, attention output, the feed-forward pair) and
its element-wise ops (dropout, GELU, LayerNorm), which act on each token independently. This forward keeps the
hidden states as one ``(real tokens, hidden)`` matrix, so all of that runs on real tokens only; only the attention
itself, which needs the (batch, heads, length, length) layout, scatters Q/K/V back to padded form for one
``scaled_dot_product_attention`` call with a key-padding mask.

Same parameters, same math as the Hugging Face forward (the GEMMs see fewer rows, so results agree to float
rounding, ~1e-6); padding positions of the returned ``last_hidden_state`` are zero instead of the values the padded
forward computes for them, which nothing downstream reads (pooling masks them out). Dropout draws different random
numbers than the padded forward (it masks a different-shaped tensor), so training runs are reproducible with
themselves, not bit-identical to the padded forward. With ``gradient_checkpointing_enable`` each packed layer runs
under transformers' checkpoint function (its input kept, the layer re-run in backward with the same RNG state).

``packed_supported(model)`` says whether a Hugging Face model has the structure this forward needs (BERT, RoBERTa,
XLM-RoBERTa, MiniLM, ... : ``embeddings`` + ``encoder.layer[*]`` with ``attention.self.{query,key,value}``,
``attention.output``, ``intermediate``, ``output``); ``packed_forward(model, inputs)`` runs it.
"""

from __future__ import annotations

import functools
import os
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_LAYER_PARTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
)
_LAYER_PARTS += ("attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")


def _get(module: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def packed_supported(model: torch.nn.Module) -> bool:
    """True when ``model`` is a plain bidirectional BERT-style encoder this forward reproduces exactly."""
    if os.environ.get("RAYSTX_PACKED", "1") == "0":
        return False
    config = getattr(model, "config", None)
    layers = _get(model, "encoder.layer")
    if config is None or layers is None or getattr(model, "embeddings", None) is None or not len(layers):
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return False  # relative position schemes add a bias inside the attention
    if getattr(config, "chunk_size_feed_forward", 0):
        return False
    for layer in layers:
        if any(_get(layer, part) is None for part in _LAYER_PARTS):
            return False
        attention = layer.attention.self
        if not hasattr(attention, "scaling") or not hasattr(attention, "num_attention_heads"):
            return False
        if getattr(attention, "is_cross_attention", False) or getattr(layer, "is_decoder", False):
            return False
        if not callable(getattr(layer.intermediate, "intermediate_act_fn", None)):
            return False
    return True


class _Packing:
    """Index bookkeeping between the padded (batch, length, ...) layout and the packed (tokens, ...) one."""

    def __init__(self, attention_mask: Tensor) -> None:
        self.batch, self.length = attention_mask.shape
        real = attention_mask.bool()
        self.dense = bool(
            real.all()
        )  # no padding at all (common in length-sorted encode batches): views only
        self.index = real.reshape(-1).nonzero().squeeze(1)
        self.rows, self.positions = self.index // self.length, self.index % self.length
        # (batch, 1, 1, length) True where a key is a real token; None when every key is real
        self.key_mask = None if self.dense else real[:, None, None, :]

    def pack(self, padded: Tensor) -> Tensor:
        """(batch, length, *rest) -> (tokens, *rest)."""
        if self.dense:
            return padded.reshape(self.batch * self.length, *padded.shape[2:])
        return padded[self.rows, self.positions]

    def unpack(self, packed: Tensor) -> Tensor:
        """(tokens, *rest) -> (batch, length, *rest) with zeros at padding positions."""
        if self.dense:
            return packed.view(self.batch, self.length, *packed.shape[1:])
        out = packed.new_zeros(self.batch * self.length, *packed.shape[1:])
        return out.index_copy(0, self.index, packed).view(self.batch, self.length, *packed.shape[1:])


# Inference-only caches, kept outside the modules so that pickling, deepcopy and state_dict never see them;
# an entry goes away with its module.
_FUSED_QKV: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # attention module -> (key, weight, bias)
_PREPACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (key, oneDNN weight)


def _qkv_parameters(attn: torch.nn.Module, cache: bool = True) -> tuple[Tensor, Tensor | None]:
    """Q, K and V projections as one (3 * hidden, hidden) weight (and bias), for a single GEMM.

    Concatenated on every call while gradients are on (the weights change each step) or without ``cache`` (an
    FSDP layer, whose all-gathered weights are refilled in place between calls); cached per module otherwise
    (inference), keyed by the tensors' identity and version so an in-place update invalidates it.
    """
    parts = (attn.query, attn.key, attn.value)
    tensors = [t for lin in parts for t in (lin.weight, lin.bias) if t is not None]
    if not cache or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        weight = torch.cat([lin.weight for lin in parts])
        bias = None if attn.query.bias is None else torch.cat([lin.bias for lin in parts])
        return weight, bias
    key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    cached = _FUSED_QKV.get(attn)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            weight = torch.cat([lin.weight for lin in parts])
            bias = None if attn.query.bias is None else torch.cat([lin.bias for lin in parts])
        cached = (key, weight, bias)
        _FUSED_QKV[attn] = cached
    return cached[1], cached[2]


# Opt-in fast CPU inference (``RAYSTX_FAST_INFERENCE=1``), used only under ``torch.inference_mode`` (``encode``):
#   * attention over at most SHORT_ATTENTION positions as two batched matmuls and a softmax (CPU
#     ``scaled_dot_product_attention`` has a fixed per-call cost that dominates for short texts: ~2x slower at
#     10-40 tokens on a 2-core machine);
#   * linear layers through oneDNN on prepacked weights (8-17% faster GEMMs there).
# Off by default because both accumulate in another order: embeddings move by ~1e-6 from the Hugging Face
# forward's, while the default packed path gives bit-identical rows (so evaluator metrics match
# sentence-transformers' exactly, near-ties in rankings included).
SHORT_ATTENTION = 64
_MKLDNN: dict[str, bool] = {}  # "ok" -> whether oneDNN's prepacked linear works in this torch build


def fast_inference() -> bool:
    """True inside ``torch.inference_mode`` with ``RAYSTX_FAST_INFERENCE=1`` set."""
    return torch.is_inference_mode_enabled() and os.environ.get("RAYSTX_FAST_INFERENCE", "0") == "1"


def _attention(q: Tensor, k: Tensor, v: Tensor, packing: _Packing, dropout: float, scale: float) -> Tensor:
    """Softmax attention over real keys only; (batch, heads, length, head_dim) in and out."""
    short = packing.length <= SHORT_ATTENTION and q.device.type == "cpu"
    if short and dropout == 0.0 and fast_inference():
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        if packing.key_mask is not None:
            scores = scores.masked_fill(~packing.key_mask, float("-inf"))
        return torch.matmul(scores.softmax(dim=-1), v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=packing.key_mask, dropout_p=dropout, scale=scale)


def _mkldnn_ok() -> bool:
    if "ok" not in _MKLDNN:
        ops = getattr(torch.ops, "mkldnn", None)
        _MKLDNN["ok"] = bool(
            torch.backends.mkldnn.is_available()
            and ops is not None
            and hasattr(ops, "_linear_pointwise")
            and hasattr(ops, "_reorder_linear_weight")
        )
    return _MKLDNN["ok"]


def _linear(x: Tensor, owner: torch.nn.Module, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear``; under fast inference on CPU float32, oneDNN's linear on a prepacked copy of ``weight``
    (cached per ``owner``, keyed by the weight's identity and version, so an in-place update re-packs it)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not fast_inference() or not _mkldnn_ok():
        return F.linear(x, weight, bias)
    key = (_identity(weight), None if bias is None else _identity(bias))
    cached = _PREPACKED.get(owner)
    try:
        if cached is None or cached[0] != key:
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(weight, None))
            _PREPACKED[owner] = cached
        return torch.ops.mkldnn._linear_pointwise(x, cached[1], bias, "none", [], "")
    except RuntimeError:  # an op this build does not support after all: use the plain path from now on
        _MKLDNN["ok"] = False
        return F.linear(x, weight, bias)


def _identity(t: Tensor) -> tuple[int, int]:
    """Storage and version of ``t``; inference tensors (the fused QKV cache) have no version and never change."""
    return t.data_ptr(), (0 if t.is_inference() else t._version)


def _dense(x: Tensor, linear: torch.nn.Linear) -> Tensor:
    return _linear(x, linear, linear.weight, linear.bias)


def _layer_forward(layer: torch.nn.Module, hidden: Tensor, packing: _Packing, cache: bool = True) -> Tensor:
    """One encoder layer on packed ``hidden`` (tokens, hidden_size) -> (tokens, hidden_size)."""
    attn = layer.attention.self
    heads = int(attn.num_attention_heads)
    weight, bias = _qkv_parameters(attn, cache)
    qkv = _linear(hidden, attn, weight, bias)  # one GEMM for Q, K and V
    size = qkv.shape[-1] // 3
    padded = packing.unpack(qkv).view(packing.batch, packing.length, 3, heads, size // heads)
    q, k, v = padded.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, length, head_dim)
    p = float(getattr(attn.dropout, "p", 0.0)) if attn.training and hasattr(attn, "dropout") else 0.0
    context = _attention(q, k, v, packing, p, float(attn.scaling))
    context = packing.pack(context.transpose(1, 2)).reshape(-1, size)  # one gather, no padded copy

    out = layer.attention.output
    hidden = out.LayerNorm(out.dropout(_dense(context, out.dense)) + hidden)
    inter = layer.intermediate.intermediate_act_fn(_dense(hidden, layer.intermediate.dense))
    ffn = layer.output
    return ffn.LayerNorm(ffn.dropout(_dense(inter, ffn.dense)) + hidden)


def _checkpoint_function(model: torch.nn.Module, layer: torch.nn.Module) -> Any:
    """The checkpoint function ``gradient_checkpointing_enable`` set for ``layer`` (on the layer in recent
    transformers, on the encoder in older ones), or None when checkpointing is off."""
    owner = layer if hasattr(layer, "gradient_checkpointing") else model.encoder
    if not getattr(owner, "gradient_checkpointing", False):
        return None
    return getattr(owner, "_gradient_checkpointing_func", None)


# Under FSDP (``fully_shard`` on each encoder layer) a layer's weights exist only inside a call that FSDP sees,
# so the packed layer is registered on each sharded layer as an FSDP forward method under this name (torch's
# ``register_fsdp_forward_method``: all-gather before, reshard and backward hooks after, like ``forward``).
FSDP_LAYER_METHOD = "raystx_packed_layer"


def prepare_for_fsdp(model: torch.nn.Module) -> bool:
    """After ``fully_shard``: register the packed layer as an FSDP forward method of each sharded encoder layer.

    True when the packed forward can run on the sharded ``model``: every ``encoder.layer[i]`` is an FSDP unit
    and nothing inside a layer is sharded on its own (the packed layer reads its sub-modules' weights, which the
    layer's all-gather makes whole). False otherwise (e.g. ``transformer_layer_cls_to_wrap`` naming attention
    modules): the caller then runs the Hugging Face forward."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    layers = _get(model, "encoder.layer")
    if layers is None or not all(isinstance(layer, FSDPModule) for layer in layers):
        return False
    if any(isinstance(sub, FSDPModule) for layer in layers for sub in layer.modules() if sub is not layer):
        return False
    for layer in layers:
        if FSDP_LAYER_METHOD not in layer.__dict__:
            setattr(layer, FSDP_LAYER_METHOD, functools.partial(_layer_forward, layer, cache=False))
            register_fsdp_forward_method(layer, FSDP_LAYER_METHOD)
    return True


def packed_forward(
    model: torch.nn.Module, inputs: dict[str, Tensor], output_hidden_states: bool = False
) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """(last_hidden_state, hidden_states or None) of ``model`` for tokenized ``inputs``, padding not computed.

    ``inputs`` holds ``input_ids`` and ``attention_mask`` (and optionally ``token_type_ids``/``position_ids``), each
    (batch, length). Returned tensors are (batch, length, hidden) with zeros at padding positions;
    ``hidden_states`` (embeddings output, then every layer's) only when ``output_hidden_states``.
    """
    mask = inputs["attention_mask"]
    embed_kwargs = {k: inputs[k] for k in ("input_ids", "token_type_ids", "position_ids") if k in inputs}
    packing = _Packing(mask)
    hidden = packing.pack(model.embeddings(**embed_kwargs))
    states = [hidden] if output_hidden_states else None
    for layer in model.encoder.layer:
        # the FSDP forward method when the layer is sharded (``prepare_for_fsdp``), else the plain function
        run = layer.__dict__.get(FSDP_LAYER_METHOD) or functools.partial(_layer_forward, layer)
        checkpoint = _checkpoint_function(model, layer)
        if checkpoint is not None and layer.training and torch.is_grad_enabled():
            # transformers' per-layer activation checkpointing (``gradient_checkpointing_enable``), applied to the
            # packed layer: only the layer's input is kept, the layer is re-run in backward
            hidden = checkpoint(run, hidden, packing)
        else:
            hidden = run(hidden, packing)
        if states is not None:
            states.append(hidden)
    last = packing.unpack(hidden)
    if states is None:
        return last, None
    return last, tuple(packing.unpack(s) for s in states[:-1]) + (last,)
