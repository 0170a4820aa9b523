"""The Tune trial: one function per sampled config that builds and fits its own Ray Train run.

``run_trial(config, plan)`` runs inside the Tune trial actor. It resolves the trial's parameters from its Tune
config (same names and conditions as the searcher saw), asks the plan's factory for a
``SentenceTransformerTrainer``, points the trainer's Ray Train run at the trial directory with a
``SweepReportCallback`` (evaluations reach Tune, so schedulers can stop the trial) and a placement-group registrar,
trains, saves, and only then reports the final evaluation to Tune (so a stop decision cannot cut the save short).
It writes into the trial directory (``{experiment_path}/trial_{trial_id}`` in the sweep's storage, which
must be shared between nodes on a multi-node cluster: a shared folder or an object store URI such as ``s3://``):

* ``sweep_params.json``: the active parameters and their Optuna distributions (for the results table and plots);
* ``model/``: the final (or best, with ``load_best_model_at_end``) model in sentence-transformers format;
* ``sweep_result.json``: the metrics of that model, the number of optimizer steps, the wall time;
* ``attempts.log``: one line per start (a resumed sweep re-runs unfinished trials only).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raystx.train.storage import (
    append_text,
    checkpoint_names,
    delete_tree,
    exists,
    join,
    save_model,
    write_text,
)
from raystx.tune.objective import Objective

logger = logging.getLogger("raystx.tune")

PARAMS_FILE = "sweep_params.json"
RESULT_FILE = "sweep_result.json"
ATTEMPTS_FILE = "attempts.log"
MODEL_DIR = "model"
TRAIN_DIR = "train"


@dataclass
class TrialPlan:
    """Everything a trial needs, shipped once through the object store (``tune.with_parameters``).

    ``space``: a ``SearchSpace`` (or any object with ``resolve_config(config)`` and
    ``distributions_json(params, config)``).
    ``factory(assignments, params)``: returns a ``SentenceTransformerTrainer`` for the resolved dotted-key
    assignments. ``eval_steps``: evaluation interval forced on every trial (None keeps the trainer's, or 10
    evaluations per trial when the trainer does not evaluate). ``keep_checkpoints``: keep the Train checkpoints
    after the model is exported to ``model/``. ``save_strategy_given``: the user chose when to save (otherwise a
    trial saves only at its end).
    """

    space: Any
    factory: Callable[[dict[str, Any], dict[str, Any]], Any]
    objective: Objective
    experiment_path: str
    registry_name: str
    namespace: str | None = None
    compute_objective: Callable[[dict[str, float]], Any] | None = None
    eval_steps: float | None = None
    keep_checkpoints: bool = False
    save_strategy_given: bool = False
    train_failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def trial_dirname_for(trial_id: str) -> str:
    """The directory name of a trial inside the experiment (``tune.TuneConfig(trial_dirname_creator=...)``)."""
    return f"trial_{trial_id}"


def trial_dirname(trial: Any) -> str:
    """``trial_dirname_creator`` for Tune: short names (Tune's default embeds every parameter)."""
    return trial_dirname_for(trial.trial_id)


def prepare_args_for_sweep(args: Any, eval_steps: float | None, save_strategy_given: bool) -> None:
    """Make the trial evaluate periodically (``eval_strategy='steps'``) so Tune sees intermediate results, and
    save only at the end unless the run asked for more (or needs it for ``load_best_model_at_end``)."""
    from raystx.train.args import IntervalStrategy

    if eval_steps is not None:
        args.eval_strategy = IntervalStrategy.STEPS
        args.eval_steps = eval_steps
    elif args.eval_strategy is IntervalStrategy.NO:
        args.eval_strategy = IntervalStrategy.STEPS
        args.eval_steps = 0.1
    if args.load_best_model_at_end:
        args.save_strategy = args.eval_strategy
        args.save_steps = args.eval_steps if args.eval_strategy is IntervalStrategy.STEPS else args.save_steps
    elif not save_strategy_given:
        args.save_strategy = IntervalStrategy.NO


def _model_metrics(history: list[dict[str, Any]], objective: Objective, best: bool) -> dict[str, Any]:
    """The evaluation entry of the model the trial keeps: the last one, or the best one on the objective."""
    evals = [h for h in history if any(k.startswith("eval_") for k in h)]
    if not evals:
        return {}
    if not best:
        return dict(evals[-1])
    scored = [h for h in evals if objective.metric in h]
    if not scored:
        return dict(evals[-1])
    pick = scored[0]
    for entry in scored[1:]:
        if objective.better(entry[objective.metric], pick[objective.metric]):
            pick = entry
    return dict(pick)


def run_trial(config: dict[str, Any], plan: TrialPlan) -> None:
    """Tune function trainable (wrap with ``tune.with_parameters(run_trial, plan=plan)``)."""
    import ray.tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    from raystx.tune.placement import PlacementGroupRegistrar
    from raystx.tune.report import SweepReportCallback, add_objective, final_result

    started = time.time()
    context = ray.tune.get_context()
    trial_id = context.get_trial_id()
    trial_dir = join(plan.experiment_path, trial_dirname_for(trial_id))
    append_text(join(trial_dir, ATTEMPTS_FILE), f"{trial_id} started {started:.3f}\n")

    assignments, params = plan.space.resolve_config(config)
    write_text(
        join(trial_dir, PARAMS_FILE),
        json.dumps(
            {
                "trial_id": trial_id,
                "params": params,
                "assignments": assignments,
                "distributions": plan.space.distributions_json(params, config),
            },
            indent=2,
            default=str,
        ),
    )
    trainer = plan.factory(assignments, params)
    prepare_args_for_sweep(trainer.args, plan.eval_steps, plan.save_strategy_given)

    run_dir = join(trial_dir, TRAIN_DIR)
    if exists(run_dir):  # an earlier, interrupted attempt of this trial: start it over
        delete_tree(run_dir)
    trainer.args.output_dir = run_dir
    args = trainer.args
    best_key = plan.objective.metric if args.load_best_model_at_end else None
    if best_key and args.metric_for_best_model is None:
        args.metric_for_best_model = best_key
        args.greater_is_better = plan.objective.mode == "max"
    trainer.run_config = RunConfig(
        storage_path=trial_dir,
        name=TRAIN_DIR,
        callbacks=[SweepReportCallback(plan.compute_objective)],
        failure_config=FailureConfig(max_failures=plan.train_failures),
        checkpoint_config=CheckpointConfig(
            num_to_keep=args.save_total_limit,
            checkpoint_score_attribute=args.metric_for_best_model if args.load_best_model_at_end else None,
            checkpoint_score_order="max" if args.greater_is_better in (None, True) else "min",
        ),
    )
    trainer.callbacks.append(PlacementGroupRegistrar(plan.registry_name, plan.namespace, trial_id))

    output = trainer.train()
    model_dir = join(trial_dir, MODEL_DIR)
    delete_tree(model_dir)
    save_model(trainer.model, model_dir)
    metrics = _model_metrics(output.log_history, plan.objective, best=bool(args.load_best_model_at_end))
    if plan.compute_objective is not None and metrics:
        add_objective(metrics, plan.compute_objective)
    if not plan.keep_checkpoints:
        for checkpoint in checkpoint_names(run_dir):
            delete_tree(join(run_dir, checkpoint))
    write_text(
        join(trial_dir, RESULT_FILE),
        json.dumps(
            {
                "trial_id": trial_id,
                "params": params,
                "global_step": output.global_step,
                "metrics": metrics,
                "objective": {m: metrics.get(m) for m in plan.objective.metrics},
                "model": model_dir,
                "time_s": round(time.time() - started, 3),
            },
            indent=2,
            default=str,
        ),
    )
    last = final_result(output.log_history, plan.compute_objective)
    if last is not None:
        ray.tune.report(last)
