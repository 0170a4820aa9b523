"""The sweep's result files on object storage without a cluster: the results table, the exported best model, the
plots and the default storage locations, written to ``s3://`` (a moto server on localhost) and read back with
boto3, byte for byte what the same call writes to a local folder."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from s3_server import UNIT_BUCKET, bucket_keys

from raystx.tune.objective import Objective
from raystx.tune.results import COMPLETED, STOPPED, TrialRow, export_best, write_table
from raystx.tune.settings import TuneSettings
from raystx.tune.space import SearchSpace
from raystx.tune.spec import SweepSpec


def _read(location: str) -> bytes:
    import boto3

    bucket, key = location[len("s3://") :].split("/", 1)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def _row(trial_id: str, status: str, model_path: str | None, **metrics: float) -> TrialRow:
    return TrialRow(
        trial_id=trial_id,
        status=status,
        params={"lr": 0.01 * len(trial_id)},
        metrics=dict(metrics),
        best=dict(metrics),
        steps=8,
        evaluations=4,
        time_s=1.0,
        trial_dir="s3://b/exp/trial_" + trial_id,
        model_path=model_path,
    )


def test_results_table_on_s3_equals_the_local_one(s3_root, tmp_path):
    rows = [_row("a", COMPLETED, "s3://b/m", f=0.5), _row("bb", STOPPED, None, f=0.1)]
    csv_uri, json_uri = write_table(rows, s3_root)
    local_csv, local_json = write_table(rows, str(tmp_path))
    assert (csv_uri, json_uri) == (f"{s3_root}/trials.csv", f"{s3_root}/trials.json")
    assert _read(csv_uri) == Path(local_csv).read_bytes()
    table = list(csv.DictReader(io.StringIO(_read(csv_uri).decode())))
    assert [(r["trial_id"], r["metric.f"], r["model_path"]) for r in table] == [
        ("a", "0.5", "s3://b/m"),
        ("bb", "0.1", ""),
    ]
    assert json.loads(_read(json_uri)) == json.loads(Path(local_json).read_text())


def test_export_best_copies_the_model_between_buckets_and_adds_the_search_to_its_card(s3_root, tmp_path):
    from raystx.train.storage import copy_tree, write_text

    model = tmp_path / "model"
    model.mkdir()
    (model / "README.md").write_text("# card\n")
    (model / "model.safetensors").write_bytes(bytes(range(256)))
    trial_model = f"{s3_root}/exp/trial_a/model"
    copy_tree(str(model), trial_model)
    target = f"{s3_root}/exp/best_model"
    write_text(f"{target}/stale.txt", "from an earlier export")  # replaced, not merged
    best = _row("a", COMPLETED, trial_model, f=0.75)

    where = export_best(best, target, Objective(("f",), ("max",)), {"lr": "loguniform"}, {"seed": 3}, 2)

    assert where == target
    prefix = target[len(f"s3://{UNIT_BUCKET}/") :]
    assert [k.rsplit("/", 1)[1] for k in bucket_keys(UNIT_BUCKET, prefix + "/")] == [
        "README.md",
        "model.safetensors",
        "sweep_trial.json",
    ]
    assert _read(f"{target}/model.safetensors") == bytes(range(256))
    card = _read(f"{target}/README.md").decode()
    assert card.startswith("# card\n") and "## Hyperparameter search" in card and "best of 2 trials" in card
    assert "- `f`: 0.75" in card and "- `lr`: `0.01`" in card
    assert json.loads(_read(f"{target}/sweep_trial.json"))["model_path"] == trial_model


def test_plots_are_drawn_locally_and_uploaded(s3_root):
    pytest.importorskip("matplotlib")
    import optuna

    from raystx.tune.plots import write_plots

    dist = optuna.distributions.distribution_to_json(
        optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    )
    rows = []
    for i, value in enumerate([0.2, 0.5, 0.3]):
        row = _row(f"t{i}", COMPLETED, None, score=value)
        row.params, row.distributions, row.history = {"lr": 10 ** -(i + 1)}, {"lr": dist}, [value]
        rows.append(row)
    plots = write_plots(rows, Objective(("score",), ("max",)), f"{s3_root}/plots")
    assert plots == {
        "optimization_history": f"{s3_root}/plots/optimization_history.png",
        "param_importances": f"{s3_root}/plots/param_importances.png",
    }
    for where in plots.values():
        assert _read(where).startswith(b"\x89PNG")


def test_default_storage_keeps_uris_and_resolves_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def spec(args: dict, **tune) -> SweepSpec:
        return SweepSpec(
            raw={"args": args},
            base_dir=tmp_path / "cfg",
            space=SearchSpace({"args.learning_rate": {"grid": [1e-4]}}),
            settings=TuneSettings(**tune),
        )

    assert spec({}, storage_path="s3://bucket/sweeps").default_storage() == "s3://bucket/sweeps"
    assert spec({"output_dir": "s3://bucket/runs/out"}).default_storage() == "s3://bucket/runs/sweeps"
    assert spec({}, storage_path="rel").default_storage() == str(tmp_path / "cfg" / "rel")
    assert spec({"output_dir": "runs/out"}).default_storage() == str(tmp_path / "runs" / "sweeps")


def test_trial_actors_get_no_credentials_in_their_runtime_env(monkeypatch):
    """Ray Tune copies the driver's AWS credentials into each trial actor's runtime_env, which Ray logs with its
    values (runtime_env_agent.log); a sweep turns that off, and only while it runs."""
    from ray.tune.execution.class_cache import _ActorClassCache

    from raystx.tune.credentials import CREDENTIAL_ENV_VARS, credentials_stay_on_nodes

    for name in CREDENTIAL_ENV_VARS:
        monkeypatch.setenv(name, f"FAKE-{name}")

    def env_vars(cls: type) -> dict[str, str]:
        return _ActorClassCache().get(cls)._default_options["runtime_env"]["env_vars"]

    assert (
        env_vars(type("Before", (), {}))["AWS_SECRET_ACCESS_KEY"] == "FAKE-AWS_SECRET_ACCESS_KEY"
    )  # Ray's way
    with credentials_stay_on_nodes():
        during = env_vars(type("During", (), {}))
    assert not CREDENTIAL_ENV_VARS & set(during) and during["PL_DISABLE_FORK"] == "1"  # the rest still goes
    assert CREDENTIAL_ENV_VARS <= set(env_vars(type("After", (), {})))  # Ray's list is restored
