"""How a checkpoint records the data position: rows trained per dataset, as counts or row-id bitmaps.

``encode_consumed(values, key, names, sizes, arrays)`` turns ``{dataset: int | row ids}`` into JSON-able counts
(written into ``trainer_state.json``) and puts each row-id set, as a packed bitmap over the dataset's rows, into
``arrays`` under ``f"{key}_{index}"`` (saved as ``DATA_POSITION_FILE``). ``decode_consumed`` reverses it: an
entry with a bitmap gives row ids again, one without gives the count. Counts are what the default sampler
needs (rows are consumed in the epoch's order); row ids are what the duplicate-/label-aware samplers need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raystx.data.schedule import Consumed
from raystx.train.state import DATA_POSITION_FILE

__all__ = ["DATA_POSITION_FILE", "decode_consumed", "encode_consumed"]


def encode_consumed(
    values: Mapping[str, Consumed],
    key: str,
    names: Sequence[str],
    sizes: Mapping[str, int],
    arrays: dict[str, np.ndarray],
) -> dict[str, int]:
    """Counts per dataset; row-id sets also go to ``arrays`` as bitmaps (see the module docstring)."""
    out = {}
    for index, name in enumerate(names):
        value = values.get(name, 0)
        if isinstance(value, (int, np.integer)):
            out[name] = int(value)
        else:
            mask = np.zeros(int(sizes[name]), dtype=bool)
            mask[np.asarray(value, dtype=np.int64)] = True
            arrays[f"{key}_{index}"] = np.packbits(mask)
            out[name] = int(mask.sum())
    return out


def decode_consumed(
    position: Mapping[str, Any], key: str, sizes: Mapping[str, int], arrays: Mapping[str, np.ndarray]
) -> dict[str, Consumed]:
    """``{dataset: count or row ids}`` for the datasets of this run (``sizes``) found in ``position``."""
    out: dict[str, Consumed] = {}
    for index, name in enumerate(position.get("datasets", list(sizes))):
        if name not in sizes:
            continue
        bitmap = arrays.get(f"{key}_{index}")
        if bitmap is None:
            out[name] = int(position.get(key, {}).get(name, 0))
        else:
            out[name] = np.flatnonzero(np.unpackbits(bitmap, count=int(sizes[name]))).astype(np.int64)
    return out
