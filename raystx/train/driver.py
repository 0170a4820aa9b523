"""The driver side of a run: launch the workers, collect the result.

``launch(payload, scaling_config, run_config, show_progress)`` ships the ``WorkerPayload`` once through the object
store and runs a ``TorchTrainer`` whose workers run ``raystx.train.worker.train_worker``; it returns Ray's
``Result``. ``collect(result, model, losses, best)`` loads the final (or best) checkpoint into the driver's
``model`` in place and returns a ``TrainOutput`` whose ``log_history`` is the whole run's (it comes from the
final checkpoint, whichever checkpoint the weights come from).

Staging the data and checking it against the losses happen before, in ``SentenceTransformerTrainer``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from raystx.train.worker import WorkerPayload

logger = logging.getLogger("raystx.train")


@dataclass
class TrainOutput:
    """What ``train()`` returns (mirrors transformers' TrainOutput)."""

    global_step: int
    training_loss: float | None
    metrics: dict[str, Any]
    checkpoint_path: str | None
    log_history: list[dict[str, Any]]
    # the world size of the final checkpoint (an elastic run may end smaller than it started)
    world_size: int | None = None


@dataclass(frozen=True)
class BestCheckpoint:
    """Which checkpoint to load at the end: the best by ``metric`` (``mode`` max/min) when ``enabled``."""

    metric: str | None = None
    mode: str = "max"
    enabled: bool = False


def _ray_train_fn(config: dict[str, Any]) -> None:
    """Entry point on every Ray Train worker."""
    import ray

    from raystx.train.runtime import RayRuntime
    from raystx.train.worker import train_worker

    quiet_report_lines()
    payload = config["payload"]
    if not isinstance(payload, WorkerPayload):  # an object-store reference (see ``launch``)
        payload = ray.get(payload[0])
    train_worker(payload, RayRuntime(run=payload.scratch_tag))


def ray_train_logging() -> Any:
    """Ray Train's ``LoggingConfig`` for a raystx run: its internal records (one line per report, worker-group
    chatter) at WARNING, since the driver shows progress itself; ``RAYSTX_VERBOSE=1`` keeps Ray's INFO."""
    from ray.train import LoggingConfig

    return LoggingConfig(log_level="INFO" if _verbose() else "WARNING")


def _verbose() -> bool:
    return os.environ.get("RAYSTX_VERBOSE", "0").lower() not in ("", "0", "false")


def quiet_report_lines() -> None:
    """Ray Train 2.60 logs every ``ray.train.report`` at INFO through a logger named after its file path (not
    under ``ray.train``, so ``LoggingConfig`` does not reach it): one line per report per worker. Silence it on
    this worker unless ``RAYSTX_VERBOSE=1``."""
    if _verbose():
        return
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: nothing to silence
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


@contextlib.contextmanager
def train_environment() -> Iterator[None]:
    """Ray Train settings for the run (read by its controller from the driver's environment), restored after.

    The controller polls the workers every 0.5 s instead of Ray's 2 s unless ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``
    is set: a finished run is noticed sooner, at the cost of a few small remote calls per second.

    On a single-node cluster (a local ``ray.init``, a laptop, CI) the preemption watcher is off unless
    ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER`` says otherwise: no other node can take over from a drained one, and
    Ray 2.60 starts it with a constructor that logs an error-level line on every run (ray issue 53727).
    """
    import ray

    # How often the controller polls the workers: also how long a finished run waits to be noticed (Ray's
    # default 2 s). Metrics-only reports are thinned to the same interval on the workers (RayRuntime).
    settings = {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    }
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) <= 1 and "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in os.environ:
        settings["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def launch(
    payload: WorkerPayload,
    scaling_config: Any,
    run_config: Any,
    show_progress: bool,
    max_pending_s: float | None = None,
) -> Any:
    """Run the workers to the end; returns Ray Train's ``Result``. A worker's own exception is re-raised.

    SIGTERM/SIGINT stop the workers and raise ``raystx.train.signals.RunInterrupted``; workers that have not
    started after ``max_pending_s`` seconds raise ``raystx.train.pending.WorkersPendingError``. When the run
    ends, however it ends, the workers' temporary folders on this node are gone (``raystx.train.scratch``)."""
    import uuid

    import ray

    from raystx.train.pending import PendingWatchdog
    from raystx.train.scratch import remove_abandoned, remove_run_folders

    progress = None
    if show_progress:
        from raystx.train.progress import DriverProgress, ProgressCallback, start_channel

        channel = start_channel()
        payload.callbacks = [*payload.callbacks, ProgressCallback(channel)]
        payload.driver_shows_progress = True
        progress = DriverProgress(channel)
    from raystx.train.preimport import payload_modules, worker_runtime_env

    user_env = run_config.worker_runtime_env
    run_config.worker_runtime_env = worker_runtime_env(
        payload_modules(payload.model, *payload.losses.values()),
        user_env,
        dict(ray.get_runtime_context().runtime_env),
    )
    payload.scratch_tag = uuid.uuid4().hex
    remove_abandoned()  # what killed drivers and workers left on this node earlier
    watchdog = PendingWatchdog(max_pending_s, scaling_config)
    run_config.callbacks = [*(run_config.callbacks or []), watchdog.callback]
    try:
        return _fit(payload, scaling_config, run_config, watchdog)
    finally:
        watchdog.stop()
        remove_run_folders(payload.scratch_tag)  # workers killed by Ray (a peer failed, the run was stopped)
        run_config.callbacks = [c for c in run_config.callbacks if c is not watchdog.callback]
        run_config.worker_runtime_env = user_env
        if progress is not None:
            progress.close()


def _fit(payload: WorkerPayload, scaling_config: Any, run_config: Any, watchdog: Any) -> Any:
    """``TorchTrainer.fit`` with raystx's signal handling; errors as ``launch`` describes them."""
    import ray

    from raystx.train.signals import StoppableTorchTrainer, interrupt_handlers

    # The payload (model, losses, data sources) goes to the object store once; the Train controller only
    # sees a reference, so it neither imports torch nor rebuilds the model, and each worker fetches it.
    trainer = StoppableTorchTrainer(
        _ray_train_fn,
        train_loop_config={"payload": [ray.put(payload)]},
        scaling_config=scaling_config,
        run_config=run_config,
    )
    trainer.raystx_output_dir = payload.args.output_dir
    trainer.raystx_watchdog = watchdog
    try:
        with train_environment(), interrupt_handlers(payload.args.output_dir):  # restores Ray's handlers
            return trainer.fit()
    except Exception as exc:
        if trainer.raystx_signal is not None:
            from raystx.train.signals import RunInterrupted

            raise RunInterrupted(trainer.raystx_signal, payload.args.output_dir) from None
        if watchdog.timed_out:
            raise watchdog.error() from None
        raise unwrap_worker_error(exc) from exc


def collect(result: Any, model: nn.Module, losses: dict[str, nn.Module], best: BestCheckpoint) -> TrainOutput:
    """Load the final (or best) checkpoint of ``result`` into ``model`` and ``losses`` in place."""
    from raystx.train.checkpoint import read_trainer_state

    final = result.checkpoint
    chosen = final
    if best.enabled and best.metric:
        chosen = result.get_best_checkpoint(metric=best.metric, mode=best.mode) or final
    if chosen is None:
        return TrainOutput(0, None, dict(result.metrics or {}), None, [])
    with tempfile.TemporaryDirectory(prefix="raystx-collect-") as downloads:  # remote checkpoints only
        path = _local_path(chosen, downloads)
        state = read_trainer_state(path)
        _load_weights(path, model, losses)
        # the final checkpoint's history is the whole run's, whichever checkpoint the weights come from
        if final is not None and final.path != chosen.path:
            state = read_trainer_state(_local_path(final, downloads))
    history = state.log_history
    losses_logged = [h["loss"] for h in history if "loss" in h]
    return TrainOutput(
        global_step=state.global_step,
        training_loss=(sum(losses_logged) / len(losses_logged)) if losses_logged else None,
        metrics=dict(result.metrics or {}),
        checkpoint_path=_location(chosen),
        log_history=history,
        world_size=state.world_size,
    )


def _is_remote(checkpoint: Any) -> bool:
    filesystem = getattr(checkpoint, "filesystem", None)
    return filesystem is not None and filesystem.type_name != "local"


def _local_path(checkpoint: Any, downloads: str) -> str:
    """A local folder with the checkpoint: its own, or a download into a new folder under ``downloads``."""
    if _is_remote(checkpoint):
        return checkpoint.to_directory(tempfile.mkdtemp(dir=downloads))
    return checkpoint.path


def _location(checkpoint: Any) -> str:
    """Where the checkpoint is: a local path, or a URI such as ``s3://bucket/runs/x/checkpoint-4``."""
    if _is_remote(checkpoint):
        return f"{checkpoint.filesystem.type_name}://{str(checkpoint.path).lstrip('/')}"
    return str(checkpoint.path)


def _load_weights(path: str, model: nn.Module, losses: dict[str, nn.Module]) -> None:
    from raystx.train.checkpoint import load_loss_modules_state, load_model_weights, load_tensors

    load_model_weights(model, Path(path) / "model")
    extra = Path(path) / "loss_modules.safetensors"
    if extra.is_file():
        load_loss_modules_state(dict(losses), load_tensors(extra))


def unwrap_worker_error(exc: Exception) -> Exception:
    """The original exception behind Ray's wrappers, where there is one.

    A ``WorkerGroupError`` gives the first failed worker's own exception; a ``RayTaskError`` (an exception
    raised in a task or actor, re-raised on the driver) gives its ``cause``; an ``ActorDiedError`` whose death
    was caused by an exception in the actor's constructor gives that exception. Nested wrappers are unwrapped
    until an exception of the user's code (or one that wraps nothing) is reached."""
    for _ in range(8):  # wrappers nest (a worker's RayTaskError inside a WorkerGroupError)
        inner = _wrapped(exc)
        if inner is None or inner is exc:
            return exc
        exc = inner
    return exc


def _wrapped(exc: Exception) -> Exception | None:
    failures = getattr(exc, "worker_failures", None)
    if failures:
        first = failures[min(failures)]
        cause = getattr(first, "cause", None) or first
        return cause if isinstance(cause, Exception) else None
    try:
        from ray.exceptions import ActorDiedError, RayTaskError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, Exception) else None
    if isinstance(exc, ActorDiedError):
        cause = getattr(exc, "base_error", None) or getattr(exc, "cause", None)
        if isinstance(cause, RayTaskError):
            cause = getattr(cause, "cause", None)
        return cause if isinstance(cause, Exception) and not isinstance(cause, ActorDiedError) else None
    return None
