"""Resume compatibility, checked on the driver before any worker starts.

``check_resume_compatible(checkpoint, model, losses)`` compares the checkpoint with the run about to resume
from it, reading headers only (``config.json`` and safetensors headers, never the tensors):

* the model: the trainer's model is saved into a temporary folder and each safetensors file's tensor names and
  shapes, and each ``config.json``'s architecture, are compared with the checkpoint's ``model/`` folder;
* the losses' own parameters (a ``SoftmaxLoss`` classifier, ...): their names and shapes against
  ``loss_modules.safetensors``.

Raises ``IncompatibleCheckpointError`` naming the checkpoint, what differs (architecture, first differing
tensors with both shapes) and the fix (resume with the same model and losses, or start a new run).
``resumed_checkpoint(run_dir, resume_from_checkpoint)`` is the checkpoint a run would resume from.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from raystx.train.checkpoint import CorruptCheckpointError, read_trainer_state, sorted_checkpoints
from raystx.train.safetensors_header import read_header

SHOWN = 5
_SHARD_SUFFIX = re.compile(r"-\d{5}-of-\d{5}\.safetensors$")


class IncompatibleCheckpointError(ValueError):
    """The checkpoint to resume from holds another model architecture or other loss parameters."""


def resumed_checkpoint(run_dir: str, resume_from_checkpoint: str | bool | None) -> Path | None:
    """The checkpoint ``train()`` resumes from: an explicit path, or the run folder's newest complete one."""
    if isinstance(resume_from_checkpoint, str):
        return Path(resume_from_checkpoint)
    if resume_from_checkpoint is True and "://" not in str(run_dir) and Path(run_dir).is_dir():
        for candidate in sorted_checkpoints(Path(run_dir)):
            try:
                read_trainer_state(candidate)
            except CorruptCheckpointError:
                continue
            return candidate
    return None


def _tensors(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{"file.safetensors:name": (dtype, shape)}`` over every safetensors file under ``folder``; the files of a
    sharded save (``model-00001-of-00003.safetensors``) count as their unsharded name (``model.safetensors``),
    so a checkpoint exported in shards compares equal to the same model saved in one file."""
    out = {}
    for file in sorted(folder.rglob("*.safetensors")):
        rel = _SHARD_SUFFIX.sub(".safetensors", file.relative_to(folder).as_posix())
        for name, spec in read_header(file).items():
            out[f"{rel}:{name}"] = spec
    return out


def _architectures(folder: Path) -> dict[str, str]:
    out = {}
    for file in sorted(folder.rglob("config.json")):
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        arch = config.get("architectures") or config.get("model_type")
        if arch:
            out[file.relative_to(folder).as_posix()] = str(arch)
    return out


def _differences(expected: dict[str, Any], found: dict[str, Any], what: str) -> list[str]:
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(expected[k][1]) != tuple(found[k][1])]
    lines = []
    if shapes:
        shown = ", ".join(
            f"{k} {list(found[k][1])} (this run's: {list(expected[k][1])})" for k in shapes[:SHOWN]
        )
        lines.append(f"{len(shapes)} tensors differ in shape, checkpoint vs this run: {shown}")
    if missing:
        lines.append(f"{len(missing)} tensors of the {what} are not in the checkpoint: {missing[:SHOWN]}")
    if extra:
        lines.append(f"{len(extra)} tensors of the checkpoint are not in the {what}: {extra[:SHOWN]}")
    return lines


def _saved_form(model: nn.Module, tmp: Path) -> Path:
    """A folder holding ``model`` as saved: ``tmp`` after saving it there; for a model built without weights
    (meta parameters, ``empty_weights()``), the directory it was built from, whose files describe it."""
    from raystx.models.weights_origin import origin_of

    origin = origin_of(model)
    if origin is not None and any(p.is_meta for p in model.parameters()):
        return Path(origin.directory)
    model.save_pretrained(str(tmp))
    return tmp


def check_resume_compatible(checkpoint: Path, model: nn.Module, losses: dict[str, nn.Module] | None) -> None:
    """Raise ``IncompatibleCheckpointError`` when ``checkpoint`` does not fit ``model``/``losses``."""
    from raystx.train.checkpoint import loss_modules_state

    checkpoint = Path(checkpoint)
    saved_model = checkpoint / "model"
    problems: list[str] = []
    if saved_model.is_dir():
        with tempfile.TemporaryDirectory(prefix="raystx-resume-check-") as tmp:
            ours = _saved_form(model, Path(tmp))
            arch_ours, arch_theirs = _architectures(ours), _architectures(saved_model)
            for rel, arch in arch_ours.items():
                if rel in arch_theirs and arch_theirs[rel] != arch:
                    problems.append(
                        f"model {rel}: the checkpoint's architecture is {arch_theirs[rel]}, the model's {arch}"
                    )
            problems += [
                f"model: {line}" for line in _differences(_tensors(ours), _tensors(saved_model), "model")
            ]
    if losses is not None:
        expected = {k: (str(v.dtype), tuple(v.shape)) for k, v in loss_modules_state(losses, model).items()}
        file = checkpoint / "loss_modules.safetensors"
        found = read_header(file) if file.is_file() else {}
        problems += [f"losses: {line}" for line in _differences(expected, found, "losses")]
    if problems:
        names = ", ".join(sorted({type(loss).__name__ for loss in (losses or {}).values()})) or "none"
        raise IncompatibleCheckpointError(
            f"cannot resume from {checkpoint}: it was written by another model or another loss "
            f"(this run: {type(model).__name__} with losses {names}).\n  - "
            + "\n  - ".join(problems)
            + "\nResume with the model and losses that wrote the checkpoint, or start a new run "
            "(another output_dir, or overwrite_output_dir=True without resume_from_checkpoint)."
        )
