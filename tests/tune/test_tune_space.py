"""The sweep's building blocks without a cluster: search space, objective, resources, reports, results."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

from raystx.config import ConfigError
from raystx.tune.objective import Objective, resolve_objective
from raystx.tune.report import final_result, tune_result
from raystx.tune.resources import check_fits, derive_max_concurrent, trial_resources
from raystx.tune.results import COMPLETED, STOPPED, TrialRow, best_row, pareto_front, write_table
from raystx.tune.settings import TuneSettings
from raystx.tune.space import SearchSpace, SearchSpaceError, apply_assignments
from raystx.tune.trial import prepare_args_for_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

LOSS_SPACE = {
    "args.learning_rate": {"loguniform": [1e-5, 1e-2]},
    "loss": {
        "choice": {
            "mnrl": {"type": "MultipleNegativesRankingLoss", "kwargs": {"scale": {"uniform": [10, 40]}}},
            "cmnrl": {
                "type": "CachedMultipleNegativesRankingLoss",
                "kwargs": {"mini_batch_size": {"choice": [4, 8]}},
            },
            "matryoshka": {
                "type": "MatryoshkaLoss",
                "kwargs": {"matryoshka_dims": {"choice": {"two": [32, 16], "three": [32, 16, 8]}}},
                "wrap": {"type": "MultipleNegativesRankingLoss"},
            },
            "cosent": {
                "set": {
                    "loss": {"type": "CoSENTLoss", "kwargs": {"scale": {"uniform": [10, 40]}}},
                    "train_data": {"scored": {"path": "scored.csv"}},
                }
            },
        }
    },
}


# ------------------------------------------------------------------------------------------ search space


@pytest.mark.parametrize(
    ("tree", "needle"),
    [
        ({"args.lr": {"uniform": [1]}}, r"args\.lr: uniform needs \[low, high\]"),
        ({"args.lr": {"uniform": [2, 1]}}, r"args\.lr: uniform needs low < high"),
        ({"args.lr": {"loguniform": [0, 1]}}, r"args\.lr: loguniform needs low > 0"),
        ({"args.n": {"int": [1.5, 4]}}, r"args\.n: int bounds must be integers"),
        ({"args.lr": {"uniform": [0, 1], "step": 2}}, r"args\.lr: step is only allowed for int"),
        ({"loss": {"choice": []}}, r"loss: choice needs at least one option"),
        ({"loss": {"choice": [1, 1]}}, r"loss: choice lists the option 1 twice"),
        (
            {"loss": {"kwargs": {"x": {"choice": [{"set": {"a": 1}}]}}}},
            r"only allowed directly under a top-level",
        ),
        ({"loss": {"set": {"a": 1}}}, r"loss: `set:` is only allowed as an option"),
        ({"args..lr": 1}, r"not a dotted config key"),
    ],
)
def test_malformed_search_entries_fail_naming_the_key(tree, needle):
    with pytest.raises(SearchSpaceError, match=needle):
        SearchSpace(tree)


def test_conditional_parameters_exist_only_under_their_choice():
    space = SearchSpace(LOSS_SPACE)
    assert set(space.distributions) == {
        "args.learning_rate",
        "loss",
        "loss[mnrl].kwargs.scale",
        "loss[cmnrl].kwargs.mini_batch_size",
        "loss[matryoshka].kwargs.matryoshka_dims",
        "loss[cosent].loss.kwargs.scale",
    }
    picks = {
        "args.learning_rate": 1e-3,
        "loss": "matryoshka",
        "loss[matryoshka].kwargs.matryoshka_dims": "three",
    }
    assignments, params = space.resolve_config(picks)
    assert params == picks
    assert assignments == {
        "args.learning_rate": 1e-3,
        "loss": {
            "type": "MatryoshkaLoss",
            "kwargs": {"matryoshka_dims": [32, 16, 8]},
            "wrap": {"type": "MultipleNegativesRankingLoss"},
        },
    }
    with pytest.raises(SearchSpaceError, match="loss\\[cmnrl\\].kwargs.mini_batch_size"):
        space.resolve_config({"args.learning_rate": 1e-3, "loss": "cmnrl"})
    with pytest.raises(SearchSpaceError, match="'huber' is not one of the options"):
        space.resolve_config({"args.learning_rate": 1e-3, "loss": "huber"})


def test_a_set_option_patches_the_config_root():
    space = SearchSpace(LOSS_SPACE)
    assignments, params = space.resolve_config(
        {"args.learning_rate": 1e-4, "loss": "cosent", "loss[cosent].loss.kwargs.scale": 25.0}
    )
    assert assignments == {
        "args.learning_rate": 1e-4,
        "loss": {"type": "CoSENTLoss", "kwargs": {"scale": 25.0}},
        "train_data": {"scored": {"path": "scored.csv"}},
    }
    base = {
        "args": {"learning_rate": 1.0, "seed": 3},
        "train_data": {"pairs": {"path": "p.csv"}},
        "loss": None,
    }
    patched = apply_assignments(base, assignments)
    assert patched["args"] == {"learning_rate": 1e-4, "seed": 3}
    assert patched["train_data"] == {"scored": {"path": "scored.csv"}}  # the section is replaced
    assert base["args"]["learning_rate"] == 1.0 and "scored" not in base["train_data"]  # input untouched


def test_optuna_define_by_run_suggests_exactly_the_parameters_a_trial_resolves():
    space = SearchSpace(LOSS_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    define = space.optuna_define_by_run()
    seen_losses = set()
    for _ in range(24):
        trial = study.ask()
        define(trial)
        assignments, params = space.resolve_config(trial.params)
        assert params == trial.params  # same names, same conditions
        seen_losses.add(trial.params["loss"])
        for name, value in trial.params.items():
            assert space.distributions[name].contains(value)
        dists = {
            k: optuna.distributions.json_to_distribution(v)
            for k, v in space.distributions_json(params).items()
        }
        assert dists == trial.distributions
        study.tell(trial, 0.0)
    assert seen_losses == {"mnrl", "cmnrl", "matryoshka", "cosent"}


def test_structural_variants_enumerate_every_active_categorical_combination():
    space = SearchSpace({**LOSS_SPACE, "model.pooling": {"choice": ["mean", "cls"]}})
    variants = space.structural_variants()
    combos = {
        (
            p["loss"],
            p.get("loss[cmnrl].kwargs.mini_batch_size"),
            p.get("loss[matryoshka].kwargs.matryoshka_dims"),
            p["model.pooling"],
        )
        for _, p in variants
    }
    expected = set()
    for pooling in ("mean", "cls"):
        expected |= {("mnrl", None, None, pooling), ("cosent", None, None, pooling)}
        expected |= {("cmnrl", size, None, pooling) for size in (4, 8)}
        expected |= {("matryoshka", None, dims, pooling) for dims in ("two", "three")}
    assert combos == expected and len(variants) == len(expected)
    for _, params in variants:  # numeric parameters sit at their low end
        assert params["args.learning_rate"] == 1e-5
    assert len(space.structural_variants(limit=3)) == 3


def test_tune_param_space_for_the_grid_searcher():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = SearchSpace(
        {
            "a": {"grid": [1, 2, 3]},
            "b": {"choice": ["x", "y"]},
            "c": {"loguniform": [1e-4, 1e-1]},
            "d": {"int": [2, 10], "step": 2},
            "e": {"grid": {"p": {"k": {"grid": [5, 6]}}, "q": 0}},
        }
    )
    flat = space.tune_param_space()
    assert flat["a"] == {"grid_search": [1, 2, 3]}
    assert isinstance(flat["b"], Categorical) and flat["b"].categories == ["x", "y"]
    assert isinstance(flat["c"], Float) and (flat["c"].lower, flat["c"].upper) == (1e-4, 1e-1)
    assert isinstance(flat["d"], Integer) and (flat["d"].lower, flat["d"].upper) == (2, 10)
    assert flat["e"] == {"grid_search": ["p", "q"]} and flat["e[p].k"] == {"grid_search": [5, 6]}
    assert space.grid_size() == 3 * 2 * 2


# ------------------------------------------------------------------------------------------ settings / config


def test_tune_settings_defaults_shorthands_and_unknown_keys():
    settings = TuneSettings.model_validate({"scheduler": "median"})
    assert settings.scheduler.type == "median" and settings.num_samples == 10
    assert settings.searcher_name() == "tpe" and settings.searcher_name(multi_objective=True) == "nsga2"
    assert TuneSettings.model_validate({"scheduler": None}).scheduler.type == "none"
    assert not settings.reuse() and TuneSettings.model_validate({"scheduler": "none"}).reuse()
    assert TuneSettings.model_validate({"scheduler": "asha", "reuse_actors": True}).reuse()
    with pytest.raises(SearchSpaceError, match="mapping of dotted keys"):
        SearchSpace(["args.learning_rate"])
    with pytest.raises(ValueError, match="num_sampels"):
        TuneSettings.model_validate({"num_sampels": 3})


def test_load_sweep_names_bad_keys(tmp_path, tiny_bert_dir):
    from raystx.tune.spec import load_sweep

    (tmp_path / "pairs.csv").write_text("anchor,positive\na,b\n")
    raw = {
        "model": {"name_or_path": str(tiny_bert_dir)},
        "train_data": {"pairs": {"path": "pairs.csv"}},
        "loss": {"type": "MultipleNegativesRankingLoss"},
        "search": {"args.learning_rate": {"loguniform": [1e-5, 1e-3]}},
        "tune": {"num_samples": 4, "scheduler": {"type": "asha", "grace_period": 2}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_sweep(path, ["tune.num_samples=5"])
    assert spec.settings.num_samples == 5 and spec.settings.scheduler.grace_period == 2
    assert spec.base.train_data["pairs"].path == str(tmp_path / "pairs.csv")  # relative to the sweep file
    assert spec.default_name() == "sweep"
    with pytest.raises(ConfigError, match="scheduler.grace_perod"):
        load_sweep(path, ["tune.scheduler.grace_perod=1"])
    with pytest.raises(ConfigError, match=r"args\.lr: loguniform needs low > 0"):
        load_sweep(path, ["search={'args.lr': {loguniform: [0, 1]}}"])
    with pytest.raises(ConfigError, match="modle"):
        load_sweep(path, ["modle.x=1"])


def test_load_sweep_expands_environment_references_like_load_config(tmp_path, tiny_bert_dir, monkeypatch):
    """`raystx tune` read `${DATA}/pairs.csv` literally and failed with DatasetFileNotFoundError (issue 18)."""
    from raystx.config import load_config
    from raystx.tune.spec import load_sweep

    data = tmp_path / "data"
    data.mkdir()
    (data / "pairs.csv").write_text("anchor,positive\na,b\n")
    raw = {
        "model": {"name_or_path": "${MODEL}"},
        "train_data": {"pairs": {"path": "${DATA}/pairs.csv"}},
        "loss": {"type": "MultipleNegativesRankingLoss"},
        "args": {"output_dir": "${DATA}/out", "per_device_train_batch_size": "${BATCH:-4}"},
        "search": {"args.learning_rate": {"grid": [1e-5, 1e-4]}},
        "tune": {"num_samples": 1, "storage_path": "${SWEEPS}", "name": "env"},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MODEL", str(tiny_bert_dir))
    monkeypatch.setenv("DATA", str(data))
    monkeypatch.setenv("SWEEPS", str(tmp_path / "sweeps"))
    spec = load_sweep(path)
    assert spec.base.train_data["pairs"].path == str(data / "pairs.csv")
    assert spec.base.model.name_or_path == str(tiny_bert_dir)
    assert spec.base.args["per_device_train_batch_size"] == 4  # a whole-value reference keeps its YAML type
    assert spec.default_storage() == str(tmp_path / "sweeps")
    trial = spec.experiment({"args.learning_rate": 1e-4})  # what a trial's config is built from
    assert trial.train_data["pairs"].path == str(data / "pairs.csv") and trial.args["learning_rate"] == 1e-4
    # the same file minus its sweep sections reads identically through the training loader
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({k: v for k, v in raw.items() if k not in ("search", "tune")}))
    assert load_config(plain).train_data == spec.base.train_data
    monkeypatch.delenv("DATA")
    with pytest.raises(ConfigError, match="needs the environment variable DATA, which is not set"):
        load_sweep(path)


# ------------------------------------------------------------------------------------------ objective / resources


def test_objective_defaults_to_the_evaluators_primary_metric_and_direction():
    evaluator = SimpleNamespace(primary_metric="dev_spearman_cosine", name="dev", greater_is_better=True)
    assert resolve_objective(None, None, evaluator) == Objective(("eval_dev_spearman_cosine",), ("max",))
    loss_like = SimpleNamespace(primary_metric="mse", name="", greater_is_better=False)
    assert resolve_objective(None, None, loss_like) == Objective(("eval_mse",), ("min",))
    both = resolve_objective(["full_spearman", "eval_dim8_spearman"], "maximize", None)
    assert both.metrics == ("eval_full_spearman", "eval_dim8_spearman") and both.modes == ("max", "max")
    assert resolve_objective("eval_loss", None, None).modes == ("min",)
    with pytest.raises(ValueError, match="no metric"):
        resolve_objective(None, None, None)
    with pytest.raises(ValueError, match="2 mode"):
        resolve_objective(["a", "b", "c"], ["max", "min"], None)
    with pytest.raises(ValueError, match="upward"):
        resolve_objective("a", "upward", None)


def test_max_concurrent_trials_from_free_resources():
    from ray.train import ScalingConfig

    two_cpu_workers = trial_resources(
        ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}), {"CPU": 0.25}
    )
    assert two_cpu_workers == {"CPU": 2.25}
    assert derive_max_concurrent(two_cpu_workers, {"CPU": 4.0}) == 1
    assert derive_max_concurrent(two_cpu_workers, {"CPU": 9.0}) == 4
    assert derive_max_concurrent(two_cpu_workers, {"CPU": 1.0}) == 1  # never below one
    gpu = trial_resources(ScalingConfig(num_workers=1, use_gpu=True), {"CPU": 1})
    assert gpu["GPU"] == 1
    assert derive_max_concurrent(gpu, {"CPU": 64.0, "GPU": 3.0}) == 3  # the GPUs limit
    with pytest.raises(ValueError, match="GPU: needs 1, cluster has 0"):
        check_fits(gpu, {"CPU": 64.0})


# ------------------------------------------------------------------------------------------ reports / trial args


def test_only_evaluations_reach_tune_and_the_last_one_waits_for_the_saved_model():
    assert tune_result({"step": 3, "loss": 1.0, "done": False}) is None  # a log-only report
    assert tune_result({"step": 8, "eval_dev_spearman_cosine": 0.5, "done": True}) is None  # the final one
    result = tune_result(
        {"step": 4, "eval_a": 0.25, "eval_b": 0.5, "done": False}, lambda m: [m["eval_a"], 2.0]
    )
    assert result == {
        "step": 4,
        "eval_a": 0.25,
        "eval_b": 0.5,
        "train_done": False,
        "objective_0": 0.25,
        "objective_1": 2.0,
    }
    history = [
        {"step": 2, "eval_a": 0.1},
        {"step": 3, "loss": 2.0},
        {"step": 4, "eval_a": 0.3, "done": True},
        {"step": 4, "loss": 1.0},
    ]
    assert final_result(history, lambda m: m["eval_a"] * 2) == {
        "step": 4,
        "eval_a": 0.3,
        "train_done": True,
        "objective": 0.6,
    }
    assert final_result([{"step": 1, "loss": 1.0}]) is None


def test_trials_evaluate_periodically_and_save_only_at_the_end_unless_asked():
    from raystx.train.args import IntervalStrategy, SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments()
    prepare_args_for_sweep(args, None, save_strategy_given=False)
    assert args.eval_strategy is IntervalStrategy.STEPS and args.eval_steps == 0.1
    assert args.save_strategy is IntervalStrategy.NO
    args = SentenceTransformerTrainingArguments(eval_strategy="steps", eval_steps=5, save_steps=10)
    prepare_args_for_sweep(args, 2, save_strategy_given=True)
    assert args.eval_steps == 2 and args.save_strategy is IntervalStrategy.STEPS and args.save_steps == 10
    args = SentenceTransformerTrainingArguments(
        eval_strategy="steps", eval_steps=4, save_steps=8, load_best_model_at_end=True
    )
    prepare_args_for_sweep(args, None, save_strategy_given=False)
    assert args.save_strategy is IntervalStrategy.STEPS and args.save_steps == 4
    args.validate()


# ------------------------------------------------------------------------------------------ results


def _row(trial_id: str, status: str, **metrics: float) -> TrialRow:
    return TrialRow(
        trial_id=trial_id,
        status=status,
        params={"lr": float(len(trial_id))},
        metrics=dict(metrics),
        best=dict(metrics),
        steps=8 if status == COMPLETED else 2,
        evaluations=4,
        time_s=1.0,
        trial_dir="/nowhere",
        model_path="/nowhere/model" if status == COMPLETED else None,
    )


def test_best_trial_and_pareto_front_against_brute_force():
    rows = [
        _row("a", COMPLETED, f=0.8, t=0.2),
        _row("b", COMPLETED, f=0.5, t=0.6),
        _row("c", COMPLETED, f=0.4, t=0.5),  # dominated by b
        _row("d", STOPPED, f=0.9, t=0.9),  # stopped trials have no model: never best, never on the front
        _row("e", COMPLETED, f=0.8, t=0.2),  # equal to a: neither dominates
        _row("f", COMPLETED, f=0.7, t=0.7),
    ]
    maximize = Objective(("f", "t"), ("max", "max"))
    assert best_row(rows, maximize).trial_id == "a"
    assert best_row(rows, Objective(("f",), ("min",))).trial_id == "c"
    front = {r.trial_id for r in pareto_front(rows, maximize)}
    assert front == {"a", "e", "f"}
    mixed = Objective(("f", "t"), ("max", "min"))
    assert {r.trial_id for r in pareto_front(rows, mixed)} == {"a", "e"}


def test_results_table_files(tmp_path):
    rows = [_row("a", COMPLETED, f=0.5), _row("bb", STOPPED, f=0.1)]
    csv_path, json_path = write_table(rows, tmp_path)
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0] == "trial_id,status,steps,evaluations,time_s,param.lr,metric.f,best.f,model_path,error"
    assert lines[1].startswith("a,COMPLETED,8,4,1.0,1.0,0.5,0.5,/nowhere/model")
    assert [r["trial_id"] for r in json.loads(Path(json_path).read_text())] == ["a", "bb"]


def test_plots_replay_the_trials_into_an_optuna_study(tmp_path):
    pytest.importorskip("matplotlib")
    from raystx.tune.plots import build_study, write_plots

    dist = optuna.distributions.distribution_to_json(
        optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    )
    rows = []
    for i, value in enumerate([0.2, 0.5, 0.3, 0.1]):
        row = _row(f"t{i}", COMPLETED if i < 3 else STOPPED, score=value, other=1 - value)
        row.params = {"lr": 10 ** -(i + 1)}
        row.distributions = {"lr": dist}
        row.history = [value / 2, value]
        rows.append(row)
    study = build_study(rows, Objective(("score",), ("max",)))
    states = [t.state for t in study.trials]
    assert (
        states.count(optuna.trial.TrialState.COMPLETE) == 3
        and states.count(optuna.trial.TrialState.PRUNED) == 1
    )
    assert study.best_trial.params == {"lr": 1e-2} and study.best_value == 0.5
    plots = write_plots(rows, Objective(("score",), ("max",)), tmp_path / "single")
    assert all(
        (tmp_path / "single" / f"{n}.png").is_file() for n in ("optimization_history", "param_importances")
    ), plots
    multi = write_plots(rows, Objective(("score", "other"), ("max", "max")), tmp_path / "multi")
    assert (tmp_path / "multi" / "pareto_front.png").is_file(), multi


# ------------------------------------------------------------------------------------------ hyperparameter_search pieces


def test_hp_spaces_in_every_style_become_the_same_search_space():
    from ray import tune

    from raystx.tune.hpo import FunctionSpace, as_space

    tune_style = as_space(
        lambda trial: {
            "learning_rate": tune.loguniform(1e-5, 1e-3),
            "num_train_epochs": tune.randint(1, 4),
            "seed": tune.choice([1, 2]),
            "warmup_ratio": tune.uniform(0.0, 0.2),
            "per_device_train_batch_size": tune.grid_search([8, 16]),
        }
    )
    assert tune_style.describe() == {
        "learning_rate": "loguniform[1e-05, 0.001]",
        "num_train_epochs": "int[1, 3]",
        "seed": "choice[1, 2]",
        "warmup_ratio": "uniform[0.0, 0.2]",
        "per_device_train_batch_size": "grid[8, 16]",
    }
    raystx_style = as_space({"learning_rate": {"loguniform": [1e-5, 1e-3]}})
    assert raystx_style.describe() == {"learning_rate": "loguniform[1e-05, 0.001]"}
    default = as_space(None)
    assert set(default.distributions) == {
        "learning_rate",
        "num_train_epochs",
        "seed",
        "per_device_train_batch_size",
    }

    def optuna_style(trial):
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)}

    space = as_space(optuna_style)
    assert isinstance(space, FunctionSpace)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    trial = study.ask()
    constants = space.optuna_define_by_run()(trial)
    config = {**trial.params, **constants}
    assignments, params = space.resolve_config(config)
    assert assignments == params == trial.params
    assert space.distributions_json(params, config) == {
        "learning_rate": optuna.distributions.distribution_to_json(trial.distributions["learning_rate"])
    }


def test_model_init_models_are_rebound_into_the_losses(tiny_bert_dir):
    from raystx.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.tune.hpo import _rebind_model

    old, new = SentenceTransformer(str(tiny_bert_dir)), SentenceTransformer(str(tiny_bert_dir))
    loss = MatryoshkaLoss(old, MultipleNegativesRankingLoss(old), [32, 8])
    rebound = _rebind_model({"train": loss}, old, new)["train"]
    assert rebound.model is new and rebound.loss.model is new
    assert all(m is not old for m in rebound.modules())


def test_searchers_and_schedulers_are_built_as_asked():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    from raystx.tune.searchers import build_scheduler, build_searcher
    from raystx.tune.settings import SchedulerSettings

    space = SearchSpace({"args.learning_rate": {"loguniform": [1e-5, 1e-3]}})
    single = Objective(("eval_x",), ("max",))
    multi = Objective(("eval_x", "eval_y"), ("max", "min"))
    tpe = build_searcher("tpe", space, single, seed=4)
    assert isinstance(tpe, OptunaSearch) and isinstance(tpe._sampler, optuna.samplers.TPESampler)
    nsga = build_searcher("nsga2", space, multi, seed=4)
    assert isinstance(nsga._sampler, optuna.samplers.NSGAIISampler)
    assert nsga.metric == ["eval_x", "eval_y"] and nsga.mode == ["max", "min"]
    assert isinstance(build_searcher("random", space, single, 1)._sampler, optuna.samplers.RandomSampler)
    assert isinstance(build_searcher("grid", space, single, 1, max_concurrent=2), BasicVariantGenerator)
    with pytest.raises(ValueError, match="hyperband"):
        build_searcher("hyperband", space, single, 1)
    asha = build_scheduler(
        SchedulerSettings(type="asha", grace_period=2, reduction_factor=2, max_t=16), single
    )
    assert isinstance(asha, ASHAScheduler) and asha.metric == "eval_x" and asha._mode == "max"
    median = build_scheduler(SchedulerSettings(type="median", metric="eval_y"), multi)
    assert isinstance(median, MedianStoppingRule) and median._metric == "eval_y" and median._mode == "min"
    assert isinstance(build_scheduler(SchedulerSettings(type="none"), single), FIFOScheduler)


def test_an_optuna_storage_url_persists_the_study_for_the_dashboard(tmp_path):
    from raystx.tune.searchers import build_searcher

    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    space = SearchSpace(LOSS_SPACE)
    searcher = build_searcher("tpe", space, Objective(("eval_x",), ("max",)), 5, url, "my-sweep")
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(3)}
    for i, (trial_id, config) in enumerate(configs.items()):
        assert space.resolve_config(config)[1] == config  # the trial resolves what the study suggested
        searcher.on_trial_complete(trial_id, {"eval_x": float(i), "training_iteration": 1})
    study = optuna.load_study(study_name="my-sweep", storage=url)
    assert [t.params for t in study.trials] == list(configs.values())
    assert [t.value for t in study.trials] == [0.0, 1.0, 2.0]
    assert study.best_trial.params == configs["t2"]
