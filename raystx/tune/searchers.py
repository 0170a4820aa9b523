"""Build the Tune search algorithm and trial scheduler a sweep asks for.

Searchers: ``tpe`` (Optuna TPE, seeded; the default), ``nsga2`` (Optuna NSGA-II, multi-objective), ``random``
(Optuna's seeded random sampler) — all three sample the define-by-run space, so conditional parameters exist only
when their choice is taken — and ``grid`` (Tune's own variant generator over a flat space: ``grid`` parameters are
enumerated, the rest sampled). Schedulers: ``asha`` (the default), ``median`` (median stopping), ``none``.
"""

from __future__ import annotations

from typing import Any

from raystx.tune.objective import Objective

SEARCHERS = ("tpe", "nsga2", "random", "grid")
SCHEDULERS = ("asha", "median", "none")


def optuna_storage(url: str | None) -> Any:
    """An Optuna RDB storage for ``url`` (e.g. ``sqlite:///sweep.db``, which ``optuna-dashboard`` can watch)."""
    if not url:
        return None
    import optuna

    return optuna.storages.RDBStorage(url)


def build_searcher(
    name: str,
    space: Any,
    objective: Objective,
    seed: int | None,
    storage_url: str | None = None,
    study_name: str | None = None,
    max_concurrent: int = 0,
) -> Any:
    """A Tune searcher. For ``grid`` returns a ``BasicVariantGenerator`` limited to ``max_concurrent`` running
    trials (the param space comes from ``space.tune_param_space()``); otherwise an ``OptunaSearch`` over
    ``space``'s define-by-run function (limit it with ``TuneConfig(max_concurrent_trials=...)``)."""
    if name not in SEARCHERS:
        raise ValueError(f"tune.searcher={name!r} is not one of {', '.join(SEARCHERS)}")
    if name == "grid":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    elif name == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    metric: Any = list(objective.metrics) if objective.multi else objective.metric
    mode: Any = list(objective.modes) if objective.multi else objective.mode
    return OptunaSearch(
        space=space.optuna_define_by_run(),
        metric=metric,
        mode=mode,
        sampler=sampler,
        storage=optuna_storage(storage_url),
        study_name=study_name,
    )


def build_scheduler(settings: Any, objective: Objective) -> Any:
    """The trial scheduler for ``settings`` (a ``SchedulerSettings``); it watches ``settings.metric`` or the
    objective's first metric."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    kind = settings.type
    if kind not in SCHEDULERS:
        raise ValueError(f"tune.scheduler.type={kind!r} is not one of {', '.join(SCHEDULERS)}")
    if kind == "none":
        return FIFOScheduler()
    metric = settings.metric or objective.metric
    mode = settings.mode or (
        objective.modes[objective.metrics.index(metric)] if metric in objective.metrics else "max"
    )
    if kind == "asha":
        return ASHAScheduler(
            time_attr=settings.time_attr,
            metric=metric,
            mode=mode,
            max_t=settings.max_t,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
            brackets=settings.brackets,
        )
    return MedianStoppingRule(
        time_attr=settings.time_attr,
        metric=metric,
        mode=mode,
        grace_period=settings.grace_period,
        min_samples_required=settings.min_samples_required,
    )
