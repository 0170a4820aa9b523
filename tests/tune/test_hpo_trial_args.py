"""``hyperparameter_search`` hands the trial to ``model_init(trial)`` and to loss factories that take it, as
transformers' ``Trainer.call_model_init(trial)`` does (no Ray: the trial factory is called directly)."""

from __future__ import annotations

import datasets
import pytest

from raystx.data.sources import prepare_sources
from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer
from raystx.train.trial_call import TrialParams, build_loss, call_model_init
from raystx.tune.hpo import TrainerFactory


def _data() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"anchor": ["a b", "c d"], "positive": ["b a", "d c"]})


def test_model_init_and_loss_factory_receive_the_trial(tiny_bert_dir, tmp_path):
    seen_inits: list = []
    seen_losses: list = []

    def model_init(trial):
        seen_inits.append(trial)
        return SentenceTransformer(str(tiny_bert_dir))

    def loss_factory(model, trial):
        seen_losses.append((model, trial))
        scale = 20.0 if trial is None else trial["scale"]
        return MultipleNegativesRankingLoss(model, scale=scale)

    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1)
    trainer = SentenceTransformerTrainer(
        args=args, model_init=model_init, train_dataset=_data(), loss=loss_factory
    )
    assert seen_inits == [None]  # built outside a search: transformers passes trial=None

    sources = prepare_sources(_data(), staging_dir=str(tmp_path / "staging"))
    factory = TrainerFactory(trainer=trainer, sources=sources)
    trial_trainer = factory({"learning_rate": 1e-3}, {"learning_rate": 1e-3, "scale": 7.0})
    trial = seen_inits[-1]
    assert isinstance(trial, TrialParams) and trial == {"learning_rate": 1e-3, "scale": 7.0}
    assert trial.params == {"learning_rate": 1e-3, "scale": 7.0}  # the optuna.Trial spelling works too
    assert trial_trainer.model is not trainer.model and trial_trainer.args.learning_rate == 1e-3

    losses = trial_trainer._losses_by_dataset(["train"])
    model, passed = seen_losses[-1]
    assert model is trial_trainer.model and passed is trial
    assert losses["train"].scale == 7.0 and losses["train"].model is trial_trainer.model


def test_trial_call_forms():
    calls = []
    assert call_model_init(lambda: calls.append("none") or "m0") == "m0"
    assert call_model_init(lambda trial: calls.append(trial) or "m1", {"x": 1}) == "m1"
    assert calls == ["none", {"x": 1}]
    with pytest.raises(ValueError, match="model_init .* takes 2 arguments"):
        call_model_init(lambda a, b: None)
    with pytest.raises(ValueError, match="returned None"):
        call_model_init(lambda: None)
    # a loss class or a one-argument factory gets the model only; (model, trial) and a `trial` keyword get both
    assert build_loss(lambda model: ("model", model), "M", {"t": 1}) == ("model", "M")
    assert build_loss(lambda model, trial: (model, trial), "M", {"t": 1}) == ("M", {"t": 1})
    assert build_loss(lambda model, *, trial=None: (model, trial), "M", 5) == ("M", 5)
    assert build_loss(lambda model, scale=2.0: (model, scale), "M", 5) == ("M", 2.0)


def test_default_loss_is_cosent_as_in_sentence_transformers(tiny_bert_dir, tmp_path):
    from sentence_transformers import SentenceTransformer as STModel
    from sentence_transformers import SentenceTransformerTrainer as STTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as STArgs

    data = datasets.Dataset.from_dict({"s1": ["a b", "c d"], "s2": ["b a", "d c"], "score": [0.5, 0.1]})
    st_model = STModel(str(tiny_bert_dir), device="cpu")
    st_trainer = STTrainer(model=st_model, args=STArgs(output_dir=str(tmp_path / "st")), train_dataset=data)
    model = SentenceTransformer(str(tiny_bert_dir))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out")),
        train_dataset=data,
    )
    assert type(st_trainer.loss).__name__ == type(trainer.loss).__name__ == "CoSENTLoss"
    assert isinstance(trainer.loss, CoSENTLoss) and trainer.loss.model is model
    assert trainer.loss.scale == st_trainer.loss.scale


def test_search_without_evaluator_minimizes_the_eval_loss_of_the_eval_dataset(
    tiny_bert_dir, tmp_path, monkeypatch
):
    """transformers' default objective without other metrics is ``eval_loss``; trials get the staged eval data."""
    import raystx.ray_init
    import raystx.tune.sweep
    from raystx.tune import hpo

    captured = {}

    class Done(Exception):
        pass

    def fake_execute(**kwargs):
        captured.update(kwargs)
        raise Done

    monkeypatch.setattr(raystx.ray_init, "ensure_ray", lambda: None)
    monkeypatch.setattr(raystx.tune.sweep, "execute", fake_execute)
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1)
    trainer = SentenceTransformerTrainer(
        args=args,
        model_init=lambda: SentenceTransformer(str(tiny_bert_dir)),
        train_dataset=_data(),
        eval_dataset=_data(),
        loss=MultipleNegativesRankingLoss,
    )
    with pytest.raises(Done):
        hpo.hyperparameter_search(
            trainer, hp_space={"learning_rate": {"loguniform": [1e-5, 1e-3]}}, n_trials=1
        )
    objective = captured["objective"]
    assert objective.metrics == ("eval_loss",) and objective.modes == ("min",)
    trial_trainer = captured["factory"]({"learning_rate": 1e-4}, {"learning_rate": 1e-4})
    staged = trial_trainer.eval_dataset  # the prepared source, shipped as is (no worker-side copy per trial)
    assert not isinstance(staged, dict)  # one dataset stays one: eval_loss, not eval_<name>_loss
    assert staged.take(range(staged.num_rows))["anchor"] == _data()["anchor"]

    trainer.eval_dataset = {"a": _data(), "b": _data()}
    with pytest.raises(ValueError, match="pass compute_objective"):
        hpo.hyperparameter_search(
            trainer, hp_space={"learning_rate": {"loguniform": [1e-5, 1e-3]}}, n_trials=1
        )
    trainer.eval_dataset = None
    with pytest.raises(ValueError, match="needs an evaluator or an eval_dataset"):
        hpo.hyperparameter_search(trainer, n_trials=1)
