"""How many model replicas an inference job runs, and on what (a small ScalingConfig-like value)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raystx.train.workers import max_workers


@dataclass(frozen=True)
class InferencePool:
    """``num_workers`` replicas, each with ``cpus_per_worker`` CPUs (= torch threads) and one GPU if ``use_gpu``.

    ``batch_size`` is the model's encode batch; ``rows_per_block`` the number of texts a replica receives at a
    time (a Ray Data block), so progress and work stealing have a useful granularity.
    """

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    rows_per_block: int = 1024

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers}")
        if self.cpus_per_worker < 1:
            raise ValueError(f"cpus_per_worker must be at least 1, got {self.cpus_per_worker}")
        if self.rows_per_block < 1:
            raise ValueError(f"rows_per_block must be at least 1, got {self.rows_per_block}")

    @classmethod
    def from_scaling_config(cls, scaling_config: Any, **kwargs: Any) -> InferencePool:
        """Take ``num_workers``, ``use_gpu`` and the CPU count of ``resources_per_worker`` from a
        ``ray.train.ScalingConfig`` (or anything with those attributes)."""
        resources = getattr(scaling_config, "resources_per_worker", None) or {}
        return cls(
            num_workers=max_workers(scaling_config),
            use_gpu=bool(getattr(scaling_config, "use_gpu", False)),
            cpus_per_worker=max(1, int(resources.get("CPU", 1))),
            **kwargs,
        )

    @property
    def device(self) -> str:
        return "cuda" if self.use_gpu else "cpu"
