"""Embedding quantization for evaluators, used when a model's ``encode`` has no ``precision`` argument.

Semantics follow sentence-transformers' ``quantize_embeddings``: int8/uint8 split each dimension's [min, max]
(taken over the embeddings being quantized) into 256 buckets; binary/ubinary pack the sign bits (>0) into bytes,
binary shifting them by -128 into int8.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def quantize(embeddings: np.ndarray, precision: Precision) -> np.ndarray:
    """Quantize a float (n, d) array; returns float32, int8/uint8 (n, d) or packed int8/uint8 (n, ceil(d/8))."""
    embeddings = np.asarray(embeddings)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed - 128).astype(np.int8) if precision == "binary" else packed
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"{precision} quantization needs at least two embeddings to compute ranges")
    low = embeddings.min(axis=0).astype(np.float32)
    high = embeddings.max(axis=0).astype(np.float32)
    step = (high - low) / 255
    step = np.where(step == 0, 1, step)
    buckets = np.clip(np.floor((embeddings - low) / step), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def unpack_to_float(embeddings: np.ndarray, precision: Precision | None) -> np.ndarray:
    """Turn quantized embeddings into float32 arrays the similarity functions can use.

    binary: shift back to 0..255 and unpack the bits; ubinary: unpack the bits; int8/uint8: cast.
    """
    if precision == "binary":
        embeddings = np.unpackbits((embeddings.astype(np.int16) + 128).astype(np.uint8), axis=1)
    elif precision == "ubinary":
        embeddings = np.unpackbits(embeddings.astype(np.uint8), axis=1)
    if precision in ("int8", "uint8", "binary", "ubinary"):
        return embeddings.astype(np.float32)
    return embeddings
