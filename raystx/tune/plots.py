"""PNG plots of a finished sweep: optimization history, parameter importance, and the Pareto front for a
multi-objective sweep.

The trials are replayed into an in-memory Optuna study (completed trials with their values; stopped trials as
pruned, with their intermediate values), whatever searcher ran the sweep, and drawn with
``optuna.visualization.matplotlib``. Without matplotlib (the ``raystx[plots]`` extra), or with fewer trials than a plot needs, that plot is
skipped and the reason returned.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from raystx.train.storage import join, uploaded_folder
from raystx.tune.objective import Objective
from raystx.tune.results import COMPLETED, STOPPED, TrialRow

logger = logging.getLogger("raystx.tune")


def build_study(rows: list[TrialRow], objective: Objective) -> Any:
    """An Optuna study holding the sweep's trials (params with their distributions, objective values)."""
    import optuna

    directions = ["maximize" if m == "max" else "minimize" for m in objective.modes]
    study = (
        optuna.create_study(directions=directions)
        if objective.multi
        else optuna.create_study(direction=directions[0])
    )
    for row in rows:
        try:
            distributions = {
                k: optuna.distributions.json_to_distribution(v)
                for k, v in row.distributions.items()
                if k in row.params
            }
        except Exception:  # noqa: BLE001 - a trial without usable distributions is left out
            continue
        params = {k: row.params[k] for k in distributions}
        values = [row.value(m) for m in objective.metrics]
        if row.status == COMPLETED and all(v is not None for v in values):
            state, value_arg = optuna.trial.TrialState.COMPLETE, values
        elif row.status == STOPPED and not objective.multi:
            state, value_arg = optuna.trial.TrialState.PRUNED, None
        else:
            continue
        intermediate = {i: v for i, v in enumerate(row.history)} if not objective.multi else None
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=value_arg,
                params=params,
                distributions=distributions,
                intermediate_values=intermediate,
                user_attrs={"trial_id": row.trial_id},
            )
        )
    return study


def write_plots(rows: list[TrialRow], objective: Objective, directory: str | Path) -> dict[str, str]:
    """Write the PNGs into ``directory`` (a local folder or a URI: drawn locally, then uploaded); returns
    ``{plot name: file location or 'skipped: reason'}``."""
    out: dict[str, str] = {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError as exc:
        reason = f"skipped: matplotlib is not installed ({exc}); pip install 'raystx[plots]'"
        return {"optimization_history": reason, "param_importances": reason}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with uploaded_folder(str(directory)) as folder:
        for name, where in _draw(rows, objective, folder, plt, ovm).items():
            out[name] = where if where.startswith("skipped") else join(str(directory), where)
    return out


def _draw(rows: list[TrialRow], objective: Objective, folder: Path, plt: Any, ovm: Any) -> dict[str, str]:
    """Draw each plot into the local ``folder``: ``{plot name: file name or 'skipped: reason'}``."""
    import optuna

    out: dict[str, str] = {}
    study = build_study(rows, objective)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    names = [m.removeprefix("eval_") for m in objective.metrics]
    importance = optuna.importance.FanovaImportanceEvaluator(seed=0)
    plans: list[tuple[str, Any, int]] = []
    if objective.multi:
        plans.append(("pareto_front", lambda: ovm.plot_pareto_front(study, target_names=names), 1))
        for i, name in enumerate(names):
            plans.append(
                (
                    f"optimization_history_{i}",
                    lambda i=i, name=name: ovm.plot_optimization_history(
                        study, target=lambda t, i=i: t.values[i], target_name=name
                    ),
                    1,
                )
            )
        plans.append(
            (
                "param_importances",
                lambda: ovm.plot_param_importances(
                    study, evaluator=importance, target=lambda t: t.values[0], target_name=names[0]
                ),
                2,
            )
        )
    else:
        plans.append(
            ("optimization_history", lambda: ovm.plot_optimization_history(study, target_name=names[0]), 1)
        )
        plans.append(
            (
                "param_importances",
                lambda: ovm.plot_param_importances(study, evaluator=importance, target_name=names[0]),
                2,
            )
        )
    for name, draw, minimum in plans:
        if len(complete) < minimum:
            out[name] = f"skipped: needs {minimum} completed trial(s), have {len(complete)}"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = draw()
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            out[name] = f"{name}.png"
        except Exception as exc:  # noqa: BLE001 - a plot is never worth failing the sweep
            logger.warning("plot %s failed: %s", name, exc)
            out[name] = f"skipped: {type(exc).__name__}: {exc}"
    return out
