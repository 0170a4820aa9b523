"""``model.encode(..., pool=...)``: a model's encode spread over a Ray Data actor pool of model replicas.

``start_encode_pool(model, ...)`` (also ``SentenceTransformer.start_multi_process_pool``) starts that many
long-lived model replicas (``raystx.infer.replicas``: Ray actors that load a snapshot of the model once);
``encode_on_pool`` sends one ``encode`` call's texts to them in chunks and puts the rows back in input order,
and ``mine_hard_negatives(..., pool=...)`` reuses the same replicas, so the start-up (process, imports, model
load: tens of seconds on a loaded CPU machine) is paid once per pool, not per call. ``stop_encode_pool`` ends
the actors.

What may be passed as ``pool=``: an ``EncodePool``, an ``InferencePool`` (sizing only: the model is put for
that call), or a ``ray.train.ScalingConfig``. ``device=["cpu", "cpu"]`` (a list, as in sentence-transformers)
encodes on a temporary pool of that many replicas (GPUs when the entries are ``cuda...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raystx.infer.pool import InferencePool


@dataclass
class EncodePool:
    """Running model replicas (``replicas``, a ``raystx.infer.replicas.ReplicaPool``) sized by ``scaling``."""

    scaling: InferencePool
    replicas: Any = field(default=None, repr=False)
    closed: bool = False

    @property
    def num_workers(self) -> int:
        return self.scaling.num_workers

    def wait_ready(self) -> list[dict[str, Any]]:
        """Block until every replica has loaded the model; their ``threads``, ``pid`` and ``load_s``."""
        if self.replicas is None:
            raise ValueError("this encode pool has no running replicas (it was stopped or never started)")
        return self.replicas.wait_ready()

    def close(self) -> None:
        """End the replicas; the pool cannot encode afterwards."""
        if self.replicas is not None:
            self.replicas.close()
        self.replicas = None
        self.closed = True


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def pool_from_devices(target_devices: Sequence[Any] | None) -> InferencePool:
    """Replicas for sentence-transformers' ``target_devices``: one per entry (GPU ones when they are
    ``cuda...``); ``None``: one per GPU of the Ray cluster, or 4 CPU replicas (fewer on a smaller cluster)."""
    import ray

    from raystx.ray_init import ensure_ray

    if target_devices is not None:
        devices = [str(d) for d in target_devices]
        if not devices:
            raise ValueError("target_devices is empty: give at least one device, e.g. ['cpu', 'cpu']")
        gpu = [d.startswith("cuda") for d in devices]
        if any(gpu) and not all(gpu):
            raise ValueError(f"target_devices {devices} mixes CPU and GPU devices; give one kind")
        return InferencePool(num_workers=len(devices), use_gpu=all(gpu))
    ensure_ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        return InferencePool(num_workers=gpus, use_gpu=True)
    return InferencePool(num_workers=min(4, _cluster_cpus()))


def start_encode_pool(
    model: Any,
    target_devices: Sequence[Any] | None = None,
    *,
    num_workers: int | None = None,
    use_gpu: bool = False,
    cpus_per_worker: int = 1,
    scaling_config: Any = None,
) -> EncodePool:
    """Start replicas of ``model`` (as it is now; they load it in the background) sized by ``scaling_config``,
    else ``num_workers``/``use_gpu``/``cpus_per_worker``, else ``target_devices`` (sentence-transformers' rule)."""
    from raystx.infer.replicas import ReplicaPool

    if scaling_config is not None:
        scaling = InferencePool.from_scaling_config(scaling_config)
    elif num_workers is not None:
        scaling = InferencePool(num_workers=num_workers, use_gpu=use_gpu, cpus_per_worker=cpus_per_worker)
    else:
        scaling = pool_from_devices(target_devices)
    return EncodePool(scaling=scaling, replicas=ReplicaPool(model, scaling))


def stop_encode_pool(pool: EncodePool) -> None:
    """End the replicas ``start_encode_pool`` started."""
    if not isinstance(pool, EncodePool):
        raise TypeError(
            f"stop_multi_process_pool expects the pool start_multi_process_pool returned, got {pool!r}"
        )
    pool.close()


def resolve_pool(model: Any, pool: Any, device: Any) -> EncodePool:
    """The ``EncodePool`` an ``encode(..., pool=pool, device=device)`` call runs on (see the module doc)."""
    if isinstance(pool, EncodePool):
        if pool.closed:
            raise ValueError("this encode pool was stopped (stop_multi_process_pool); start a new one")
        return pool
    if isinstance(pool, InferencePool):
        return start_encode_pool(
            model, num_workers=pool.num_workers, use_gpu=pool.use_gpu, cpus_per_worker=pool.cpus_per_worker
        )
    if pool is not None and hasattr(pool, "num_workers"):
        return start_encode_pool(model, scaling_config=pool)
    if pool is not None:
        raise TypeError(
            "pool must be what model.start_multi_process_pool() returns, a raystx.infer.InferencePool or a "
            f"ray.train.ScalingConfig; got {type(pool).__name__}"
        )
    return start_encode_pool(model, target_devices=list(device))


def encode_on_pool(
    texts: Sequence[str],
    pool: EncodePool,
    *,
    prompt: str | None,
    batch_size: int,
    normalize: bool,
    truncate_dim: int | None = None,
    task: str | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """The (len(texts), dim) float32 embeddings of ``texts`` in input order, encoded by ``pool``'s replicas
    with ``encode(prompt=prompt, ...)``; ``chunk_size`` texts go to a replica at a time."""
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    if not texts:
        return np.empty((0, 0), dtype=np.float32)
    kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "normalize_embeddings": normalize,
        "truncate_dim": truncate_dim,
    }
    if task is not None:
        kwargs["task"] = task
    return pool.replicas.encode(texts, "plain", prompt, kwargs, chunk_size=chunk_size)
