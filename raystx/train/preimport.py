"""Import what a worker will need while Ray is still starting it, instead of after.

A Ray Train worker is a fresh process. Its main thread spends the first seconds on Ray's own start-up (actor
creation, train context, the process group rendezvous, waiting for the slowest worker), and only then unpickles
the payload, which imports ``transformers`` and the model's modules: seconds of single-threaded work on the
critical path. ``start()`` runs as the workers' ``worker_process_setup_hook`` (``runtime_env``) and imports those
modules on a daemon thread at process start, so the imports overlap Ray's start-up; the unpickle then finds them
in ``sys.modules`` (or waits on the module lock of the one still importing: never imported twice).

``worker_runtime_env(modules, user_env, job_env)`` builds the runtime environment for
``RunConfig.worker_runtime_env``: ``modules`` (e.g. ``payload_modules(model, losses)``) travel in
``RAYSTX_PREIMPORT``. Ray turns a ``worker_process_setup_hook`` into its reserved environment variable only for
the job-level runtime environment, so the hook is named through that variable here. A user's own setup hook (on
the run's or the job's runtime environment) wins: no pre-import is added then; ``RAYSTX_DISABLE_PREIMPORT=1`` on
the driver turns it off (the workers then need no runtime environment of their own, so Ray may hand them
processes it started in advance).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any

from torch import nn

ENV = "RAYSTX_PREIMPORT"
DISABLE_ENV = "RAYSTX_DISABLE_PREIMPORT"  # set to 1 on the driver: no hook (A/B runs in bench/overhead.py)
HOOK = "raystx.train.preimport.start"
RAY_HOOK_ENV = (
    "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"  # ray._private.ray_constants.WORKER_PROCESS_SETUP_HOOK_ENV_VAR
)
BASE = ("torch", "transformers", "raystx.train.worker", "raystx.train.loop", "raystx.train.runtime")

logger = logging.getLogger(__name__)
started: list[str] = []  # what ``start()`` was asked to import in this process (empty: the hook did not run)


def payload_modules(*objects: nn.Module) -> list[str]:
    """The Python modules defining the classes of every submodule of ``objects`` (what unpickling imports)."""
    names: dict[str, None] = dict.fromkeys(BASE)
    for obj in objects:
        for module in obj.modules():
            names[type(module).__module__] = None
    return [n for n in names if n and n != "__main__"]


def _has_hook(env: dict[str, Any] | None) -> bool:
    env = env or {}
    return bool(env.get("worker_process_setup_hook") or (env.get("env_vars") or {}).get(RAY_HOOK_ENV))


def worker_runtime_env(
    modules: list[str], user_env: dict[str, Any] | None, job_env: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``user_env`` plus the pre-import hook (unless the run's or the job's environment has a hook already)."""
    env = dict(user_env or {})
    if _has_hook(env) or _has_hook(job_env) or os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return env
    env["env_vars"] = {**env.get("env_vars", {}), ENV: ",".join(modules), RAY_HOOK_ENV: HOOK}
    return env


def _import_all(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the unpickle will raise the real error, in context
            logger.debug("pre-import of %s failed: %s", name, exc)


def start() -> threading.Thread | None:
    """Worker process setup hook: import ``$RAYSTX_PREIMPORT`` on a daemon thread and return at once (the
    thread, or None when there is nothing to import)."""
    names = [n for n in os.environ.get(ENV, "").split(",") if n]
    if not names:
        return None
    started.extend(names)
    thread = threading.Thread(target=_import_all, args=(names,), name="raystx-preimport", daemon=True)
    thread.start()
    return thread
