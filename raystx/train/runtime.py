"""Where the per-worker loop runs: on a Ray Train worker, or in one plain process.

The loop talks only to a ``Runtime`` (rank, world size, device, report, latest checkpoint), so the same loop
code trains in a ``TorchTrainer`` and in a single process without Ray (``bench/gpu_check.sh`` relies on that).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from raystx.train.scratch import OWNER_FILE, owned_temp_dir, remove_abandoned


class Runtime:
    """One process's view of the training job.

    ``checkpoint_dir()`` gives the loop a fresh folder to write a checkpoint into; ``report`` persists and removes
    it, and ``close()`` (``train_worker`` calls it on every exit) removes whatever of them is left, so a run that
    fails between a save and its report leaves no copy in the temp dir.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    # Metrics-only reports closer together than this are thinned out (checkpoint, eval and final reports never):
    # Ray Train takes one pending report per worker per controller poll, so more frequent ones block the loop.
    min_report_interval_s: float = 0.0
    _scratch: Path | None = None

    def report(
        self, metrics: dict[str, Any], checkpoint_dir: Path | None, checkpoint_name: str | None
    ) -> None:
        raise NotImplementedError

    def latest_checkpoint(self) -> Path | None:
        return None

    def preemption_pending(self) -> bool:
        """True once the cluster announced that a node of this job will be reclaimed (a barrier on Ray)."""
        return False

    def scratch_root(self) -> Path:
        """This runtime's temporary folder (made on first use, removed by ``close``)."""
        root = self._scratch
        if root is None or not root.is_dir():
            root = self._scratch = self._make_scratch()
        return root

    def _make_scratch(self) -> Path:
        return owned_temp_dir("local")

    def checkpoint_dir(self) -> Path:
        """A new empty folder under ``scratch_root()`` for one checkpoint of this rank."""
        return Path(tempfile.mkdtemp(prefix=f"checkpoint-{self.rank}-", dir=self.scratch_root()))

    def discard(self, checkpoint_dir: Path) -> None:
        """Remove a persisted ``checkpoint_dir``, and the scratch folder too once it holds nothing else (so a
        loop run without ``close()``, as some tests do, leaves no empty folder)."""
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        root = self._scratch
        if root is not None and root.is_dir() and {p.name for p in root.iterdir()} <= {OWNER_FILE}:
            self.close()

    def close(self) -> None:
        root = self._scratch
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
            self._scratch = None


class LocalRuntime(Runtime):
    """A single process: reports go to a list and checkpoints are copied under ``output_dir``."""

    def __init__(self, output_dir: str | Path, device: str | torch.device | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.reports: list[dict[str, Any]] = []
        self.checkpoints: list[Path] = []

    def report(self, metrics, checkpoint_dir, checkpoint_name):
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            target = self.output_dir / (checkpoint_name or f"checkpoint-{len(self.checkpoints)}")
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(checkpoint_dir, target)
            self.checkpoints.append(target)
            self.discard(checkpoint_dir)  # the loop's temporary copy (as RayRuntime does)

    def latest_checkpoint(self) -> Path | None:
        return self.checkpoints[-1] if self.checkpoints else None


def honour_thread_budget() -> int:
    """Set torch's intra-op threads to ``$OMP_NUM_THREADS`` (Ray sets it to the worker's CPU share) and return
    the count in force.

    Ray exports the variable when it starts the actor, but torch reads it once, when it is first imported: the
    workers' pre-import hook (``raystx.train.preimport``) imports torch before that, so without this call every
    worker would run one thread per core of the machine and the workers of a node would oversubscribe it (4x
    slower steps were measured with 2 one-CPU workers on 2 cores).
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0 and torch.get_num_threads() != int(value):
        torch.set_num_threads(int(value))
    return torch.get_num_threads()


class RayRuntime(Runtime):
    """A Ray Train worker: ``ray.train.report`` is the barrier that also persists checkpoints to storage.

    Its scratch folder (checkpoint copies, a restored checkpoint) is ``raystx-worker-<pid>-*`` in the node's temp
    dir, tagged with ``run`` (``raystx.train.scratch``): the driver removes the run's folders on its node when the
    run ends, and each new ``RayRuntime`` those of killed workers on its node."""

    def __init__(self, run: str | None = None) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.local_rank = ctx.get_local_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        honour_thread_budget()
        remove_abandoned()  # scratch of workers on this node that were killed (they could not clean up)
        self._run = run
        self._scratch = self._make_scratch()
        self._restored: Path | None = None
        # the Train controller polls workers (and takes one queued report from each) at this interval
        self.min_report_interval_s = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2"))

    def report(self, metrics, checkpoint_dir, checkpoint_name):
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=checkpoint_name)
        if checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def latest_checkpoint(self) -> Path | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        if self._restored is None:
            self._restored = Path(checkpoint.to_directory(str(self.scratch_root() / "restored")))
        return self._restored

    def preemption_pending(self) -> bool:
        import ray.train

        getter = getattr(ray.train, "get_preemption_info", None)
        return bool(getter is not None and getter() is not None)

    def _make_scratch(self) -> Path:
        return owned_temp_dir("worker", run=self._run)
