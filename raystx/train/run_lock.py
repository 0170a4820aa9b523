"""One run per folder: an exclusive lock file in the run folder, held for the run's life.

``RunLock(run_dir)`` is a context manager. Entering creates ``{run_dir}/.raystx-run.lock`` atomically
(``O_CREAT | O_EXCL``) holding the holder's host, pid and start time (JSON); leaving removes it. When the file
already exists:

* held by a live process (another host, or a running pid on this host): ``RunFolderLockedError`` at once,
  naming the holder (host, pid, since when) and the fixes (another ``output_dir``, or wait / stop that run);
* left by a dead process on this host (the pid no longer runs, e.g. after ``kill -9``): stale, taken over with
  a warning naming the old holder;
* unreadable (not JSON): treated as stale as well.

A holder on another host cannot be checked from here, so its lock is honoured; delete the file by hand when
that host is gone. Only local folders are locked: an ``s3://``/``gs://`` run folder has no atomic create, so two
runs on one remote ``output_dir`` are not prevented (use distinct run names there).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from raystx.train.storage import is_uri

logger = logging.getLogger("raystx.train")

LOCK_FILE = ".raystx-run.lock"


class RunFolderLockedError(RuntimeError):
    """Another live run holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_holder(path: Path) -> dict | None:
    """The holder recorded in a lock file (``host``, ``pid``, ``since``), or ``None`` if unreadable."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and "pid" in holder and "host" in holder else None


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
    )
    return f"pid {holder['pid']} on host {holder['host']} (since {when})"


class RunLock:
    """Exclusive lock of a local run folder (a no-op for URIs); see the module docstring."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = str(run_dir)
        self.path = None if is_uri(self.run_dir) else Path(self.run_dir, LOCK_FILE)
        self.held = False
        self.created_dir = False

    def acquire(self) -> None:
        if self.path is None or self.held:
            return
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise NotADirectoryError(
                f"output_dir {self.path.parent} is an existing file, not a folder; "
                "choose another output_dir (or move the file away)"
            )
        self.created_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            self.held = True
            return
        raise RunFolderLockedError(f"could not take the lock {self.path}: other runs keep taking it")

    def _handle_existing(self) -> None:
        holder = read_holder(self.path)
        if holder is None:
            logger.warning("Taking over the unreadable run lock %s", self.path)
        elif holder["host"] != socket.gethostname() or _pid_alive(int(holder["pid"])):
            raise RunFolderLockedError(
                f"output_dir {self.run_dir} is in use by another raystx run: {_describe(holder)} holds "
                f"{self.path}. Two runs in one folder would overwrite each other's checkpoints and staged "
                "data: choose another output_dir, or wait for that run to finish (or stop it). If that run is "
                "gone (its host was lost), delete the lock file."
            )
        else:
            logger.warning(
                "Taking over the stale run lock %s: its holder, %s, no longer runs",
                self.path,
                _describe(holder),
            )
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if not self.held or self.path is None:
            return
        self.held = False
        holder = read_holder(self.path)
        if holder is not None and holder.get("pid") == os.getpid() and holder["host"] == socket.gethostname():
            self.path.unlink(missing_ok=True)
        run_dir = self.path.parent
        if self.created_dir and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a run that failed before writing anything leaves no empty folder behind

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
