"""Where a model's weights came from, and whether they still are those: ``WeightsOrigin``.

What goes in: a model just loaded from a saved directory (``SentenceTransformer(path)`` records it). What comes
out: ``origin.unchanged_reason(model)``, None when the model's weights are provably still those of the directory,
else a sentence saying why not. FSDP training uses it to ship a weightless (meta-device) model to the workers and
let them read their shards from the directory (``raystx.train.fsdp_ship``) instead of pickling the full weights.

"Provably the same" is checked cheaply, without reading a tensor:

- the parameters and buffers: the same tensor objects (``id``), under the same names, with the same shape, dtype,
  device, storage (``data_ptr``) and in-place version counter (``_version``, bumped by every in-place change:
  an optimizer step, ``copy_``, ``normal_``, ``load_state_dict``). A parameter replaced, added or removed (an
  adapter, a new module, ``model.half()``) changes the fingerprint too. A deep copy of a loaded model has other
  tensor objects, so it does not count as loaded from the directory (the conservative answer);
- the directory: every file's relative path, size and modification time, as listed at load time (a model saved
  over it later no longer matches).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

Fingerprint = tuple[tuple[Any, ...], ...]
Listing = tuple[tuple[str, int, int], ...]


def tensor_fingerprint(model: nn.Module) -> Fingerprint:
    """Identity, name, shape, dtype, device, storage and version of every parameter and buffer of ``model``."""
    rows = []
    for kind, named in (("p", model.named_parameters()), ("b", model.named_buffers())):
        for name, t in named:
            ptr = 0 if t.is_meta else t.data_ptr()
            rows.append((kind, name, id(t), tuple(t.shape), str(t.dtype), str(t.device), ptr, t._version))
    return tuple(rows)


def directory_listing(directory: str | os.PathLike) -> Listing:
    """``(relative path, size, mtime_ns)`` of every file under ``directory``, sorted."""
    root = Path(directory)
    rows = []
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            rows.append((path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(rows))


@dataclass
class WeightsOrigin:
    """The directory a model's weights were loaded from, the loader's keyword arguments, and the fingerprints
    that say whether the model and the directory are still as they were."""

    directory: str
    loader_kwargs: dict[str, Any]
    listing: Listing
    fingerprint: Fingerprint = field(repr=False)

    @classmethod
    def record(
        cls, model: nn.Module, directory: str | os.PathLike, loader_kwargs: dict[str, Any]
    ) -> WeightsOrigin:
        """The origin of ``model``, just loaded from ``directory`` with ``loader_kwargs``."""
        return cls(
            directory=str(Path(directory).absolute()),
            loader_kwargs=dict(loader_kwargs),
            listing=directory_listing(directory),
            fingerprint=tensor_fingerprint(model),
        )

    def unchanged_reason(self, model: nn.Module) -> str | None:
        """None when ``model`` still holds exactly the weights of ``directory``; else why not (for a log line)."""
        if tensor_fingerprint(model) != self.fingerprint:
            return "its parameters or buffers were changed, replaced, moved or added after loading"
        if not Path(self.directory).is_dir():
            return f"{self.directory} no longer exists"
        if directory_listing(self.directory) != self.listing:
            return f"the files in {self.directory} changed after the model was loaded"
        return None


def origin_of(model: nn.Module) -> WeightsOrigin | None:
    """The ``WeightsOrigin`` recorded on ``model`` when it was loaded from a directory, else None."""
    origin = getattr(model, "_weights_origin", None)
    return origin if isinstance(origin, WeightsOrigin) else None
