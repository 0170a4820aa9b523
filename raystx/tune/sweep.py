"""The sweep driver: run (or resume) a Tune experiment of function trials and collect its results.

    from raystx.tune import run_sweep
    result = run_sweep("sweep.yaml")              # or a SweepSpec / dict; resume=True continues an interrupted one
    print(result.summary())

``run_sweep`` prepares the data once on the driver (see ``raystx.tune.spec``), then ``execute`` runs the
experiment: Optuna (or grid) search, ASHA / median / no early stopping, ``max_concurrent_trials`` from the free
cluster resources, a placement-group guard, and afterwards writes into the experiment directory
``trials.csv``/``trials.json``, ``summary.txt``, ``plots/*.png`` and the best trial's model (``best_model/``, with
a model-card section recording the search). The experiment may live on object storage (``tune.storage_path:
s3://bucket/sweeps``): every file of the sweep is then written there through ``raystx.train.storage``, with the
credentials of each node's environment. Interrupting the driver (Ctrl+C) stops the running trials and saves
the experiment state; ``resume=True`` (``raystx tune SWEEP.yaml --resume``) continues it: finished trials are kept,
unfinished ones start over, and the searcher continues with the remaining samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from raystx.train.storage import check_writable, exists, join, write_text
from raystx.tune.objective import Objective, resolve_objective
from raystx.tune.results import (
    UNFINISHED,
    TrialRow,
    best_row,
    collect_rows,
    export_best,
    pareto_front,
    summary_text,
    total_steps,
    write_table,
)
from raystx.tune.settings import TuneSettings
from raystx.tune.trial import TrialPlan, run_trial, trial_dirname

logger = logging.getLogger("raystx.tune")

DATA_DIR = ".raystx-data"


@dataclass
class SweepResult:
    """What a sweep produced (paths are inside ``experiment_path`` unless exported elsewhere)."""

    experiment_path: str
    objective: Objective
    rows: list[TrialRow]
    best: TrialRow | None
    pareto: list[TrialRow]
    exported_model: str | None
    table_csv: str
    table_json: str
    plots: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    wall_time_s: float = 0.0
    removed_placement_groups: int = 0
    baseline: dict[str, float] | None = None

    @property
    def total_steps(self) -> int:
        """Optimizer steps summed over all trials (the sweep's compute)."""
        return total_steps(self.rows)

    def summary(self) -> str:
        text = summary_text(
            self.rows, self.objective, self.best, self.pareto if self.objective.multi else None
        )
        extra = [f"wall time {self.wall_time_s:.1f}s; results in {self.experiment_path}"]
        if self.baseline:
            known = [m for m in self.objective.metrics if m.removeprefix("eval_") in self.baseline]
            if known:
                extra.append(
                    "untrained model: "
                    + ", ".join(f"{m}={self.baseline[m.removeprefix('eval_')]:.5g}" for m in known)
                )
        if self.exported_model:
            extra.append(f"best model exported to {self.exported_model}")
        if self.interrupted:
            extra.append("the sweep was interrupted: resume it to finish the remaining trials")
        for name, where in self.plots.items():
            extra.append(f"plot {name}: {where}")
        return text + "\n" + "\n".join(extra)


def _ray_resources(resources: dict[str, float]) -> dict[str, float]:
    names = {"CPU": "cpu", "GPU": "gpu"}
    return {names.get(k, k): float(v) for k, v in resources.items()}


def registry_name(experiment_path: str) -> str:
    """Deterministic per experiment, so a resumed sweep's restored guard finds the new registry."""
    return "raystx-pg-" + hashlib.sha1(experiment_path.encode("utf-8")).hexdigest()[:12]


def execute(
    *,
    space: Any,
    factory: Any,
    objective: Objective,
    settings: TuneSettings,
    scaling: Any,
    storage_path: str,
    name: str,
    resume: bool = False,
    compute_objective: Any = None,
    save_strategy_given: bool = False,
    search_description: dict[str, str] | None = None,
    callbacks: list[Any] | None = None,
    baseline: dict[str, float] | None = None,
) -> SweepResult:
    """Run the Tune experiment ``storage_path/name`` for ``space`` with trials built by ``factory``.

    ``scaling`` is the per-trial ``ScalingConfig`` (used to size ``max_concurrent_trials``); ``callbacks`` are
    extra Tune callbacks (a resumed sweep keeps the ones it was started with)."""
    import ray
    from ray import tune

    from raystx.tune.credentials import credentials_stay_on_nodes
    from raystx.tune.placement import PlacementGroupGuard, start_registry
    from raystx.tune.resources import max_concurrent_trials
    from raystx.tune.searchers import build_scheduler, build_searcher

    started = time.time()
    experiment_path = join(storage_path, name)
    if resume and not tune.Tuner.can_restore(experiment_path):
        raise FileNotFoundError(f"there is no sweep to resume at {experiment_path}")
    if not resume and exists(join(experiment_path, "tuner.pkl")):
        raise FileExistsError(
            f"{experiment_path} already holds a sweep; resume it (--resume / resume=True) or choose another "
            "tune.name / tune.storage_path"
        )
    concurrency = max_concurrent_trials(scaling, settings.driver_resources, settings.max_concurrent_trials)
    registry = registry_name(experiment_path)
    namespace = ray.get_runtime_context().namespace
    registry_actor = start_registry(registry)
    guard = PlacementGroupGuard(registry, namespace)
    plan = TrialPlan(
        space=space,
        factory=factory,
        objective=objective,
        experiment_path=experiment_path,
        registry_name=registry,
        namespace=namespace,
        compute_objective=compute_objective,
        eval_steps=settings.eval_steps,
        keep_checkpoints=settings.keep_checkpoints,
        save_strategy_given=save_strategy_given,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, plan=plan), _ray_resources(settings.driver_resources)
    )
    searcher_name = settings.searcher_name(objective.multi)
    if searcher_name == "grid" and objective.multi:
        logger.info("grid search over a multi-objective sweep: the Pareto front is computed from all trials")
    logger.info(
        "sweep %s: searcher=%s scheduler=%s num_samples=%d max_concurrent_trials=%d objective=%s",
        experiment_path,
        searcher_name,
        settings.scheduler.type,
        settings.num_samples,
        concurrency,
        list(zip(objective.metrics, objective.modes)),
    )
    interrupted = False
    try:
        if resume:
            tuner = tune.Tuner.restore(
                experiment_path, trainable=trainable, resume_unfinished=True, resume_errored=False
            )
        else:
            searcher = build_searcher(
                searcher_name,
                space,
                objective,
                settings.seed,
                storage_url=settings.optuna_storage,
                study_name=settings.study_name or name,
                max_concurrent=concurrency,
            )
            tuner = tune.Tuner(
                trainable,
                param_space=space.tune_param_space() if searcher_name == "grid" else {},
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=build_scheduler(settings.scheduler, objective),
                    num_samples=settings.num_samples,
                    max_concurrent_trials=None if searcher_name == "grid" else concurrency,
                    time_budget_s=settings.time_budget_s,
                    trial_dirname_creator=trial_dirname,
                    reuse_actors=settings.reuse(),
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=storage_path,
                    callbacks=[guard, *(callbacks or [])],
                    failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                    verbose=1,
                ),
            )
        with credentials_stay_on_nodes():  # Tune would copy AWS credentials into Ray's logged runtime envs
            tuner.fit()
    finally:
        guard.release_all()
        try:
            ray.kill(registry_actor)
        except Exception:  # noqa: BLE001
            pass
    rows = collect_rows(experiment_path, objective)
    expected = settings.num_samples * (space.grid_size() if searcher_name == "grid" else 1)
    out_of_time = bool(settings.time_budget_s) and time.time() - started >= settings.time_budget_s
    interrupted = any(r.status == UNFINISHED for r in rows) or (len(rows) < expected and not out_of_time)
    best = best_row(rows, objective)
    front = pareto_front(rows, objective) if objective.multi else []
    csv_path, json_path = write_table(rows, experiment_path)
    exported = None
    description = search_description or {}
    if best is not None:
        target = settings.export_best_to or join(experiment_path, "best_model")
        exported = str(
            export_best(
                best,
                target,
                objective,
                description,
                {"searcher": searcher_name, "scheduler": settings.scheduler.type, "seed": settings.seed},
                len(rows),
            )
        )
    plots: dict[str, str] = {}
    if settings.plots:
        from raystx.tune.plots import write_plots

        plots = write_plots(rows, objective, join(experiment_path, "plots"))
    result = SweepResult(
        experiment_path=experiment_path,
        objective=objective,
        rows=rows,
        best=best,
        pareto=front,
        exported_model=exported,
        table_csv=str(csv_path),
        table_json=str(json_path),
        plots=plots,
        interrupted=interrupted,
        wall_time_s=round(time.time() - started, 3),
        removed_placement_groups=guard.removed,
        baseline=baseline,
    )
    write_text(join(experiment_path, "summary.txt"), result.summary() + "\n")
    write_text(
        join(experiment_path, "sweep.json"),
        json.dumps(
            {
                "objective": {"metrics": list(objective.metrics), "modes": list(objective.modes)},
                "settings": settings.model_dump(),
                "search": description,
                "total_steps": result.total_steps,
                "wall_time_s": result.wall_time_s,
                "best_trial": best.trial_id if best else None,
                "interrupted": interrupted,
                "baseline": baseline,
            },
            indent=2,
            default=str,
        ),
    )
    return result


def run_sweep(
    sweep: Any,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    settings: TuneSettings | dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> SweepResult:
    """Run a sweep given as a YAML path, a ``SweepSpec`` or a raw dict (training config + ``search`` + ``tune``).

    ``settings`` replaces the spec's ``tune`` section when given; ``callbacks`` are extra Tune callbacks. With
    ``resume=True`` the experiment named by the settings is restored and finished."""
    from raystx.ray_init import ensure_ray
    from raystx.train.build import scaling_config
    from raystx.tune.spec import SweepSpec, load_sweep, prepare_trials, sweep_from_dict

    if isinstance(sweep, SweepSpec):
        spec = sweep
    elif isinstance(sweep, dict):
        spec = sweep_from_dict(sweep)
    else:
        spec = load_sweep(sweep, overrides)
    if settings is not None:
        spec.settings = (
            settings if isinstance(settings, TuneSettings) else TuneSettings.model_validate(settings)
        )
    ensure_ray()
    storage = spec.default_storage()
    name = spec.default_name()
    key = (
        "tune.storage_path"
        if spec.settings.storage_path
        else "tune.storage_path (default: beside args.output_dir)"
    )
    check_writable(storage, key)  # before any data is staged there
    factory = prepare_trials(spec, join(storage, name, DATA_DIR))
    first = next(iter(factory.prepared.values()))
    objective = resolve_objective(spec.settings.metric, spec.settings.mode, first.evaluator)
    scaling = scaling_config(factory.scaling_override or spec.base.scaling)
    save_given = "save_strategy" in (spec.raw.get("args") or {}) or any(
        k.startswith("args.save_") for k in spec.space.tree
    )
    return execute(
        space=spec.space,
        factory=factory,
        objective=objective,
        settings=spec.settings,
        scaling=scaling,
        storage_path=storage,
        name=name,
        resume=resume,
        save_strategy_given=save_given,
        search_description=spec.space.describe(),
        callbacks=callbacks,
        baseline=first.baseline,
    )
