"""The ``tune:`` section of a sweep (and the Python sweep API's settings): what to optimize, how to search,
when to stop trials, how many run at once, and where results go.

    tune:
      metric: eval_sts-dev_spearman_cosine   # default: the evaluator's primary metric; a list = multi-objective
      mode: max                              # default: the evaluator's direction
      num_samples: 16
      searcher: tpe                          # tpe | nsga2 | random | grid (default tpe; nsga2 for a metric list)
      scheduler: {type: asha, grace_period: 1, reduction_factor: 3}   # or just `asha` / `median` / `none`
      max_concurrent_trials: null            # default: from the cluster's free CPUs/GPUs and the per-trial needs
      resources: {num_workers: 1}            # the per-trial ScalingConfig (default: the config's `scaling`)
      driver_resources: {CPU: 0.25}          # the trial actor that drives each Train run
      time_budget_s: 3600
      seed: 0
      storage_path: sweeps                   # default: next to the config's output_dir
      name: my-sweep
      optuna_storage: sqlite:///sweeps/my-sweep.db
      eval_steps: 0.1                        # force the evaluation interval of every trial (default: the config's)
      keep_checkpoints: false                # keep each trial's Train checkpoints after its model is exported
      reuse_actors: null                     # reuse a finished trial's actor (saves start-up); default: only
                                             # without early stopping (a stopped trial's actor cannot be reused)
      export_best_to: null                   # default: {experiment}/best_model
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from raystx.config import ScalingSection


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulerSettings(_Strict):
    """Trial scheduler. ``time_attr``/``max_t``/``grace_period`` count Tune results, i.e. evaluations
    (``training_iteration``) unless ``time_attr`` says otherwise (e.g. ``step``)."""

    type: Literal["asha", "median", "none"] = "asha"
    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    time_attr: str = "training_iteration"
    max_t: int = 100
    grace_period: int = 1
    reduction_factor: float = 3.0
    brackets: int = 1
    min_samples_required: int = 3


class TuneSettings(_Strict):
    """See the module docstring; every field has a default."""

    metric: str | list[str] | None = None
    mode: str | list[str] | None = None
    num_samples: int = Field(10, ge=1)
    searcher: Literal["tpe", "nsga2", "random", "grid"] | None = None
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    max_concurrent_trials: int | None = Field(None, ge=1)
    resources: ScalingSection | None = None
    driver_resources: dict[str, float] = Field(default_factory=lambda: {"CPU": 0.25})
    time_budget_s: float | None = Field(None, gt=0)
    seed: int | None = 0
    storage_path: str | None = None
    name: str | None = None
    optuna_storage: str | None = None
    study_name: str | None = None
    eval_steps: float | None = Field(None, gt=0)
    keep_checkpoints: bool = False
    reuse_actors: bool | None = None
    max_failures: int = 0
    export_best_to: str | None = None
    plots: bool = True

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        if value is None:
            return {"type": "none"}
        return value

    def reuse(self) -> bool:
        """Whether Tune reuses trial actors: as set, else only when no scheduler stops trials (Tune cannot reset an
        actor whose stopped trial still waits on its Train run, and fails the next trial instead)."""
        if self.reuse_actors is not None:
            return self.reuse_actors
        return self.scheduler.type == "none"

    def searcher_name(self, multi_objective: bool = False) -> str:
        """The searcher to use: the one set, else ``nsga2`` for a multi-objective sweep and ``tpe`` otherwise."""
        if self.searcher:
            return self.searcher
        return "nsga2" if multi_objective else "tpe"
