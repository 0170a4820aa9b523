"""SIGTERM / SIGINT on the driver: stop the run cleanly and say how to resume.

``RunInterrupted`` is raised on the driver when a run was stopped by a signal; its ``exit_code`` is
``128 + signum`` (143 for SIGTERM, 130 for SIGINT), which ``raystx train`` exits with, and its message says how
to resume (``raystx train CONFIG --resume`` / ``resume_from_checkpoint=True``).

* ``interrupt_handlers(output_dir)``: a context manager (main thread only, else a no-op) whose SIGTERM/SIGINT
  handlers raise ``RunInterrupted``, for the phases before the workers run (staging) and after;
* ``StoppableTorchTrainer``: a ``TorchTrainer`` whose signal handlers, installed once its controller exists,
  first tell the controller to abort (Ray Train then stops the workers and frees their placement group; the
  checkpoints already written stay in the run folder), then raise ``RunInterrupted`` in the driver. It also
  starts a ``raystx.train.pending.PendingWatchdog`` on that controller.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ray.train.torch import TorchTrainer

logger = logging.getLogger("raystx.train")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(Exception):
    """The driver received SIGTERM/SIGINT; the run was stopped and can be resumed."""

    def __init__(self, signum: int, output_dir: str | None = None) -> None:
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        where = f" in {output_dir}" if output_dir else ""
        super().__init__(
            f"training stopped by {signal.Signals(self.signum).name}; the checkpoints written so far are kept"
            f"{where}. Resume with `raystx train CONFIG --resume`, or in Python with "
            "trainer.train(resume_from_checkpoint=True) (resume_from_checkpoint=True in the arguments)."
        )


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupt_handlers(output_dir: str | None = None) -> Iterator[None]:
    """SIGTERM/SIGINT raise ``RunInterrupted`` inside the block (restored afterwards); main thread only."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise RunInterrupted(signum, output_dir)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StoppableTorchTrainer(TorchTrainer):
    """``TorchTrainer`` with raystx's stop-on-signal handlers and pending watchdog (see the module docstring).

    ``raystx_output_dir`` goes into the resume hint; ``raystx_watchdog`` (a ``PendingWatchdog`` or ``None``) is
    started when the controller exists."""

    raystx_output_dir: str | None = None
    raystx_watchdog: Any = None
    raystx_signal: int | None = None  # the signal that stopped the run

    def _register_sigint_handler(self, controller: Any) -> None:  # Ray calls this in the main thread only
        from raystx.train.pending import stop_controller

        def handler(signum: int, frame: Any) -> None:
            # No raise here: the handler runs inside Ray's blocking get, which turns a raised exception into a
            # SystemError. Stopping the controller ends that get with ActorDiedError; ``launch`` then raises
            # ``RunInterrupted`` from ``self.raystx_signal``.
            if self.raystx_signal is None:
                self.raystx_signal = signum
                logger.warning(
                    "Received %s: stopping the workers (the checkpoints written so far are kept)",
                    signal.Signals(signum).name,
                )
                stop_controller(controller)

        for sig in SIGNALS:
            signal.signal(sig, handler)
        if self.raystx_watchdog is not None:
            self.raystx_watchdog.start(controller)
