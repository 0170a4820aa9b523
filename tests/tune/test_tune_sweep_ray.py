"""Sweeps on the shared local Ray (tiny BERT): ASHA stops trials, no placement group leaks, the exported best
model reproduces its metric in sentence-transformers, and an interrupted sweep resumes without re-running."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from ray.tune import Callback
from tune_helpers import read_scored, sweep_config
from typer.testing import CliRunner

from raystx.cli import app
from raystx.tune import run_sweep
from raystx.tune.results import COMPLETED, STOPPED, UNFINISHED

pytestmark = pytest.mark.ray


def _live_groups(ray, exclude: set[str]) -> list[dict]:
    table = ray.util.placement_group_table()
    return [g for pid, g in table.items() if pid not in exclude and g["state"] != "REMOVED"]


@pytest.mark.slow  # CI budget: ~3 min; Tune + Optuna on Ray stays in CI (test_tune_hpo_ray), the CLI's config path in Ray-free tests
def test_cli_loss_x_lr_sweep_with_asha_stops_trials_frees_groups_and_exports_a_reproducible_model(
    ray_session, tiny_bert_dir, tmp_path
):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    ray = ray_session
    before = set(ray.util.placement_group_table())
    raw = sweep_config(tmp_path, tiny_bert_dir)
    # Two losses with different data (pairs, scored pairs) x two learning rates keep the sweep's cost in CI at 4
    # trials; the cached loss is swept by the slow tests that use sweep_config as is.
    del raw["search"]["loss"]["grid"]["cmnrl"]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")

    outcome = CliRunner().invoke(app, ["tune", str(path), "--set", "tune.seed=3"])

    assert outcome.exit_code == 0, outcome.output
    experiment = tmp_path / "sweeps" / "losses"
    rows = json.loads((experiment / "trials.json").read_text())
    assert len(rows) == 4
    combos = {(r["params"]["loss"], r["params"]["args.learning_rate"]) for r in rows}
    assert combos == {(loss, lr) for loss in ("mnrl", "cosent") for lr in (1e-5, 5e-3)}
    statuses = [r["status"] for r in rows]
    assert set(statuses) <= {COMPLETED, STOPPED}
    assert statuses.count(STOPPED) >= 1, statuses  # ASHA (grace period 1, 8 evaluations) stopped some
    assert statuses.count(COMPLETED) >= 1
    for row in rows:
        assert row["evaluations"] >= 1
        if row["status"] == COMPLETED:
            assert row["steps"] == 8 and row["evaluations"] == 8 and Path(row["model_path"]).is_dir()
        else:
            assert row["steps"] < 8 and row["model_path"] is None
    sweep = json.loads((experiment / "sweep.json").read_text())
    assert sweep["total_steps"] == sum(r["steps"] for r in rows)
    assert "trial-steps in total" in outcome.output

    # No placement group of the sweep is left (stopped trials' Train groups included).
    deadline = time.monotonic() + 15
    while _live_groups(ray, before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _live_groups(ray, before) == []

    # The results table lists every trial.
    header = (experiment / "trials.csv").read_text().splitlines()[0]
    assert header.startswith("trial_id,status,steps") and "param.loss" in header

    # The best completed trial, by the evaluator's primary metric (default objective, maximized).
    metric = "eval_dev_spearman_cosine"
    assert sweep["objective"] == {"metrics": [metric], "modes": ["max"]}
    completed = [r for r in rows if r["status"] == COMPLETED]
    best = next(r for r in rows if r["trial_id"] == sweep["best_trial"])
    assert best["metrics"][metric] == max(r["metrics"][metric] for r in completed)

    # The exported model loads in sentence-transformers and reproduces the trial's final metrics.
    exported = experiment / "best_model"
    model = SentenceTransformer(str(exported), device="cpu")
    s1, s2, scores = read_scored(tmp_path / "dev.csv")
    oracle = EmbeddingSimilarityEvaluator(s1, s2, scores, name="dev", write_csv=False)(model)
    assert oracle["dev_spearman_cosine"] == pytest.approx(best["metrics"][metric], abs=1e-6)
    # Pearson on a collapsed tiny model (cosines all near 1) amplifies the ~1e-7 float differences between
    # raystx's packed forward and the Hugging Face one that sentence-transformers runs.
    assert oracle["dev_pearson_cosine"] == pytest.approx(best["metrics"]["eval_dev_pearson_cosine"], abs=1e-4)
    card = (exported / "README.md").read_text()
    assert "## Hyperparameter search" in card and best["trial_id"] in card and "`loss`" in card

    # Plots: optimization history and parameter importance as PNG (matplotlib is a dev dependency).
    pytest.importorskip("matplotlib")
    assert (experiment / "plots" / "optimization_history.png").stat().st_size > 1000
    importances = experiment / "plots" / "param_importances.png"
    if not importances.exists():
        # fANOVA cannot rank parameters when the finished trials' metrics have no variance (tiny models can tie);
        # the summary must then say why the plot was skipped.
        summary = "\n".join(p.read_text() for p in experiment.glob("summary*"))
        assert "plot param_importances: skipped:" in summary, summary
    else:
        assert importances.stat().st_size > 1000


class _InterruptAfter(Callback):
    """Send the driver SIGUSR1 (Tune's graceful stop) once ``n`` trials completed; fires once per marker file."""

    def __init__(self, n: int, marker: str) -> None:
        self.n = n
        self.marker = marker
        self.done = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        if self.done >= self.n and not os.path.exists(self.marker):
            Path(self.marker).write_text("fired")
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.mark.slow  # ~130 s; the ASHA CLI sweep above keeps a full sweep in the CI suite
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_session, tiny_bert_dir, tmp_path):
    raw = sweep_config(tmp_path, tiny_bert_dir)
    raw["args"]["max_steps"] = 2
    raw["search"] = {"args.learning_rate": {"loguniform": [1e-5, 1e-2]}}
    raw["tune"].update(
        searcher="tpe",
        num_samples=3,
        scheduler="none",
        eval_steps=1,
        max_concurrent_trials=2,
        name="resumable",
    )
    marker = str(tmp_path / "interrupted")

    first = run_sweep(raw, callbacks=[_InterruptAfter(2, marker)])

    assert Path(marker).exists() and first.interrupted
    done_first = {r.trial_id for r in first.rows if r.status == COMPLETED}
    assert len(done_first) == 2
    assert all(r.status in (COMPLETED, UNFINISHED) for r in first.rows)

    second = run_sweep(raw, resume=True)

    assert not second.interrupted
    assert len(second.rows) == 3 and all(r.status == COMPLETED for r in second.rows)
    assert done_first < {r.trial_id for r in second.rows}
    for row in second.rows:
        attempts = (Path(row.trial_dir) / "attempts.log").read_text().splitlines()
        if row.trial_id in done_first:
            assert len(attempts) == 1  # not re-run
        assert row.steps == 2
    lrs = {r.params["args.learning_rate"] for r in second.rows}
    assert len(lrs) == 3


@pytest.mark.slow
def test_cli_tune_runs_a_sweep_whose_paths_come_from_the_environment(
    ray_session, tiny_bert_dir, tmp_path, monkeypatch
):
    """Issue 18: `raystx tune` read `${DATA}/pairs.csv` literally and failed with DatasetFileNotFoundError."""
    raw = sweep_config(tmp_path, tiny_bert_dir, num_samples=1, scheduler="none", plots=False)
    raw["train_data"]["pairs"]["path"] = "${RAYSTX_TEST_DATA}/pairs.csv"
    raw["evaluator"]["path"] = "${RAYSTX_TEST_DATA}/dev.csv"
    raw["args"]["max_steps"] = 2
    raw["search"] = {"args.learning_rate": {"grid": [1e-3]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("RAYSTX_TEST_DATA", str(tmp_path))

    outcome = CliRunner().invoke(app, ["tune", str(path)])

    assert outcome.exit_code == 0, outcome.output
    rows = json.loads((tmp_path / "sweeps" / "losses" / "trials.json").read_text())
    assert [(r["status"], r["steps"]) for r in rows] == [(COMPLETED, 2)]
