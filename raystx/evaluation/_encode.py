"""One place where evaluators call ``model.encode``.

Evaluators need nothing from a model but ``encode`` (plus ``encode_query``/``encode_document`` when the model has
them, and ``similarity_fn_name``/``similarity``). Options the model's ``encode`` does not accept (``precision``,
``truncate_dim``, prompts) are applied here instead, so any encoder with a sentence-transformers-like ``encode``
works. In a sharded evaluation the list is split across ranks here (``raystx.evaluation.sharded``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from raystx.evaluation._quantize import quantize
from raystx.evaluation.sharded import encode_rows, sharding_active

Role = Literal["query", "document"] | None


def _accepted_params(fn: Any) -> tuple[set[str], bool]:
    """Names ``fn`` accepts and whether it also takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params}
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return names, has_var_kw


def encode(model: Any, sentences: Sequence[Any], **options: Any) -> np.ndarray | torch.Tensor:
    """Encode ``sentences`` with ``model`` (options: those of :func:`encode_local`); inside a sharded evaluation
    (``raystx.evaluation.sharded``) each rank encodes a slice and every rank gets the whole result.

    int8/uint8 ranges are taken over all the embeddings being quantized, so when sharded the float embeddings
    are gathered first and quantized once (a slice's ranges would differ)."""
    precision = options.get("precision")
    if precision in ("int8", "uint8") and sharding_active():
        as_float = {**options, "precision": None, "convert_to_tensor": False}
        floats = encode_rows(lambda part: encode_local(model, part, **as_float), sentences)
        return quantize(np.asarray(floats, dtype=np.float32), precision)
    return encode_rows(lambda part: encode_local(model, part, **options), sentences)


def encode_local(
    model: Any,
    sentences: Sequence[Any],
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    role: Role = None,
    convert_to_tensor: bool = False,
    precision: str | None = None,
    normalize_embeddings: bool = False,
    truncate_dim: int | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
) -> np.ndarray | torch.Tensor:
    """Encode ``sentences`` with ``model`` and return an (n, d) numpy array or, with ``convert_to_tensor``, a tensor.

    ``role`` picks ``model.encode_query``/``encode_document`` when the model has them (else ``encode``).
    ``precision`` other than float32 returns the quantized array (always numpy). Options the model does not
    accept are emulated: truncation keeps the first ``truncate_dim`` dimensions before normalising, the prompt is
    prepended to each text, quantization follows :func:`raystx.evaluation._quantize.quantize`.
    """
    fn = getattr(model, f"encode_{role}", None) if role else None
    if fn is None:
        fn = model.encode
    names, any_kw = _accepted_params(fn)

    def takes(name: str) -> bool:
        return any_kw or name in names

    sentences = list(sentences)
    kwargs: dict[str, Any] = {"batch_size": batch_size, "show_progress_bar": show_progress_bar}
    if prompt is not None or prompt_name is not None:
        if takes("prompt"):
            kwargs["prompt"] = prompt
            kwargs["prompt_name"] = prompt_name
        elif prompt is not None:
            sentences = [prompt + text for text in sentences]
    own_truncate = truncate_dim is not None and not takes("truncate_dim")
    own_normalize = normalize_embeddings and (own_truncate or not takes("normalize_embeddings"))
    if truncate_dim is not None and not own_truncate:
        kwargs["truncate_dim"] = truncate_dim
    if normalize_embeddings and not own_normalize:
        kwargs["normalize_embeddings"] = True
    quantized = precision not in (None, "float32")
    own_quantize = quantized and (own_truncate or own_normalize or not takes("precision"))
    if quantized and not own_quantize:
        kwargs["precision"] = precision
        return np.asarray(fn(sentences, convert_to_numpy=True, **kwargs))

    embeddings = fn(sentences, convert_to_tensor=True, **kwargs)
    if not isinstance(embeddings, torch.Tensor):
        embeddings = torch.as_tensor(np.asarray(embeddings))
    if own_truncate:
        embeddings = embeddings[..., :truncate_dim]
    if own_normalize:
        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
    if own_quantize:
        return quantize(embeddings.detach().float().cpu().numpy(), precision)  # type: ignore[arg-type]
    if convert_to_tensor:
        return embeddings
    return embeddings.detach().cpu().numpy()
