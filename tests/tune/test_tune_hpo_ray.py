"""``hyperparameter_search`` in the transformers style, multi-objective: quality at the full dimension vs at a
truncated Matryoshka dimension, searched with NSGA-II; the returned runs are the Pareto front of the trials."""

from __future__ import annotations

import datasets
import pytest
from conftest import make_sentences
from tune_helpers import read_scored, write_scored

from raystx.evaluation import EmbeddingSimilarityEvaluator, SequentialEvaluator
from raystx.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.tune import BestRun, hyperparameter_search
from raystx.tune.results import COMPLETED

pytestmark = pytest.mark.ray


def test_transformers_style_multi_objective_search_returns_the_pareto_front(
    ray_session, tiny_bert_dir, tmp_path
):
    s1, s2, scores = read_scored(write_scored(tmp_path / "dev.csv", n=24, seed=9))
    evaluator = SequentialEvaluator(
        [
            EmbeddingSimilarityEvaluator(s1, s2, scores, name="full"),
            EmbeddingSimilarityEvaluator(s1, s2, scores, name="dim8", truncate_dim=8),
        ]
    )

    def model_init(
        trial,
    ):  # transformers' form: the trial (None when the trainer is built, then each trial's)
        if trial is not None and not (
            1e-5 <= trial["learning_rate"] <= 1e-2 and "learning_rate" in trial.params
        ):
            raise AssertionError(f"model_init got {trial!r} instead of the trial's hyperparameters")
        model = SentenceTransformer(str(tiny_bert_dir))
        model.max_seq_length = 16
        return model

    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=8,
        eval_strategy="steps",
        eval_steps=2,
        logging_steps=2,
        seed=3,
    )
    trainer = SentenceTransformerTrainer(
        args=args,
        model_init=model_init,
        train_dataset=datasets.Dataset.from_dict(
            {"anchor": make_sentences(32, 1), "positive": make_sentences(32, 51)}
        ),
        loss=lambda model: MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), [32, 8]),
        evaluator=evaluator,
    )

    def hp_space(trial):
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True)}

    def compute_objective(metrics):
        return [metrics["eval_full_spearman_cosine"], metrics["eval_dim8_spearman_cosine"]]

    search = getattr(trainer, "hyperparameter_search", None)
    kwargs = dict(
        hp_space=hp_space,
        compute_objective=compute_objective,
        n_trials=2,
        direction=["maximize", "maximize"],
        backend="ray",
        scheduler="none",
        max_concurrent_trials=2,
        seed=7,
    )
    best = search(**kwargs) if search is not None else hyperparameter_search(trainer, **kwargs)

    assert isinstance(best, list) and best and all(isinstance(b, BestRun) for b in best)
    summary = best[0].run_summary
    assert summary.objective.metrics == ("objective_0", "objective_1")
    rows = summary.rows
    assert len(rows) == 2 and all(r.status == COMPLETED for r in rows)
    for row in rows:
        assert 1e-5 <= row.params["learning_rate"] <= 1e-2
        # The objectives are the two evaluators' primary metrics of the trial's final model.
        assert row.metrics["objective_0"] == row.metrics["eval_full_spearman_cosine"]
        assert row.metrics["objective_1"] == row.metrics["eval_dim8_spearman_cosine"]
        assert row.steps == 4

    # The returned runs are exactly the non-dominated trials.
    def dominated(row):
        mine = (row.metrics["objective_0"], row.metrics["objective_1"])
        return any(
            o is not row
            and o.metrics["objective_0"] >= mine[0]
            and o.metrics["objective_1"] >= mine[1]
            and (o.metrics["objective_0"], o.metrics["objective_1"]) != mine
            for o in rows
        )

    assert {b.run_id for b in best} == {r.trial_id for r in rows if not dominated(r)}
    for run in best:
        row = next(r for r in rows if r.trial_id == run.run_id)
        assert run.objective == [row.metrics["objective_0"], row.metrics["objective_1"]]
        assert run.hyperparameters == row.params
    assert "pareto_front" in summary.plots
