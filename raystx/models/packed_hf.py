"""Packed (padding-free) forward for models whose attention goes through transformers' attention interface:
decoder embedders (Qwen3, Qwen2, Llama, Mistral, Gemma) and ModernBERT.

How it works. Everything in these layers except the attention itself acts on each token independently
(embeddings, RMSNorm/LayerNorm, Q/K/V/O projections, rotary embeddings given the token's position, the MLP). So
the Hugging Face model is called unchanged on one packed row of ``(1, real tokens)`` ids, with each token's
``position_ids`` set to its column in the padded batch (what the padded forward gives it), and only the attention
is redirected: ``sdpa`` in transformers' ``AttentionInterface`` is replaced, process-wide, by a dispatcher that
calls the original ``sdpa`` unchanged unless the call carries a ``raystx_packing`` keyword (which transformers
passes from the model's ``forward`` down to every attention call). With it, Q/K/V of the real tokens are scattered
back to the padded ``(batch, heads, length, head_dim)`` layout, the original ``sdpa`` runs there with the mask that
transformers itself builds for the padded batch (causal or bidirectional, sliding windows, padding side), and the
result is gathered back to the packed rows. No token attends across sequences; the linear layers, norms and MLP
only see real tokens.

Because the packing travels as a keyword argument (not as a temporary setting), transformers' per-layer gradient
checkpointing re-runs a layer in backward with the same packing, so checkpointing and the packed forward compose.

``hf_packed_supported(model)`` says whether the model is one of these families with ``sdpa`` attention;
``hf_packed_forward(model, inputs, output_hidden_states)`` runs it. Results equal the padded forward on real tokens
to float rounding (the GEMMs see fewer rows); padding positions of the output are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from raystx.models.packed import _Packing

# model_type -> how its layers attend: the families whose forward this path reproduces (tested one by one)
FAMILIES: dict[str, str] = {
    "qwen3": "causal",
    "qwen2": "causal",
    "llama": "causal",
    "mistral": "causal",
    "gemma": "causal",
    "modernbert": "bidirectional",
}
PACKING_KWARG = "raystx_packing"
_ORIGINAL: dict[
    str, Any
] = {}  # "sdpa" -> transformers' own sdpa attention function, once the dispatcher is installed


@dataclass
class AttentionPacking:
    """What the attention dispatcher needs: the index bookkeeping and one padded-batch mask per layer index."""

    packing: _Packing
    masks: dict[int, Any]

    def to_padded(self, packed: Tensor) -> Tensor:
        """(1, heads, tokens, head_dim) -> (batch, heads, length, head_dim), zeros at padding."""
        rows = packed[0].transpose(0, 1)  # (tokens, heads, head_dim)
        return self.packing.unpack(rows).permute(0, 2, 1, 3)

    def to_packed(self, padded: Tensor) -> Tensor:
        """(batch, length, heads, head_dim) -> (1, tokens, heads, head_dim)."""
        return self.packing.pack(padded).unsqueeze(0)


def _dispatch_sdpa(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Any,
    raystx_packing: AttentionPacking | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Any]:
    """transformers' ``sdpa`` attention; for a packed call, run on the padded layout and gather back."""
    original = _ORIGINAL["sdpa"]
    if raystx_packing is None:
        return original(module, query, key, value, attention_mask, **kwargs)
    mask = raystx_packing.masks[int(getattr(module, "layer_idx", 0) or 0)]
    q, k, v = (raystx_packing.to_padded(t) for t in (query, key, value))
    out, weights = original(module, q, k, v, mask, **kwargs)
    return raystx_packing.to_packed(out), weights


def install_dispatcher() -> None:
    """Route transformers' ``sdpa`` through ``_dispatch_sdpa`` (idempotent; transparent for unpacked calls)."""
    if "sdpa" in _ORIGINAL:
        return
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    _ORIGINAL["sdpa"] = ALL_ATTENTION_FUNCTIONS["sdpa"]
    AttentionInterface.register("sdpa", _dispatch_sdpa)


def _transformers_has_interfaces() -> bool:
    """Whether the installed transformers has the attention interface and the mask builders this path uses
    (``create_causal_mask(config, inputs_embeds, attention_mask, cache, position_ids)``: transformers 5.x)."""
    if "interfaces" not in _ORIGINAL:
        try:
            import inspect

            from transformers import AttentionInterface  # noqa: F401
            from transformers.masking_utils import create_causal_mask

            params = inspect.signature(create_causal_mask).parameters
            _ORIGINAL["interfaces"] = "cache" in params and "cache_position" not in params
        except ImportError:
            _ORIGINAL["interfaces"] = False
    return bool(_ORIGINAL["interfaces"])


def hf_packed_supported(model: torch.nn.Module) -> bool:
    """True for a base (no head) model of a family in ``FAMILIES`` that attends with ``sdpa``."""
    if not _transformers_has_interfaces():
        return False
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in FAMILIES:
        return False
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    layers = getattr(model, "layers", None)
    return isinstance(layers, torch.nn.ModuleList) and len(layers) > 0


def _layer_types(config: Any, count: int) -> list[str]:
    """Each layer's attention kind as the model's forward picks its mask: full or sliding window."""
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)[:count]
    if config.model_type == "mistral" and getattr(config, "sliding_window", None) is not None:
        return [
            "sliding_attention"
        ] * count  # Mistral: one mask for all layers, sliding when the config has one
    return ["full_attention"] * count


def _padded_masks(model: torch.nn.Module, attention_mask: Tensor, dtype: torch.dtype) -> dict[int, Any]:
    """The masks transformers builds for the padded batch, per layer index (None where sdpa needs none)."""
    from transformers import masking_utils as mu

    config = model.config
    batch, length = attention_mask.shape
    stub = torch.empty(batch, length, 1, dtype=dtype, device=attention_mask.device)
    types = _layer_types(config, len(model.layers))
    built: dict[str, Any] = {}
    for kind in set(types):
        if FAMILIES[config.model_type] == "bidirectional":
            make = (
                mu.create_bidirectional_sliding_window_mask
                if kind == "sliding_attention"
                else mu.create_bidirectional_mask
            )
            built[kind] = make(config=config, inputs_embeds=stub, attention_mask=attention_mask)
        else:
            make = (
                mu.create_sliding_window_causal_mask if kind == "sliding_attention" else mu.create_causal_mask
            )
            positions = torch.arange(length, device=attention_mask.device).unsqueeze(0)
            built[kind] = make(
                config=config,
                inputs_embeds=stub,
                attention_mask=attention_mask,
                cache=None,
                position_ids=positions,
            )
    return {i: built[kind] for i, kind in enumerate(types)}


def hf_packed_forward(
    model: torch.nn.Module, inputs: dict[str, Tensor], output_hidden_states: bool = False
) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """(last_hidden_state, hidden_states or None) of ``model`` for ``inputs``, padding not computed.

    ``inputs`` holds ``input_ids`` and ``attention_mask`` (batch, length), either padding side. Returned tensors
    are (batch, length, hidden) with zeros at padding positions; ``hidden_states`` only when asked for.
    """
    install_dispatcher()
    mask = inputs["attention_mask"]
    packing = _Packing(mask)
    columns = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
    positions = inputs.get("position_ids")
    positions = columns if positions is None else positions.expand(mask.shape)
    embed_dtype = model.get_input_embeddings().weight.dtype
    attention = AttentionPacking(packing, _padded_masks(model, mask, embed_dtype))
    kwargs: dict[str, Any] = {PACKING_KWARG: attention, "use_cache": False}
    if output_hidden_states:
        kwargs["output_hidden_states"] = True
    output = model(
        input_ids=packing.pack(inputs["input_ids"]).unsqueeze(0),
        position_ids=packing.pack(positions).unsqueeze(0),
        return_dict=True,
        **kwargs,
    )
    last = packing.unpack(output.last_hidden_state[0])
    if not output_hidden_states:
        return last, None
    return last, tuple(packing.unpack(s[0]) for s in output.hidden_states)
