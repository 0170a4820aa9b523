"""Hyperparameter and loss sweeps with Ray Tune + Optuna: one function trial per sampled config, each fitting
its own Ray Train run. Imports Ray Tune lazily."""

from __future__ import annotations

__all__ = [
    "BestRun",
    "SearchSpace",
    "SweepResult",
    "TuneSettings",
    "hyperparameter_search",
    "load_sweep",
    "run_sweep",
]


def __getattr__(name: str):
    if name in ("run_sweep", "SweepResult"):
        from raystx.tune import sweep

        return getattr(sweep, name)
    if name in ("hyperparameter_search", "BestRun"):
        from raystx.tune import hpo

        return getattr(hpo, name)
    if name == "load_sweep":
        from raystx.tune.spec import load_sweep

        return load_sweep
    if name == "SearchSpace":
        from raystx.tune.space import SearchSpace

        return SearchSpace
    if name == "TuneSettings":
        from raystx.tune.settings import TuneSettings

        return TuneSettings
    raise AttributeError(name)
