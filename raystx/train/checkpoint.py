"""Checkpoint layout and (de)serialisation; safe to load (safetensors + ``torch.load(weights_only=True)``).

A checkpoint directory holds::

    model/                      the model in sentence-transformers format (rank 0)
    loss_modules.safetensors    parameters of losses beyond the model, e.g. a SoftmaxLoss head (rank 0)
    optimizer.pt, scheduler.pt  optimizer / LR-scheduler state (rank 0)
    fsdp/                       FSDP runs instead of optimizer.pt: model and optimizer shards written with
                                torch.distributed.checkpoint (raystx.train.strategy_fsdp.FsdpWeights)
    rng_state_{rank}.pt         each rank's torch / numpy / python RNG state
    trainer_state.json          global step, epoch, position in the epoch, metrics, log history; written last,
                                with a manifest of the other files' sizes so a truncated checkpoint is detected
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raystx.train.state import STATE_FILE, CheckpointState


class CorruptCheckpointError(RuntimeError):
    """A checkpoint directory is incomplete or its files do not match the manifest."""


def loss_modules_state(losses: dict[str, nn.Module], model: nn.Module) -> dict[str, torch.Tensor]:
    """Tensors of every loss's own parameters/buffers (not the shared model), keyed ``{dataset}.{name}``.

    A tensor reachable under several names is stored once, under its first name: weights tied inside a loss
    (a TSDAE decoder's output bias), a module shared by several losses (one guide model for two GIST losses)
    or one loss used for several datasets. safetensors refuses tensors that share memory, and loading the
    one copy restores every alias, since they are the same tensor.
    """
    seen = {id(t) for t in model.state_dict(keep_vars=True).values()}
    out: dict[str, torch.Tensor] = {}
    for ds, loss in losses.items():
        for name, tensor in loss.state_dict(keep_vars=True).items():
            if id(tensor) not in seen and not name.startswith("model."):
                seen.add(id(tensor))
                out[f"{ds}.{name}"] = tensor.detach().cpu().contiguous()
    return out


def load_loss_modules_state(losses: dict[str, nn.Module], state: dict[str, torch.Tensor]) -> None:
    for ds, loss in losses.items():
        prefix = f"{ds}."
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if own:
            loss.load_state_dict(own, strict=False)


class ReplicatedWeights:
    """The model and optimizer part of a checkpoint when every rank holds the whole model: rank 0 writes
    ``model/`` and ``optimizer.pt``. A strategy's ``weights`` object has these two methods (the FSDP one writes
    sharded state instead); both are called on every rank."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def save(self, directory: Path, rank: int, optimizer: torch.optim.Optimizer, resumable: bool) -> None:
        if rank != 0:
            return
        self.model.save_pretrained(str(directory / "model"))
        if resumable:
            torch.save(optimizer.state_dict(), directory / "optimizer.pt")

    def load(self, directory: Path, optimizer: torch.optim.Optimizer | None) -> None:
        load_model_weights(self.model, directory / "model")
        if optimizer is not None:
            optimizer.load_state_dict(
                torch.load(directory / "optimizer.pt", weights_only=True, map_location="cpu")
            )


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(
    directory: Path,
    *,
    rank: int,
    model: nn.Module,
    losses: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: CheckpointState,
    weights: Any = None,
) -> None:
    """Write this rank's share of a checkpoint into ``directory`` (rank 0 writes the shared parts).

    ``trainer_state.resumable=False`` writes the model, loss modules and state only: no optimizer, scheduler
    or RNG state (``save_only_model``, and the final checkpoint of a run with ``save_strategy="no"``, which
    exists only to bring the weights back to the driver). ``weights`` (the parameter strategy's, default
    ``ReplicatedWeights``) writes the model and optimizer; every rank must call this. A failed write (a full disk, ...) raises ``OSError``
    naming the checkpoint folder and the cause.
    """
    from raystx.quiet import no_weight_bars

    try:
        with no_weight_bars():  # a checkpoint is not something to draw a bar for on every save
            _write_checkpoint(
                directory,
                rank=rank,
                model=model,
                losses=losses,
                optimizer=optimizer,
                scheduler=scheduler,
                trainer_state=trainer_state,
                weights=weights or ReplicatedWeights(model),
            )
    except (OSError, RuntimeError) as exc:
        import errno

        code = getattr(exc, "errno", None)
        full = code == errno.ENOSPC or "No space left" in str(exc) or "file write failed" in str(exc)
        hint = " (is the disk full? free space there or choose another output_dir)" if full else ""
        raise OSError(
            code or (errno.ENOSPC if full else errno.EIO),
            f"writing checkpoint {directory} failed{hint}: {type(exc).__name__}: {exc}",
        ) from exc


def _write_checkpoint(
    directory: Path,
    *,
    rank: int,
    model: nn.Module,
    losses: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: CheckpointState,
    weights: Any,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if trainer_state.resumable:
        torch.save(_plain_rng(rng_state()), directory / f"rng_state_{rank}.pt")
    weights.save(directory, rank, optimizer, trainer_state.resumable)
    if rank != 0:
        return
    from safetensors.torch import save_file

    extra = loss_modules_state(losses, model)
    if extra:
        save_file(extra, str(directory / "loss_modules.safetensors"))
    if trainer_state.resumable:
        torch.save(scheduler.state_dict(), directory / "scheduler.pt")
    manifest = {
        str(p.relative_to(directory)): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.name.startswith("rng_state_")
    }
    payload = dict(trainer_state.to_json(), manifest=manifest)
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, directory / STATE_FILE)  # the state file appears last and atomically


def sorted_checkpoints(run_dir: Path) -> list[Path]:
    """``checkpoint-{step}`` folders of a run, newest (highest step) first."""
    found = []
    for path in run_dir.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return [p for _, p in sorted(found, reverse=True)]


def read_trainer_state(directory: str | os.PathLike) -> CheckpointState:
    """Load and verify ``trainer_state.json``; raise ``CorruptCheckpointError`` if anything is missing or short."""
    directory = Path(directory)
    path = directory / STATE_FILE
    if not path.is_file():
        raise CorruptCheckpointError(
            f"{directory} has no {STATE_FILE}: the checkpoint was not completely written"
        )
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorruptCheckpointError(f"{path} is not valid JSON ({exc})") from exc
    for rel, size in state.get("manifest", {}).items():
        file = directory / rel
        if not file.is_file() or file.stat().st_size != size:
            raise CorruptCheckpointError(f"checkpoint file {file} is missing or truncated")
    try:
        return CheckpointState.from_json(state)
    except TypeError as exc:  # a required field is missing
        raise CorruptCheckpointError(f"{path} lacks a field raystx needs ({exc})") from exc


def restore_checkpoint(
    directory: str | os.PathLike,
    *,
    rank: int,
    model: nn.Module,
    losses: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    weights: Any = None,
) -> CheckpointState:
    """Load model, loss modules, optimizer, scheduler and this rank's RNG state; return the trainer state.
    ``weights`` (the parameter strategy's, default ``ReplicatedWeights``) reads the model and optimizer."""
    directory = Path(directory)
    state = read_trainer_state(directory)
    if not state.resumable:
        raise CorruptCheckpointError(
            f"{directory} holds the model only (save_only_model, or the final save of a save_strategy='no' run): "
            "it has no optimizer/scheduler state to resume from"
        )
    (weights or ReplicatedWeights(model)).load(directory, optimizer)
    extra = directory / "loss_modules.safetensors"
    if extra.is_file():
        load_loss_modules_state(losses, load_tensors(extra))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
    rng_file = directory / f"rng_state_{rank}.pt"
    if rng_file.is_file():
        set_rng_state(_restore_rng(torch.load(rng_file, weights_only=True)))
    return state


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file(path)``; a damaged file raises ``CorruptCheckpointError`` naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors' errors do not name the file
        raise _load_error(Path(path), exc) from exc


def _load_error(path: Path, exc: BaseException) -> Exception:
    """The error to raise when reading a checkpoint file at ``path`` failed with ``exc``: the first damaged
    safetensors file under ``path`` named as ``CorruptCheckpointError``, an ``OSError`` with its path, else
    ``CorruptCheckpointError`` naming ``path`` and the original error."""
    from raystx.train.safetensors_header import read_header

    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors")) if path.is_dir() else []
    for file in files:
        if file.suffix == ".safetensors":
            read_header(file)  # raises CorruptCheckpointError naming the file
    if isinstance(exc, OSError):
        return OSError(
            exc.errno,
            f"reading checkpoint file {getattr(exc, 'filename', None) or path} failed: {exc.strerror or exc}",
        )
    return CorruptCheckpointError(f"cannot load {path}: {type(exc).__name__}: {exc}")


def load_model_weights(model: nn.Module, model_dir: str | os.PathLike) -> None:
    """Copy the weights of a saved model directory into ``model`` in place (same architecture). A model with a
    PEFT adapter reads only its adapter and its other modules' weights (``restore_adapter_checkpoint``)."""
    from raystx.models import SentenceTransformer
    from raystx.models.adapters import restore_adapter_checkpoint

    try:
        if restore_adapter_checkpoint(model, model_dir):
            return
    except (OSError, ValueError) as exc:
        raise _load_error(Path(model_dir), exc) from exc

    from raystx.quiet import no_weight_bars

    try:
        with no_weight_bars():  # weights coming back from a checkpoint, not a model the user is loading
            loaded = SentenceTransformer(str(model_dir), device="cpu")
    except Exception as exc:  # noqa: BLE001 - name the damaged file instead of the loader's internals
        raise _load_error(Path(model_dir), exc) from exc
    # a driver model built without weights (``empty_weights()``, FSDP) gets the loaded tensors themselves
    assign = any(p.is_meta for p in model.parameters())
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False, assign=assign)
    if unexpected:
        raise CorruptCheckpointError(f"{model_dir} holds weights the model does not have: {unexpected[:5]}")
    if missing:
        raise CorruptCheckpointError(f"{model_dir} lacks weights the model needs: {missing[:5]}")


def _plain_rng(state: dict[str, Any]) -> dict[str, Any]:
    """RNG state in a form ``torch.load(weights_only=True)`` accepts (tensors, ints, lists, strings)."""
    py = state["python"]
    np_state = state["numpy"]
    out = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": state["torch"],
    }
    if "cuda" in state:
        out["cuda"] = state["cuda"]
    return out


def _restore_rng(plain: dict[str, Any]) -> dict[str, Any]:
    py = plain["python"]
    np_state = plain["numpy"]
    out = {
        "python": (py[0], tuple(py[1]), py[2]),
        "numpy": (np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]),
        "torch": plain["torch"],
    }
    if "cuda" in plain:
        out["cuda"] = plain["cuda"]
    return out
