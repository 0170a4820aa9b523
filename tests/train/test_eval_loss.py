"""``eval_dataset`` -> ``eval_loss``: the sharded evaluation loss equals the single-process value and
sentence-transformers' ``trainer.evaluate()`` (the oracle), on 1 and 2 gloo ranks (no Ray)."""

from __future__ import annotations

import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import make_sentences

from raystx.data.collate import BatchCollator
from raystx.data.sources import prepare_sources
from raystx.losses import CoSENTLoss, CosineSimilarityLoss, MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.eval_data import prepare_eval_datasets
from raystx.train.eval_loss import EvalDataset, EvalLoss, rank_batches
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, build_loop

sys.path.insert(0, str(Path(__file__).parent.parent / "losses"))
from dist_harness import run_distributed  # noqa: E402

ROWS, BATCH = 11, 4


def _eval_data() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"anchor": make_sentences(ROWS, 7), "positive": make_sentences(ROWS, 8)}
    )


def _model(model_dir: str) -> SentenceTransformer:
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir)
    model.max_seq_length = 16
    return model


def _scored() -> datasets.Dataset:
    scores = [((i * 7) % 11) / 10 for i in range(ROWS)]
    return datasets.Dataset.from_dict(
        {"s1": make_sentences(ROWS, 3), "s2": make_sentences(ROWS, 4), "score": scores}
    )


def _eval_losses_on_rank(rank: int, world_size: int, model_dir: str, pairs: dict, scored: dict) -> dict:
    """One rank's eval losses of a dict of two eval datasets (the all-reduce inside makes them global)."""
    model = _model(model_dir)
    # MNRL gathers in-batch candidates in training: it must not gather in the sharded eval
    losses = {"pairs": MultipleNegativesRankingLoss(model), "sts": CosineSimilarityLoss(model)}
    tables = {"pairs": datasets.Dataset.from_dict(pairs), "sts": datasets.Dataset.from_dict(scored)}
    sources = prepare_sources(tables, staging_dir="unused")
    collate = BatchCollator(
        model.tokenize,
        {n: s.input_columns for n, s in sources.items()},
        {n: s.label_column for n, s in sources.items()},
        {"pairs": "none", "sts": "float"},
    )
    items = {n: EvalDataset(s, n, f"eval_{n}_loss") for n, s in sources.items()}
    return EvalLoss(items, BATCH, collate, rank, world_size)(model, losses, torch.device("cpu"))


def _direct(model_dir: str, data: datasets.Dataset) -> float:
    """The definition: rows in order, batches of BATCH, mean of batch losses weighted by rows, one process."""
    model = _model(model_dir)
    model.eval()
    loss = MultipleNegativesRankingLoss(model)
    total = 0.0
    with torch.no_grad():
        for start in range(0, ROWS, BATCH):
            rows = data[start : start + BATCH]
            features = [model.tokenize(rows["anchor"]), model.tokenize(rows["positive"])]
            total += float(loss(features, None)) * len(rows["anchor"])
    return total / ROWS


def test_rank_batches_cover_every_row_once():
    for world in (1, 2, 3):
        got = np.concatenate([b for r in range(world) for b in rank_batches(ROWS, BATCH, r, world)])
        assert sorted(got.tolist()) == list(range(ROWS))
        assert all(len(b) == BATCH for r in range(world) for b in rank_batches(ROWS, BATCH, r, world)[:-1])
    assert [b.tolist() for b in rank_batches(ROWS, BATCH, 1, 2)] == [[4, 5, 6, 7]]


def test_eval_loss_two_ranks_equals_one_rank_equals_direct_and_sentence_transformers(tiny_bert_dir, tmp_path):
    pairs, scored = _eval_data(), _scored()
    inputs = (str(tiny_bert_dir), pairs.to_dict(), scored.to_dict())
    one = _eval_losses_on_rank(0, 1, *inputs)
    two = run_distributed(_eval_losses_on_rank, 2, inputs, timeout=300)
    assert two[0] == two[1]  # every rank ends with the same values
    assert set(one) == {"eval_pairs_loss", "eval_sts_loss"}
    for key in one:
        assert two[0][key] == pytest.approx(one[key], abs=1e-6)
    assert one["eval_pairs_loss"] == pytest.approx(_direct(str(tiny_bert_dir), pairs), abs=1e-6)

    # the oracle: sentence-transformers' trainer.evaluate() on the same weights (its eval batches are shuffled, so
    # compare a loss whose row-weighted batch mean does not depend on the batch composition)
    from sentence_transformers import SentenceTransformer as STModel
    from sentence_transformers import SentenceTransformerTrainer as STTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as STArgs
    from sentence_transformers.losses import CosineSimilarityLoss as STCosine

    st_model = STModel(str(tiny_bert_dir), device="cpu")
    st_model.max_seq_length = 16
    args = STArgs(
        output_dir=str(tmp_path / "st"), per_device_eval_batch_size=BATCH, report_to="none", use_cpu=True
    )
    st_trainer = STTrainer(model=st_model, args=args, eval_dataset=scored, loss=STCosine(st_model))
    assert st_trainer.evaluate()["eval_loss"] == pytest.approx(one["eval_sts_loss"], abs=1e-6)


def test_eval_datasets_pair_with_losses_and_are_validated_on_the_driver(tiny_bert_dir, tmp_path):
    model = _model(str(tiny_bert_dir))
    mnrl, cosent = MultipleNegativesRankingLoss(model), CoSENTLoss(model)
    pairs = _eval_data()
    scored = datasets.Dataset.from_dict({"s1": ["a b", "c d"], "s2": ["b a", "d c"], "score": [0.5, 0.1]})
    kw = dict(staging_dir=str(tmp_path / "stage"), select_columns=None, batch_size=BATCH)

    one, kinds = prepare_eval_datasets(pairs, losses={"train": mnrl}, loss_is_dict=False, **kw)
    assert list(one) == ["eval"] and one["eval"].metric == "eval_loss" and one["eval"].loss_key == "train"
    several, kinds = prepare_eval_datasets(
        {"nli": pairs, "sts": scored}, losses={"nli": mnrl, "sts": cosent}, loss_is_dict=True, **kw
    )
    assert {n: (d.metric, d.loss_key) for n, d in several.items()} == {
        "nli": ("eval_nli_loss", "nli"),
        "sts": ("eval_sts_loss", "sts"),
    }
    assert kinds == {"nli": "none", "sts": "float"}
    with pytest.raises(ValueError, match=r"eval_dataset names \['other'\], which have no loss"):
        prepare_eval_datasets({"other": pairs}, losses={"nli": mnrl}, loss_is_dict=True, **kw)
    with pytest.raises(ValueError, match="eval_dataset must be a dict too"):
        prepare_eval_datasets(pairs, losses={"nli": mnrl}, loss_is_dict=True, **kw)
    with pytest.raises(Exception, match="CoSENTLoss"):  # pairs without a score do not fit CoSENT
        prepare_eval_datasets(pairs, losses={"train": cosent}, loss_is_dict=False, **kw)


def test_training_logs_eval_loss_on_start_and_at_eval_steps(tiny_bert_dir, tmp_path):
    model = _model(str(tiny_bert_dir))
    loss = MultipleNegativesRankingLoss(model)
    train = datasets.Dataset.from_dict({"anchor": make_sentences(16, 1), "positive": make_sentences(16, 2)})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=BATCH,
        eval_strategy="steps",
        eval_steps=2,
        eval_on_start=True,
        save_strategy="no",
        logging_steps=1,
        learning_rate=1e-3,
    )
    expected_start = _direct(str(tiny_bert_dir), _eval_data())
    evals, _ = prepare_eval_datasets(
        _eval_data(),
        losses={"train": loss},
        loss_is_dict=False,
        staging_dir=str(tmp_path / "stage"),
        select_columns=None,
        batch_size=BATCH,
    )
    payload = WorkerPayload(
        model=model,
        losses={"train": loss},
        args=args,
        sources=prepare_sources(train, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        eval_datasets=evals,
        eval_label_kinds={"eval": "none"},
        best_metric_key="eval_loss",  # metric_for_best_model="eval_loss": a loss, so lower is better
        greater_is_better=False,
    )
    loop = build_loop(payload, LocalRuntime(tmp_path / "run", device="cpu"))
    result = loop.run()
    by_step = {h["step"]: h["eval_loss"] for h in result["log_history"] if "eval_loss" in h}
    assert sorted(by_step) == [0, 2, 4]
    assert by_step[0] == pytest.approx(expected_start, abs=1e-6)
    assert by_step[4] != pytest.approx(by_step[0], abs=1e-4)  # it tracks the trained weights
    assert loop.state.best_metric == min(by_step.values())


def test_eval_loss_as_metric_for_best_model_is_minimized(tiny_bert_dir, tmp_path):
    from raystx.evaluation import EmbeddingSimilarityEvaluator
    from raystx.train.trainer import SentenceTransformerTrainer

    evaluator = EmbeddingSimilarityEvaluator(["a"], ["b"], [0.5], name="dev")  # greater_is_better=True itself
    for given in ("eval_loss", "loss"):
        args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), metric_for_best_model=given)
        trainer = SentenceTransformerTrainer(
            model=_model(str(tiny_bert_dir)), args=args, eval_dataset=_eval_data(), evaluator=evaluator
        )
        assert trainer._best_metric() == ("eval_loss", "min")
