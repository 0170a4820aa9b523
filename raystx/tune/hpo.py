"""``hyperparameter_search``: transformers' ``Trainer.hyperparameter_search`` for a ``SentenceTransformerTrainer``.

    def hp_space(trial):                       # Optuna define-by-run style ...
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)}
    # ... or Ray Tune style: {"learning_rate": tune.loguniform(1e-5, 1e-3)} (called with trial=None),
    # ... or raystx style: {"learning_rate": {"loguniform": [1e-5, 1e-3]}} (a dict, not a function)

    best = hyperparameter_search(trainer, hp_space=hp_space, n_trials=8, direction="maximize")
    best.run_id, best.objective, best.hyperparameters, best.run_summary   # run_summary: a SweepResult

Every trial runs on Ray (``backend="ray"``; ``"optuna"`` is accepted and means the same: Optuna samples, Ray runs).
The sampled values set ``SentenceTransformerTrainingArguments`` fields of a copy of ``trainer.args``; a
``model_init`` (0 or 1 argument: the trial's hyperparameters) builds a fresh model per trial, else each trial
starts from a copy of ``trainer.model``; ``model_init(trial)`` and a loss factory ``loss(model, trial)`` receive the
trial (``raystx.train.trial_call.TrialParams``: a dict of the values, also ``trial.params``). The objective is
``compute_objective(eval metrics)`` when given, else the evaluator's primary metric, else ``eval_loss`` (minimized)
of the trainer's ``eval_dataset`` (an evaluator or an eval_dataset is required). ``direction`` defaults to the evaluator's.
Keyword arguments: ``scheduler`` (``asha``/``median``/``none`` or a ``SchedulerSettings`` dict), ``searcher``
(``tpe``/``random``/``grid``/``nsga2``), ``max_concurrent_trials``, ``resources_per_trial`` (a ``ScalingConfig``
or its fields as a dict), ``storage_path``, ``name``, ``seed``, ``time_budget_s``, ``optuna_storage``,
``eval_steps``, ``resume``, ``callbacks`` (extra Tune callbacks), and any other ``TuneSettings`` field. ``hp_name`` is
accepted for signature compatibility and unused (trials are named by their Tune trial id).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from torch import nn

from raystx.train.trial_call import TrialParams, call_model_init
from raystx.tune.objective import Objective, resolve_objective
from raystx.tune.report import objective_keys
from raystx.tune.settings import TuneSettings
from raystx.tune.space import SearchSpace, SearchSpaceError

if TYPE_CHECKING:
    from raystx.data.protocol import DataSource


class BestRun(NamedTuple):
    """The best trial (as transformers' ``BestRun``): id, objective value(s), hyperparameters, the sweep."""

    run_id: str
    objective: float | list[float]
    hyperparameters: dict[str, Any]
    run_summary: Any = None


# ------------------------------------------------------------------------------------------ search spaces


def domain_to_node(domain: Any) -> Any:
    """A Ray Tune domain (``tune.uniform`` / ``loguniform`` / ``randint`` / ``choice`` / ``grid_search``) as a
    raystx search node; constants pass through."""
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Quantized

    if isinstance(domain, dict) and set(domain) == {"grid_search"}:
        return {"grid": list(domain["grid_search"])}
    if isinstance(domain, Categorical):
        return {"choice": list(domain.categories)}
    if isinstance(domain, Float):
        kind = "loguniform" if isinstance(domain.get_sampler(), LogUniform) else "uniform"
        return {kind: [domain.lower, domain.upper]}
    if isinstance(domain, Integer):
        sampler = domain.get_sampler()
        step = int(sampler.q) if isinstance(sampler, Quantized) else 1
        node: dict[str, Any] = {"int": [int(domain.lower), int(domain.upper) - 1]}
        if isinstance(sampler, LogUniform):
            node["log"] = True
        elif step > 1:
            node["step"] = step
        return node
    return domain


class FunctionSpace:
    """A user's Optuna define-by-run ``hp_space(trial) -> dict``: the trial's config holds the suggested values
    plus their serialized distributions (``_distributions``)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def optuna_define_by_run(self) -> Any:
        return _RecordingDefineByRun(self.fn)

    def resolve_config(self, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        params = {k: v for k, v in config.items() if not k.startswith("_")}
        return dict(params), params

    def distributions_json(
        self, params: dict[str, Any], config: dict[str, Any] | None = None
    ) -> dict[str, str]:
        return dict((config or {}).get("_distributions") or {})

    def tune_param_space(self) -> dict[str, Any]:
        raise SearchSpaceError(
            "a define-by-run hp_space cannot be grid-searched; use searcher 'tpe' or 'random'"
        )

    def describe(self) -> dict[str, str]:
        return {"hp_space": getattr(self.fn, "__qualname__", repr(self.fn))}

    def grid_size(self) -> int:
        return 1


class _RecordingDefineByRun:
    """Calls ``hp_space(trial)`` and returns the suggested distributions as constants for the trial config.

    The searcher state is saved with plain ``pickle`` (for resuming), so the user's function (often a local
    closure) is kept cloudpickled."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __getstate__(self) -> dict[str, Any]:
        import cloudpickle

        return {"fn": cloudpickle.dumps(self.fn)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        import cloudpickle

        self.fn = cloudpickle.loads(state["fn"])

    def __call__(self, trial: Any) -> dict[str, Any]:
        import optuna

        self.fn(trial)
        return {
            "_distributions": {
                k: optuna.distributions.distribution_to_json(v) for k, v in trial.distributions.items()
            }
        }


def as_space(hp_space: Any) -> Any:
    """``SearchSpace`` for a raystx-style dict or a Tune-style function/dict, ``FunctionSpace`` for an Optuna
    define-by-run function. ``None`` gives transformers' default space (learning rate, epochs, seed, batch size)."""
    if hp_space is None:
        return SearchSpace(
            {
                "learning_rate": {"loguniform": [1e-6, 1e-4]},
                "num_train_epochs": {"int": [1, 5]},
                "seed": {"int": [1, 40]},
                "per_device_train_batch_size": {"choice": [4, 8, 16, 32, 64]},
            }
        )
    if isinstance(hp_space, dict):
        return SearchSpace({k: domain_to_node(v) for k, v in hp_space.items()})
    if callable(hp_space):
        try:
            returned = hp_space(None)
        except (AttributeError, TypeError):
            return FunctionSpace(hp_space)
        if isinstance(returned, dict):
            return SearchSpace({k: domain_to_node(v) for k, v in returned.items()})
        return FunctionSpace(hp_space)
    raise SearchSpaceError(f"hp_space must be a dict or a function, got {type(hp_space).__name__}")


# ------------------------------------------------------------------------------------------ trial factory


def _rebind_model(loss: Any, old: nn.Module, new: nn.Module) -> Any:
    """Point every submodule of ``loss`` that holds ``old`` at ``new`` instead."""
    if isinstance(loss, dict):
        return {k: _rebind_model(v, old, new) for k, v in loss.items()}
    if not isinstance(loss, nn.Module):
        return loss
    for module in loss.modules():
        for name, child in list(module._modules.items()):
            if child is old:
                setattr(module, name, new)
    return loss


@dataclasses.dataclass
class TrainerFactory:
    """Builds each trial's trainer from the user's trainer (shipped once): its args with the trial's values,
    a fresh model from ``model_init`` (or the trainer's model), the losses re-pointed at that model, and the
    training data staged once on the driver (``sources``)."""

    trainer: Any
    sources: dict[str, DataSource]
    eval_sources: dict[str, DataSource] | None = None
    eval_is_dict: bool = False

    def __call__(self, assignments: dict[str, Any], params: dict[str, Any]) -> Any:
        from raystx.train.trainer import SentenceTransformerTrainer

        base = self.trainer
        args = copy.deepcopy(base.args)
        fields = {f.name for f in dataclasses.fields(args)}
        for key, value in assignments.items():
            if key not in fields:
                raise SearchSpaceError(
                    f"hp_space sets {key!r}, which is not a SentenceTransformerTrainingArguments field"
                )
            setattr(args, key, value)
        args.__post_init__()
        trial = TrialParams(params)
        model, loss = base.model, base.loss
        if base.model_init is not None:
            new = call_model_init(base.model_init, trial)
            loss = _rebind_model(loss, model, new)
            model = new
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=dict(self.sources),  # prepared sources pass through the trial's prepare_sources
            eval_dataset=self._eval_dataset(),
            loss=loss,
            evaluator=base.evaluator,
            callbacks=list(base.callbacks),
            scaling_config=base.scaling_config,
        )
        trainer.trial = trial  # loss factories that take it receive it
        return trainer

    def _eval_dataset(self) -> Any:
        """The staged eval dataset(s) in the shape the user gave (one dataset, or a dict by name)."""
        if not self.eval_sources:
            return None
        opened = dict(self.eval_sources)
        return opened if self.eval_is_dict else next(iter(opened.values()))


def _settings(kwargs: dict[str, Any], n_trials: int) -> tuple[TuneSettings, Any]:
    from ray.train import ScalingConfig

    from raystx.tune.settings import SchedulerSettings

    options = dict(kwargs)
    resources = options.pop("resources_per_trial", None)
    scheduler = options.pop("scheduler", None)
    searcher = options.pop("searcher", options.pop("search_alg", None))
    data: dict[str, Any] = {"num_samples": n_trials, **options}
    if searcher is not None:
        data["searcher"] = searcher
    if scheduler is not None:
        data["scheduler"] = scheduler if isinstance(scheduler, (str, dict, SchedulerSettings)) else None
        if data["scheduler"] is None:
            raise TypeError(
                "scheduler must be 'asha', 'median', 'none' or a dict of SchedulerSettings fields"
            )
    scaling = resources if isinstance(resources, ScalingConfig) else None
    if isinstance(resources, dict):
        data["resources"] = resources
    return TuneSettings.model_validate(data), scaling


def hyperparameter_search(
    trainer: Any,
    hp_space: Any = None,
    compute_objective: Any = None,
    n_trials: int = 20,
    direction: str | list[str] | None = None,
    backend: str | None = "ray",
    hp_name: Any = None,
    **kwargs: Any,
) -> BestRun | list[BestRun]:
    """Search ``trainer``'s hyperparameters with Ray Tune + Optuna; see the module docstring.

    Returns the best run (``BestRun``), or for a multi-objective search (a list ``direction`` and a
    ``compute_objective`` returning a list) the Pareto-optimal runs."""
    from raystx.data.sources import prepare_sources
    from raystx.ray_init import ensure_ray
    from raystx.train.build import scaling_config
    from raystx.train.storage import check_writable, join, resolve
    from raystx.tune.sweep import DATA_DIR, execute

    if backend not in (None, "ray", "optuna"):
        raise ValueError(
            f"backend={backend!r} is not supported; raystx runs trials on Ray ('ray' or 'optuna')"
        )
    if trainer.evaluator is None and trainer.eval_dataset is None:
        raise ValueError(
            "hyperparameter_search needs an evaluator or an eval_dataset on the trainer: trials report their "
            "metrics (evaluator metrics, eval_loss) to Ray Tune"
        )
    resume = bool(kwargs.pop("resume", False))
    callbacks = kwargs.pop("callbacks", None)
    settings, scaling = _settings(kwargs, n_trials)
    ensure_ray()
    space = as_space(hp_space)
    storage = resolve(settings.storage_path or trainer.args.output_dir)  # a local path or a URI (s3://...)
    name = settings.name or "hp_search"
    check_writable(storage, "storage_path" if settings.storage_path else "args.output_dir")
    sources = prepare_sources(
        trainer.train_dataset,
        staging_dir=join(storage, name, DATA_DIR),
        select_columns=trainer.select_columns,
    )
    eval_is_dict = isinstance(trainer.eval_dataset, Mapping)
    eval_sources = None
    if trainer.eval_dataset is not None:
        eval_sources = prepare_sources(
            trainer.eval_dataset, staging_dir=join(storage, name, DATA_DIR, ".eval"), name="eval"
        )
    evaluator = trainer.evaluator
    if (
        evaluator is not None
        and getattr(evaluator, "primary_metric", None) is None
        and compute_objective is None
    ):
        evaluator(trainer.model)  # names the primary metric
    directions = direction if isinstance(direction, list) else ([direction] if direction else [])
    if compute_objective is not None:
        metric: Any = objective_keys(max(len(directions), 1))
        objective = resolve_objective(metric, directions or "max", None)
    elif evaluator is None:  # transformers' default objective without other metrics: the evaluation loss
        if eval_is_dict:
            raise ValueError(
                "hyperparameter_search with several eval datasets and no evaluator: pass compute_objective "
                f"(e.g. lambda m: m['eval_{next(iter(trainer.eval_dataset))}_loss']) to say which loss to minimize"
            )
        objective = resolve_objective("eval_loss", directions or "min", None)
    else:
        objective = resolve_objective(None, directions or None, evaluator)
    if settings.resources is not None:
        scaling = scaling_config(settings.resources)
    scaling = scaling or trainer.scaling_config or scaling_config()
    shipped = copy.copy(trainer)  # what trials receive: no raw datasets (they get the staged sources)
    shipped.train_dataset = shipped.eval_dataset = None
    shipped.scaling_config = scaling
    result = execute(
        space=space,
        factory=TrainerFactory(
            trainer=shipped, sources=sources, eval_sources=eval_sources, eval_is_dict=eval_is_dict
        ),
        objective=objective,
        settings=settings,
        scaling=scaling,
        storage_path=storage,
        name=name,
        resume=resume,
        compute_objective=compute_objective,
        save_strategy_given=_save_strategy_given(trainer.args),
        search_description=space.describe(),
        callbacks=callbacks,
    )
    return _best_runs(result, objective)


def _save_strategy_given(args: Any) -> bool:
    from raystx.train.args import SentenceTransformerTrainingArguments

    default = SentenceTransformerTrainingArguments()
    return args.save_strategy != default.save_strategy or args.save_steps != default.save_steps


def _best_runs(result: Any, objective: Objective) -> BestRun | list[BestRun]:
    def run(row: Any) -> BestRun:
        values = [row.value(m) for m in objective.metrics]
        return BestRun(row.trial_id, values if objective.multi else values[0], dict(row.params), result)

    if objective.multi:
        return [run(r) for r in result.pareto]
    if result.best is None:
        raise RuntimeError(f"no trial completed; see {result.experiment_path} ({len(result.rows)} trials)")
    return run(result.best)
