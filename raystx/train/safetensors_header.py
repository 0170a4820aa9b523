"""Tensor names and shapes of a ``.safetensors`` file, read from its header only (no tensor data is loaded).

``read_header(path)`` returns ``{tensor name: (dtype, shape)}``; a file that is not valid safetensors raises
``raystx.train.checkpoint.CorruptCheckpointError`` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


def read_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of the tensors in a safetensors file (``__metadata__`` left out)."""
    from raystx.train.checkpoint import CorruptCheckpointError

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise CorruptCheckpointError(
                    f"{path} is not a safetensors file ({size} bytes, shorter than its 8-byte header length): "
                    "the checkpoint was not completely written or the file was damaged"
                )
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, size - 8):
                raise CorruptCheckpointError(
                    f"{path} is not a valid safetensors file (its header claims {length} bytes, the file has "
                    f"{size}): the file is truncated or damaged"
                )
            header = json.loads(handle.read(length))
    except CorruptCheckpointError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(
            f"{path} is not a valid safetensors file (unreadable header: {exc})"
        ) from exc
    except OSError as exc:
        raise CorruptCheckpointError(f"cannot read {path}: {exc}") from exc
    return {
        name: (str(info.get("dtype")), tuple(info.get("shape", ())))
        for name, info in header.items()
        if name != "__metadata__" and isinstance(info, dict)
    }
