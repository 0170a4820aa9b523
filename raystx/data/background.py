"""Staging a large CSV/TSV/JSON/Arrow or ``IterableDataset`` input while the training workers start.

The full staging pass (read everything, write the Parquet copy, scan every row) takes time proportional to the
data; the worker group takes ~15-20 s to start. For a large input the driver therefore checks only the
first rows (``raystx.data.head``; ``prepare_sources(..., defer=True)``), and the full pass runs as a Ray task
while the workers start:

* ``StagePlan``: what one background pass stages (files and format, or an ``IterableDataset``; the output
  folder; ``select_columns``). ``PendingStaging``: the marker a ``TrainingSource`` carries until the pass is
  done (its plan on the driver, the ``ObjectRef`` of the result once started); until then the source holds
  the first rows only and its ``num_rows`` counts them.
* ``start_staging(sources)`` (driver): one zero-CPU task per pending source, pinned to the driver's node, whose
  Ray Data tasks ask for no CPU either (``RayTaskOptions``: the workers hold the CPUs meanwhile, and a pass
  that waited for them would never end). Returns a ``StagingJob``: ``stop()`` cancels unfinished passes and
  says whether any output is partial; ``resolved(sources)`` gives the full sources after a run.
* ``resolve_pending(sources)`` (workers): waits for the passes (``ray.get``, no polling) and returns the full
  ``TrainingSource`` of each pending one with the ``ColumnStats`` of its every-row scan. A pass that failed
  raises its own error here (a ``DatasetReadError`` naming file and line, a ``DatasetValidationError`` naming
  the column), unwrapped from Ray's ``RayTaskError``.

``stage_in_background(plan, options)`` is the pass itself: the same ``stage`` and scan as the up-front path,
so the staged files, their row groups and hence every data plan are identical.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raystx.data.readers import RayTaskOptions, read_files, read_iterable, stage

logger = logging.getLogger("raystx.data")

SAMPLE_ROWS = 1024  # rows the driver checks before the workers start
OVERLAP_MIN_BYTES = 32 * 2**20  # file inputs at least this large are staged while the workers start
STAGE_BEFORE_START_ENV = "RAYSTX_STAGE_BEFORE_START"  # "1": always stage in full before the workers start
STOP_TIMEOUT_S = 60.0


def overlap_enabled() -> bool:
    """False when ``RAYSTX_STAGE_BEFORE_START`` asks for the sequential path (stage fully, then start)."""
    return os.environ.get(STAGE_BEFORE_START_ENV, "0").strip().lower() in ("", "0", "false", "no")


def spare_cpus(reserved: float) -> float:
    """CPUs of the cluster that ``reserved`` CPUs (the training workers') leave to a background pass. With none
    left, staging and the workers' start would share the same cores: measured on a 2-core machine, the
    overlapped run was then 1.1-1.25x slower than staging first, so the trainer stages first."""
    import ray

    return float(ray.cluster_resources().get("CPU", 0)) - float(reserved)


@dataclass
class StagePlan:
    """One background staging pass: ``files`` + ``fmt`` or ``iterable`` read into ``out_dir`` as Parquet, then
    columns resolved with ``select`` (as ``prepare_sources`` does). ``origin``/``known_columns`` as in
    ``TrainingSource``."""

    name: str
    out_dir: str
    origin: str
    select: list[str] | None = None
    files: list[str] | None = None
    fmt: str | None = None
    iterable: Any = field(default=None, repr=False)
    known_columns: list[str] | None = None


@dataclass
class PendingStaging:
    """Carried by a ``TrainingSource`` whose full staging pass runs in the background: the ``plan`` (driver
    only, not pickled) and, once ``start_staging`` launched it, ``ref``: the ``ObjectRef`` of its
    ``StagedResult``."""

    plan: StagePlan | None = field(default=None, repr=False)
    ref: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"plan": None, "ref": self.ref}  # workers need the reference only


@dataclass
class StagedResult:
    """What a background pass returns: the full source, the every-row scan of its used columns, and the
    pass's wall time in seconds."""

    source: Any
    scans: dict[str, Any]
    seconds: float = 0.0


def stage_in_background(plan: StagePlan, options: RayTaskOptions) -> StagedResult:
    """The full pass of ``plan`` (runs in a Ray task): read, write Parquet, resolve columns, scan every row."""
    from raystx.data.scan import scan_source
    from raystx.data.sources import staged_source

    started = time.perf_counter()
    if plan.files is not None:
        assert plan.fmt is not None
        ray_dataset, _ = read_files(plan.name, plan.files, plan.fmt, options)
    else:
        ray_dataset = read_iterable(plan.iterable, options=options)
    staged = stage(plan.name, ray_dataset, plan.out_dir, files=plan.files, fmt=plan.fmt, options=options)
    source = staged_source(plan.name, staged, plan.select, plan.origin, plan.known_columns, ray_dataset)
    scans = scan_source(source)
    return StagedResult(source=source, scans=scans, seconds=time.perf_counter() - started)


@functools.cache
def _remote_stage() -> Any:
    import ray

    return ray.remote(num_cpus=0)(stage_in_background)


def pending_sources(sources: Mapping[str, Any]) -> dict[str, Any]:
    """The sources of ``sources`` whose staging pass is still to be started or awaited."""
    return {n: s for n, s in sources.items() if getattr(s, "pending", None) is not None}


@dataclass
class StagingJob:
    """The background passes of one run (``{dataset name: ObjectRef}``; empty when nothing was deferred)."""

    refs: dict[str, Any] = field(default_factory=dict)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Cancel the passes still running and wait for them to end; True when any output is partial (a pass
        failed or was cancelled), so the staging folder must be removed."""
        if not self.refs:
            return False
        import ray

        refs = list(self.refs.values())
        ready, running = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in running:
            ray.cancel(ref, recursive=True)
        if running:
            ray.wait(running, num_returns=len(running), timeout=timeout_s)
        partial = bool(running)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception:  # noqa: BLE001 - the pass failed: its output is partial
                partial = True
        return partial

    def seconds(self) -> dict[str, float]:
        """``{dataset name: wall seconds of its pass}`` (waits for the passes to end)."""
        import ray

        return {name: ray.get(ref).seconds for name, ref in self.refs.items()}

    def resolved(self, sources: Mapping[str, Any]) -> dict[str, Any]:
        """``sources`` with every pending source replaced by its full one (the passes must have ended)."""
        if not self.refs:
            return dict(sources)
        full, _ = resolve_pending(sources)
        return {n: full.get(n, s) for n, s in sources.items()}


def start_staging(sources: Mapping[str, Any], concurrency: int = 2) -> StagingJob:
    """Start the background pass of every pending source of ``sources`` (driver; sets ``pending.ref``).
    ``concurrency``: Ray Data tasks per operator of a pass at once (the CPUs the workers leave free)."""
    pending = pending_sources(sources)
    if not pending:
        return StagingJob()
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    options = RayTaskOptions(num_cpus=0, concurrency=max(1, int(concurrency)))
    job = StagingJob()
    try:
        for name, source in pending.items():
            marker: PendingStaging = source.pending
            assert marker.plan is not None, f"dataset {name!r}: no staging plan"
            marker.ref = _remote_stage().options(scheduling_strategy=here).remote(marker.plan, options)
            job.refs[name] = marker.ref
            logger.info("Staging dataset %r (%s) while the workers start", name, marker.plan.origin)
    except BaseException:
        job.stop()  # none of it runs on
        raise
    return job


def resolve_pending(sources: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Wait for the passes of the pending ``sources``; returns ``({name: full source}, {name: column scans}``).

    The full source keeps the pending one's run settings (``cache_tag``, ``cache_max_bytes``). A failed pass
    raises its own exception (not Ray's wrapper), the first pending dataset's first."""
    import ray
    from ray.exceptions import RayTaskError

    full: dict[str, Any] = {}
    scans: dict[str, dict[str, Any]] = {}
    for name, source in pending_sources(sources).items():
        try:
            result: StagedResult = ray.get(source.pending.ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        full[name] = dataclasses.replace(
            result.source, name=name, cache_tag=source.cache_tag, cache_max_bytes=source.cache_max_bytes
        )
        scans[name] = result.scans
    return full, scans
