"""Embedding quantization with sentence-transformers' semantics.

- ``float32``: a float32 copy.
- ``uint8`` / ``int8``: per dimension, the range [min, max] (from ``ranges`` (2, dim), else from
  ``calibration_embeddings``, else from the embeddings themselves) is cut into 255 equal steps;
  a value becomes ``clip(floor((x - min) / step), 0, 255)``, stored as uint8, or minus 128 as int8.
  A zero-width range uses a step of 1.
- ``ubinary``: the bits ``x > 0`` packed 8 per byte (``np.packbits``, first dimension in the high bit),
  shape (n, ceil(dim / 8)) uint8; ``binary``: the same bytes minus 128 as int8.
"""

from __future__ import annotations

import numpy as np
import torch

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def _to_numpy(embeddings: torch.Tensor | np.ndarray | list) -> np.ndarray:
    if isinstance(embeddings, torch.Tensor):
        t = embeddings.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()
    if isinstance(embeddings, list):
        return np.stack([_to_numpy(e) for e in embeddings]) if embeddings else np.zeros((0, 0), np.float32)
    return np.asarray(embeddings)


def quantization_ranges(embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension (min, max) of ``embeddings`` as a (2, dim) array."""
    if embeddings.ndim == 1 or embeddings.shape[0] < 2:
        raise ValueError(
            "int8/uint8 ranges cannot be computed from a single embedding; pass ranges or calibration_embeddings"
        )
    return np.stack([embeddings.min(axis=0), embeddings.max(axis=0)])


def quantize_embeddings(
    embeddings: torch.Tensor | np.ndarray | list,
    precision: str,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """Quantize float embeddings (n, dim) to ``precision`` (see the module docstring); returns a numpy array."""
    if precision not in PRECISIONS:
        raise ValueError(f"Precision {precision!r} is not supported; expected one of {PRECISIONS}")
    x = _to_numpy(embeddings)
    if x.dtype in (np.int8, np.uint8):
        raise ValueError("Embeddings to quantize must be floats, not int8/uint8")
    if precision == "float32":
        return x.astype(np.float32)
    if precision in ("int8", "uint8"):
        if ranges is None:
            source = _to_numpy(calibration_embeddings) if calibration_embeddings is not None else x
            ranges = quantization_ranges(source)
        ranges = np.asarray(ranges, dtype=np.float32)
        low = ranges[0]
        step = (ranges[1] - low) / 255
        step = np.where(step == 0, 1, step)
        buckets = np.clip(np.floor((x - low) / step), 0, 255)
        return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
    packed = np.packbits(x > 0, axis=-1)
    return packed if precision == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)
