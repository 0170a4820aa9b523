"""v2 ``fit()``: the mapping onto the trainer equals sentence-transformers' own fit (oracle), and a v2 script
runs on 2 Ray workers with only its imports changed."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
from conftest import make_sentences
from torch.utils.data import DataLoader

from raystx.data.input_example import InputExample, NoDuplicatesDataLoader, examples_to_columns
from raystx.data.schedule import EpochPlan
from raystx.train.cadence import total_optimizer_steps
from raystx.train.callbacks import TrainerState
from raystx.train.fit import SaveBestModelCallback, ScoreCallback, prepare_fit
from raystx.train.optim import build_scheduler


# ------------------------------------------------------------------------------------------------ oracle
def _st_fit_capture(monkeypatch, tmp_path, st_model, objectives, **kwargs) -> dict:
    """Run sentence-transformers' fit() with its trainer replaced by a recorder; return what it was given."""
    import sentence_transformers.sentence_transformer.trainer as st_trainer_module

    captured: dict = {}

    class RecordingTrainer:
        def __init__(self, **trainer_kwargs):
            captured.update(trainer_kwargs)
            self.callback_handler = types.SimpleNamespace(
                callbacks=list(trainer_kwargs.get("callbacks") or [])
            )

        def add_callback(self, cb):
            self.callback_handler.callbacks.append(cb)

        def train(self, resume_from_checkpoint=None):
            captured["resume_from_checkpoint"] = resume_from_checkpoint

    monkeypatch.setattr(st_trainer_module, "SentenceTransformerTrainer", RecordingTrainer)
    monkeypatch.chdir(tmp_path)
    st_model.fit(train_objectives=objectives, **kwargs)
    return captured


def _lr_curve(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _rows(dataset) -> list[tuple]:
    cols = dataset.column_names
    return [tuple(tuple(v) if isinstance(v, list) else v for v in (row[c] for c in cols)) for row in dataset]


CASES = {
    "one_objective_eval_steps": dict(
        epochs=2,
        scheduler="WarmupLinear",
        warmup_steps=3,
        optimizer_params={"lr": 1e-4},
        weight_decay=0.05,
        evaluation_steps=2,
        max_grad_norm=0.5,
    ),
    "two_objectives_steps_per_epoch_checkpoints": dict(
        epochs=1,
        steps_per_epoch=5,
        scheduler="WarmupCosine",
        warmup_steps=2,
        optimizer_params={"lr": 3e-4, "eps": 1e-7},
        checkpoint_save_steps=3,
        checkpoint_save_total_limit=2,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_prepare_fit_matches_sentence_transformers_fit(case, monkeypatch, tmp_path, tiny_bert_dir):
    import sentence_transformers as st
    from sentence_transformers.sentence_transformer import evaluation as st_evaluation
    from sentence_transformers.sentence_transformer import losses as st_losses

    from raystx.evaluation import EmbeddingSimilarityEvaluator
    from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer

    kwargs = dict(CASES[case])
    two = case.startswith("two")
    anchors, positives = make_sentences(24, 1), make_sentences(24, 2)
    s1, s2, scores = make_sentences(20, 3), make_sentences(20, 4), [i / 19 for i in range(20)]
    if two:
        kwargs["checkpoint_path"] = str(tmp_path / "ckpt")

    def objectives(example_cls, nodup_cls, mnrl, cosent, model):
        pairs = [example_cls(texts=[a, p]) for a, p in zip(anchors, positives)]
        scored = [example_cls(texts=[a, b], label=s) for a, b, s in zip(s1, s2, scores)]
        if not two:
            return [(DataLoader(pairs, shuffle=False, batch_size=4), mnrl(model))]
        return [
            (nodup_cls(pairs, batch_size=4), mnrl(model)),
            (DataLoader(scored, shuffle=False, batch_size=4), cosent(model)),
        ]

    # Oracle: sentence-transformers' fit, up to the trainer call.
    from sentence_transformers.sentence_transformer.datasets import NoDuplicatesDataLoader as STNoDup
    from sentence_transformers.sentence_transformer.readers import InputExample as STInputExample

    st_model = st.SentenceTransformer(str(tiny_bert_dir), device="cpu")
    st_eval = st_evaluation.EmbeddingSimilarityEvaluator(s1, s2, scores) if not two else None
    st_objectives = objectives(
        STInputExample, STNoDup, st_losses.MultipleNegativesRankingLoss, st_losses.CoSENTLoss, st_model
    )
    ref = _st_fit_capture(monkeypatch, tmp_path, st_model, st_objectives, evaluator=st_eval, **kwargs)
    ref_args = ref["args"]

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, scores) if not two else None
    mine = objectives(InputExample, NoDuplicatesDataLoader, MultipleNegativesRankingLoss, CoSENTLoss, model)
    plan = prepare_fit(model, mine, evaluator=evaluator, **kwargs)
    args = plan.args

    # datasets: same names, columns and rows (NoDuplicatesDataLoader shuffles, so compare those as multisets)
    assert list(plan.datasets) == list(ref["train_dataset"])
    for name, ds in plan.datasets.items():
        ref_ds = ref["train_dataset"][name]
        assert ds.column_names == ref_ds.column_names
        if two and name == "_dataset_1":
            assert sorted(_rows(ds)) == sorted(_rows(ref_ds))
        else:
            assert _rows(ds) == _rows(ref_ds)
    assert set(plan.losses) == set(ref["loss"])
    assert all(type(plan.losses[n]).__name__ == type(ref["loss"][n]).__name__ for n in plan.losses)

    # arguments
    for field in (
        "per_device_train_batch_size",
        "num_train_epochs",
        "max_steps",
        "max_grad_norm",
        "save_steps",
    ):
        assert getattr(args, field) == getattr(ref_args, field), field
    for field in ("batch_sampler", "multi_dataset_batch_sampler", "save_strategy", "eval_strategy"):
        assert args.to_dict()[field] == getattr(
            getattr(ref_args, field), "value", getattr(ref_args, field)
        ), field
    if not two:
        assert args.eval_steps == ref_args.eval_steps == 2
    else:
        assert args.save_total_limit == ref_args.save_total_limit == 2
        assert args.output_dir == str(tmp_path / "ckpt") and ref_args.output_dir == str(tmp_path / "ckpt")

    # optimizer: same lr, eps and weight decay on the decayed parameters
    ref_optimizer, ref_scheduler = ref["optimizers"]
    assert args.learning_rate == ref_optimizer.defaults["lr"]
    assert args.adam_epsilon == ref_optimizer.defaults["eps"]
    assert args.weight_decay == max(g["weight_decay"] for g in ref_optimizer.param_groups)

    # schedule: the same learning rate at every step of the run
    sizes = {n: len(ds) for n, ds in plan.datasets.items()}
    epoch_plan = EpochPlan(
        sizes, args.per_device_train_batch_size, 1, args.seed, 0, args.multi_dataset_batch_sampler.value
    )
    total = total_optimizer_steps(len(epoch_plan), args)
    ref_total = ref_scheduler.lr_lambdas[0].keywords.get("num_training_steps", total)
    assert total == ref_total
    ours = build_scheduler(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate), args, total
    )
    theirs_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    theirs = type(st_model)._get_scheduler(
        theirs_opt, scheduler=kwargs["scheduler"], warmup_steps=kwargs["warmup_steps"], t_total=ref_total
    )
    assert _lr_curve(ours, total) == pytest.approx(_lr_curve(theirs, total), rel=1e-12, abs=1e-15)


def test_examples_to_columns_label_rule_and_input_example():
    unlabelled = [InputExample(texts=["a", "b"]), InputExample(texts=["c", "d"], label=0.0)]
    assert examples_to_columns(unlabelled) == {"sentence_0": ["a", "c"], "sentence_1": ["b", "d"]}
    labelled = [InputExample(texts=["a"], label=0), InputExample(texts=["b"], label=1)]
    assert examples_to_columns(labelled) == {"sentence_0": ["a", "b"], "label": [0, 1]}
    vectors = [InputExample(texts=["a"], label=[0.0, 0.0])]
    assert examples_to_columns(vectors)["label"] == [[0.0, 0.0]]
    with pytest.raises(ValueError, match="same number of texts"):
        examples_to_columns([InputExample(texts=["a"]), InputExample(texts=["b", "c"])])
    example = InputExample(guid="g1", texts=["x", "y"], label=0.5)
    assert (example.guid, example.texts, example.label) == ("g1", ["x", "y"], 0.5)
    assert str(example) == "<InputExample> label: 0.5, texts: x; y"


def test_no_duplicates_data_loader_batches_have_distinct_texts():
    texts = [f"text {i}" for i in range(12)]  # pairs (i, i+1) around a cycle: any 2 pairs leave a third
    examples = [InputExample(texts=[texts[i % 12], texts[(i + 1) % 12].upper()]) for i in range(30)]
    loader = NoDuplicatesDataLoader(examples, batch_size=3, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 10
    for batch in batches:
        assert len(batch) == 3
        keys = [t.strip().lower() for ex in batch for t in ex.texts]
        assert len(keys) == len(set(keys))


def test_fit_callbacks_save_best_and_report_primary_metric(tmp_path):
    evaluator = types.SimpleNamespace(primary_metric="dev_spearman_cosine", greater_is_better=True)
    saved: list[str] = []
    model = types.SimpleNamespace(save=lambda path: saved.append(path))
    cb = SaveBestModelCallback(str(tmp_path / "best"), evaluator)
    scores: list[tuple] = []
    score_cb = ScoreCallback(lambda s, e, st: scores.append((s, e, st)), evaluator)
    for step, value in ((2, 0.5), (4, 0.25), (6, 0.75)):
        metrics = {"eval_dev_pearson_cosine": 0.0, "eval_dev_spearman_cosine": value}
        state = TrainerState(global_step=step, epoch=step / 4)
        cb.on_evaluate(None, state, metrics, model=model)
        score_cb.on_evaluate(None, state, metrics, model=model)
    assert saved == [str(tmp_path / "best")] * 2 and cb.best == 0.75
    assert scores == [(0.5, 0.5, 2), (0.25, 1.0, 4), (0.75, 1.5, 6)]
    lower = SaveBestModelCallback("p", types.SimpleNamespace(primary_metric="mse", greater_is_better=False))
    saved.clear()
    for value in (3.0, 4.0, 1.0):
        lower.on_evaluate(None, TrainerState(), {"eval_x_mse": value}, model=model)
    assert len(saved) == 2 and lower.best == 1.0


def test_fit_rejects_what_it_cannot_honour(tiny_bert_dir):
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    objectives = [
        (DataLoader([InputExample(texts=["a", "b"])] * 4, batch_size=2), MultipleNegativesRankingLoss(model))
    ]
    with pytest.raises(ValueError, match="Unknown scheduler"):
        prepare_fit(model, objectives, scheduler="WarmupExponential")
    with pytest.raises(ValueError, match="AdamW"):
        prepare_fit(model, objectives, optimizer_class=torch.optim.SGD)
    with pytest.raises(ValueError, match="amsgrad"):
        prepare_fit(model, objectives, optimizer_params={"lr": 1e-3, "amsgrad": True})
    with pytest.raises(ValueError, match="at least one"):
        prepare_fit(model, [])


# ------------------------------------------------------------------------------------------------ v2 script on Ray
@pytest.mark.ray
@pytest.mark.slow  # CI budget: the fit() API on 2 Ray workers runs in CI as examples/fit_api.py (tests/examples)
def test_v2_fit_script_runs_on_two_ray_workers(ray_session, tiny_bert_dir, tmp_path):
    from ray.train import ScalingConfig

    # --- the imports are the only change from a sentence-transformers v2 script ---
    from raystx import evaluation, losses
    from raystx.data.input_example import InputExample
    from raystx.models import SentenceTransformer as _Model
    from raystx.train.fit import FitMixin

    if hasattr(_Model, "fit"):
        SentenceTransformer = _Model
    else:  # until raystx.models.SentenceTransformer gains fit()

        class SentenceTransformer(FitMixin, _Model):
            pass

    scores_file = tmp_path / "scores.jsonl"

    def on_score(score, epoch, steps):
        with open(scores_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"score": score, "epoch": epoch, "steps": steps}) + "\n")

    # --- v2 script body ---
    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train_examples = [
        InputExample(texts=[a, p]) for a, p in zip(make_sentences(32, 1), make_sentences(32, 2))
    ]
    train_dataloader = DataLoader(train_examples, shuffle=True, batch_size=8)
    train_loss = losses.MultipleNegativesRankingLoss(model)
    sts_examples = [
        InputExample(texts=[a, b], label=i / 31)
        for i, (a, b) in enumerate(zip(make_sentences(32, 3), make_sentences(32, 4)))
    ]
    sts_dataloader = DataLoader(sts_examples, shuffle=True, batch_size=8)
    sts_loss = losses.CoSENTLoss(model)
    dev_samples = [
        InputExample(texts=[a, b], label=i / 7)
        for i, (a, b) in enumerate(zip(make_sentences(8, 5), make_sentences(8, 6)))
    ]
    evaluator = evaluation.EmbeddingSimilarityEvaluator.from_input_examples(
        dev_samples, name="sts-dev", write_csv=False
    )
    output_path = str(tmp_path / "best-model")
    out = model.fit(
        train_objectives=[(train_dataloader, train_loss), (sts_dataloader, sts_loss)],
        evaluator=evaluator,
        epochs=1,
        evaluation_steps=2,
        warmup_steps=1,
        optimizer_params={"lr": 2e-3},
        output_path=output_path,
        callback=on_score,
        show_progress_bar=False,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    )

    # 32 rows per objective, 2 workers x 8 = 16 per step: 2 batches each, round-robin -> 4 steps
    assert out.global_step == 4
    assert max(float((model.state_dict()[k] - initial[k]).abs().max()) for k in initial) > 1e-4
    history = out.log_history
    key = "eval_sts-dev_spearman_cosine"
    evals = {h["step"]: h[key] for h in history if key in h}
    assert sorted(evals) == [2, 4]
    # the v2 callback got (score, epoch, steps) after each evaluation
    calls = [json.loads(line) for line in scores_file.read_text().splitlines()]
    assert [(c["steps"], c["score"]) for c in calls] == [(s, evals[s]) for s in (2, 4)]
    assert [c["epoch"] for c in calls] == [0.5, 1.0]
    # output_path holds the best model by the evaluator's primary metric
    best_step = max(evals, key=lambda s: evals[s]) if evals[2] != evals[4] else 2
    best = SentenceTransformer(output_path, device="cpu")
    assert (Path(output_path) / "modules.json").is_file()
    assert evaluator(best)["sts-dev_spearman_cosine"] == pytest.approx(evals[best_step], abs=1e-9)
    if best_step == 4:  # the final model is the best one
        torch.testing.assert_close(best.state_dict(), model.state_dict(), rtol=0, atol=0)
