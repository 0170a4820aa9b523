"""Pooling: turns per-token embeddings (batch, seq, dim) into one sentence embedding (batch, k * dim).

Modes: ``cls`` (first real token), ``max``, ``mean``, ``mean_sqrt_len_tokens`` (sum / sqrt(n)),
``weightedmean`` (position-weighted mean, weights 1..n counted from the first real token) and
``lasttoken`` (last real token). Several modes are concatenated along the last axis, in the order given by
``pooling_mode`` (a tuple), or, when the legacy boolean flags are used, in the fixed sentence-transformers order
cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from raystx.models.module import ModelModule

POOLING_MODES: tuple[str, ...] = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# legacy boolean flag -> mode name, in the order sentence-transformers concatenates them
LEGACY_FLAGS: dict[str, str] = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def modes_from_flags(flags: dict[str, Any]) -> tuple[str, ...]:
    """The modes switched on by legacy ``pooling_mode_*`` booleans, in sentence-transformers order."""
    return tuple(mode for flag, mode in LEGACY_FLAGS.items() if flags.get(flag))


def _first_real_index(mask: Tensor) -> Tensor:
    """Index of the first non-padding position of each row (0 for right padding)."""
    return mask.to(torch.int32).argmax(dim=1)


def _drop_prompt(mask: Tensor, prompt_length: int) -> Tensor:
    """A copy of ``mask`` with the first ``prompt_length`` real tokens of every row zeroed."""
    start = _first_real_index(mask)
    positions = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)
    return mask.masked_fill(positions < (start + prompt_length).unsqueeze(1), 0)


class Pooling(ModelModule):
    """Pool token embeddings into a sentence embedding.

    Args:
        embedding_dimension: width of the token embeddings (``word_embedding_dimension`` is accepted too).
        pooling_mode: a mode name or a sequence of mode names (concatenated in that order). When ``None``,
            the legacy boolean flags decide; with neither, ``"mean"``.
        pooling_mode_*: legacy boolean flags (``pooling_mode_cls_token``, ``pooling_mode_max_tokens``,
            ``pooling_mode_mean_tokens``, ``pooling_mode_mean_sqrt_len_tokens``,
            ``pooling_mode_weightedmean_tokens``, ``pooling_mode_lasttoken``).
        include_prompt: when ``False`` and the features carry ``prompt_length``, prompt tokens are not pooled.

    ``forward`` reads ``token_embeddings`` and ``attention_mask`` and writes ``sentence_embedding``.
    """

    config_keys: ClassVar[list[str]] = ["embedding_dimension", "pooling_mode", "include_prompt"]
    st_class_ref: ClassVar[str] = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"

    def __init__(
        self,
        embedding_dimension: int | None = None,
        pooling_mode: str | Sequence[str] | None = None,
        pooling_mode_cls_token: bool = False,
        pooling_mode_max_tokens: bool = False,
        pooling_mode_mean_tokens: bool = False,
        pooling_mode_mean_sqrt_len_tokens: bool = False,
        pooling_mode_weightedmean_tokens: bool = False,
        pooling_mode_lasttoken: bool = False,
        include_prompt: bool = True,
        word_embedding_dimension: int | None = None,
    ) -> None:
        super().__init__()
        if embedding_dimension is None:
            embedding_dimension = word_embedding_dimension
        if embedding_dimension is None:
            raise ValueError("Pooling needs embedding_dimension (the width of the token embeddings)")
        if pooling_mode is None:
            modes = modes_from_flags(
                {
                    "pooling_mode_cls_token": pooling_mode_cls_token,
                    "pooling_mode_max_tokens": pooling_mode_max_tokens,
                    "pooling_mode_mean_tokens": pooling_mode_mean_tokens,
                    "pooling_mode_mean_sqrt_len_tokens": pooling_mode_mean_sqrt_len_tokens,
                    "pooling_mode_weightedmean_tokens": pooling_mode_weightedmean_tokens,
                    "pooling_mode_lasttoken": pooling_mode_lasttoken,
                }
            ) or ("mean",)
        elif isinstance(pooling_mode, str):
            modes = (pooling_mode,)
        else:
            modes = tuple(pooling_mode)
        if not modes:
            raise ValueError("pooling_mode must name at least one mode")
        for mode in modes:
            if mode not in POOLING_MODES:
                raise ValueError(f"Unknown pooling mode {mode!r}; expected one of {POOLING_MODES}")
        self.embedding_dimension = int(embedding_dimension)
        self.modes: tuple[str, ...] = modes
        self.include_prompt = include_prompt

    # -- configuration -------------------------------------------------------------------------------------
    @property
    def pooling_mode(self) -> str | list[str]:
        """One mode name, or the list of modes when several are concatenated (as written to config.json)."""
        return self.modes[0] if len(self.modes) == 1 else list(self.modes)

    @property
    def word_embedding_dimension(self) -> int:
        return self.embedding_dimension

    @property
    def pooling_output_dimension(self) -> int:
        return len(self.modes) * self.embedding_dimension

    def get_pooling_mode_str(self) -> str:
        return "+".join(self.modes)

    def get_sentence_embedding_dimension(self) -> int:
        return self.pooling_output_dimension

    get_embedding_dimension = get_sentence_embedding_dimension

    @classmethod
    def load_config(cls, input_path) -> dict[str, Any]:
        """Read config.json, translating the legacy keys (``word_embedding_dimension``, ``pooling_mode_*``)."""
        raw = super().load_config(input_path)
        config: dict[str, Any] = {}
        config["embedding_dimension"] = raw.get("embedding_dimension", raw.get("word_embedding_dimension"))
        if raw.get("pooling_mode") is not None:
            config["pooling_mode"] = raw["pooling_mode"]
        else:
            config["pooling_mode"] = modes_from_flags(raw) or ("mean",)
        config["include_prompt"] = raw.get("include_prompt", True)
        return config

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        tokens: Tensor = features["token_embeddings"]
        mask = features.get("attention_mask")
        if mask is None or mask.size(-1) != tokens.size(1):
            mask = torch.ones(tokens.shape[:-1], dtype=torch.int64, device=tokens.device)
        full_mask = mask
        prompt_length = features.get("prompt_length") if not self.include_prompt else None
        if prompt_length is not None:
            if isinstance(prompt_length, Tensor):
                prompt_length = int(prompt_length.reshape(-1)[0].item())
            if prompt_length:
                mask = _drop_prompt(mask, int(prompt_length))
        pooled = [self._pool(mode, tokens, mask, full_mask, features) for mode in self.modes]
        features["sentence_embedding"] = torch.cat(pooled, dim=-1)
        return features

    @staticmethod
    def _pool(mode: str, tokens: Tensor, mask: Tensor, full_mask: Tensor, features: dict[str, Any]) -> Tensor:
        """One pooled (batch, dim) tensor for ``mode``; ``full_mask`` is the mask before prompt removal."""
        acc_dtype = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
        if mode == "cls":
            if "cls_token_embeddings" in features:
                return features["cls_token_embeddings"]
            rows = torch.arange(tokens.size(0), device=tokens.device)
            return tokens[rows, _first_real_index(mask).long()]
        if mode == "max":
            keep = mask.unsqueeze(-1).bool()
            return tokens.masked_fill(~keep, float("-inf")).amax(dim=1)
        if mode in ("mean", "mean_sqrt_len_tokens"):
            m = mask.unsqueeze(-1).to(tokens.dtype)
            total = (tokens * m).sum(dim=1, dtype=acc_dtype)
            out_dtype = tokens.dtype
            if "token_weights_sum" in features:
                count = features["token_weights_sum"].unsqueeze(-1)
                out_dtype = torch.promote_types(out_dtype, count.dtype)
                count = count.to(torch.promote_types(acc_dtype, count.dtype))
            else:
                count = m.sum(dim=1, dtype=acc_dtype)
            count = count.clamp(min=1e-9)
            denom = count if mode == "mean" else count.sqrt()
            return (total / denom).to(out_dtype)
        if mode == "weightedmean":
            seq = tokens.size(1)
            positions = torch.arange(1, seq + 1, device=tokens.device, dtype=acc_dtype).view(1, -1, 1)
            positions = positions - _first_real_index(full_mask).to(acc_dtype).view(-1, 1, 1)
            w = mask.unsqueeze(-1).to(acc_dtype) * positions
            total = (tokens * w).sum(dim=1)
            out_dtype = tokens.dtype
            if "token_weights_sum" in features:
                norm = features["token_weights_sum"].unsqueeze(-1)
                out_dtype = torch.promote_types(out_dtype, norm.dtype)
                norm = norm.to(torch.promote_types(acc_dtype, norm.dtype))
            else:
                norm = w.sum(dim=1)
            return (total / norm.clamp(min=1e-9)).to(out_dtype)
        if mode == "lasttoken":
            seq = tokens.size(1)
            flipped_hit, flipped_idx = mask.flip(1).max(dim=1)
            last = seq - 1 - flipped_idx
            last = torch.where(flipped_hit == 0, torch.zeros_like(last), last)
            rows = torch.arange(tokens.size(0), device=tokens.device)
            masked = tokens * mask.unsqueeze(-1).to(tokens.dtype)
            return masked[rows, last.long()]
        raise ValueError(f"Unknown pooling mode {mode!r}")
