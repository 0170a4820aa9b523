"""Temporary folders owned by one process, and the removal of those whose process is gone.

A process normally removes its own temporary folders (``finally`` blocks, ``Runtime.close``). A process that is
killed (a Ray worker after a peer failed, a stopped Tune trial, SIGKILL) cannot, so ``owned_temp_dir(kind)``
names the folder ``raystx-<kind>-<pid>-<random>`` and records its owner in ``.owner.json``: host name, pid and
the process's start time (``/proc/<pid>/stat``). ``remove_abandoned()`` deletes the folders of the temp dir whose owner, on this host,
no longer runs. It never removes a folder of a live process: a pid that runs again under another process (pid
reuse) is told apart by its start time, and a folder without an owner file (being created, or written by
another tool) or from another host (a temp dir shared between machines or containers) is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("raystx.train")

OWNER_FILE = ".owner.json"
_NAME = re.compile(r"^raystx-[a-z]+-(\d+)-[^/]+$")


def _process_start(pid: int) -> str | None:
    """None when no process ``pid`` runs (or only its zombie); else its start time in clock ticks since boot
    (``/proc/<pid>/stat``), or ``""`` where that cannot be read (another OS): it runs, its start is unknown."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # it runs, as another user
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3, starttime 22
    if fields and fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return None
    return fields[19] if len(fields) > 19 else ""


def owned_temp_dir(kind: str, run: str | None = None, temp_dir: str | os.PathLike | None = None) -> Path:
    """Create ``<temp dir>/raystx-<kind>-<pid>-<random>`` with its owner file; returns the folder.

    ``kind``: lowercase letters (``worker``, ``started``, ...); ``run``: the run it belongs to, if any (see
    ``remove_run_folders``); ``temp_dir``: default ``tempfile.gettempdir()``.
    """
    if not kind.isalpha() or not kind.islower():
        raise ValueError(f"kind must be lowercase letters, got {kind!r}")
    pid = os.getpid()
    folder = Path(tempfile.mkdtemp(prefix=f"raystx-{kind}-{pid}-", dir=temp_dir))
    owner = {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid), "run": run}
    (folder / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return folder


def is_abandoned(folder: Path) -> bool:
    """True when ``folder`` (made by ``owned_temp_dir``) belongs to a process of this host that no longer runs."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        host, pid, started = owner["host"], int(owner["pid"]), owner["started"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no (complete) owner file: not ours to judge
    if host != socket.gethostname() or pid == os.getpid():
        return False
    now = _process_start(pid)
    if now is None:
        return True
    return bool(now and started and now != started)  # the pid now names a later process


def remove_abandoned(temp_dir: str | os.PathLike | None = None) -> list[Path]:
    """Delete the ``owned_temp_dir`` folders in ``temp_dir`` (default: the temp dir) whose owner is gone; returns
    them. Failures are logged, never raised: this is housekeeping."""
    root = Path(temp_dir or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not _NAME.match(entry.name) or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            if is_abandoned(entry):
                shutil.rmtree(entry)
                removed.append(entry)
        except OSError as exc:
            logger.debug("could not remove abandoned temp folder %s: %s", entry, exc)
    if removed:
        logger.info("Removed %d temp folder(s) left by processes that no longer run", len(removed))
    return removed


def run_folders(run: str, temp_dir: str | os.PathLike | None = None) -> list[Path]:
    """The ``owned_temp_dir`` folders in ``temp_dir`` made for ``run`` (the ``run`` given at creation)."""
    root = Path(temp_dir or tempfile.gettempdir())
    found = []
    for entry in root.glob("raystx-*-*-*"):
        try:
            owner = json.loads((entry / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(owner, dict) and owner.get("run") == run:
            found.append(entry)
    return found


def remove_run_folders(run: str, wait_s: float = 10.0, temp_dir: str | os.PathLike | None = None) -> int:
    """After ``run`` ended: delete its folders on this host as their processes exit (a worker Ray is killing may
    still run for a moment), waiting at most ``wait_s``; returns how many are left (the next ``remove_abandoned``
    on this host takes those)."""
    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for folder in run_folders(run, temp_dir):
            if is_abandoned(folder):
                shutil.rmtree(folder, ignore_errors=True)
            else:
                left.append(folder)
        if not left or time.monotonic() >= deadline:
            return len(left)
        time.sleep(0.1)
