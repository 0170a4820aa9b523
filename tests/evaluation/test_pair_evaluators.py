"""Parity with sentence-transformers for Triplet, Translation, MSE, MSEFromDataFrame, Reranking, ParaphraseMining,
LabelAccuracy and Sequential evaluators (same tiny model passed to both sides)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import build_tiny_bert, make_sentences
from eval_helpers import assert_same_metrics, st_model  # noqa: F401

import raystx.evaluation as ours_mod


def _st():
    import sentence_transformers.sentence_transformer.evaluation as st_eval

    return st_eval


def _run_both(cls_name: str, model, tmp_path, *args, **kwargs):
    ours = getattr(ours_mod, cls_name)(*args, **kwargs)
    theirs = getattr(_st(), cls_name)(*args, **kwargs)
    got = ours(model, output_path=str(tmp_path / "a"), epoch=1, steps=2)
    want = theirs(model, output_path=str(tmp_path / "b"), epoch=1, steps=2)
    assert_same_metrics(got, want)
    assert ours.primary_metric == theirs.primary_metric and ours.primary_metric in got
    assert ours.csv_file == theirs.csv_file
    a = (tmp_path / "a" / ours.csv_file).read_text().splitlines()
    b = (tmp_path / "b" / theirs.csv_file).read_text().splitlines()
    assert a[0] == b[0]
    assert np.allclose([float(x) for x in a[1].split(",")], [float(x) for x in b[1].split(",")], atol=1e-6)
    return ours, got


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": "trip", "similarity_fn_names": ["cosine", "dot", "euclidean", "manhattan"]},
        {"main_similarity_function": "euclidean", "margin": 0.05},
        {"similarity_fn_names": ["cosine", "manhattan"], "margin": {"cosine": 0.01}, "truncate_dim": 16},
    ],
)
def test_triplet(st_model, tmp_path, kwargs):  # noqa: F811
    a, p, n = make_sentences(30, 21), make_sentences(30, 22), make_sentences(30, 23)
    _run_both("TripletEvaluator", st_model, tmp_path, a, p, n, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"name": "en-de", "truncate_dim": 8}])
def test_translation(st_model, tmp_path, kwargs):  # noqa: F811
    src = make_sentences(40, 31)
    trg = [s if i % 3 else s + " cat" for i, s in enumerate(make_sentences(40, 31, min_len=2))]
    trg[5] = trg[6]  # duplicate target text: counted correct when the duplicate wins
    _run_both("TranslationEvaluator", st_model, tmp_path, src, trg, **kwargs)


def test_mse(st_model, tiny_bert_dir, tmp_path):  # noqa: F811
    from sentence_transformers import SentenceTransformer

    student = SentenceTransformer(str(build_tiny_bert(tmp_path / "student", seed=1)), device="cpu")
    src, trg = make_sentences(25, 41), make_sentences(25, 42)
    for kwargs in ({"name": "distill"}, {"truncate_dim": 16}):
        _run_both(
            "MSEEvaluator", student, tmp_path / str(len(kwargs)), src, trg, teacher_model=st_model, **kwargs
        )


def test_mse_from_dataframe(st_model, tmp_path):  # noqa: F811
    en, de, fr = make_sentences(20, 51), make_sentences(20, 52), make_sentences(20, 53)
    rows = [{"en": a, "de": b, "fr": c} for a, b, c in zip(en, de, fr)]
    rows[3]["de"] = "  "
    _run_both(
        "MSEEvaluatorFromDataFrame",
        st_model,
        tmp_path,
        rows,
        st_model,
        [("en", "de"), ("en", "fr")],
        name="df",
    )


def _rerank_samples():
    rng = random.Random(5)
    pool = make_sentences(120, 61)
    samples = []
    for i in range(12):
        pos = rng.sample(pool, rng.randint(1, 3))
        neg = rng.sample(pool, rng.randint(1, 9))
        samples.append({"query": pool[i], "positive": pos[0] if i == 0 else pos, "negative": neg})
    samples.append({"query": "empty", "positive": [], "negative": ["x"]})  # dropped
    return samples


@pytest.mark.parametrize(
    "kwargs", [{}, {"at_k": 3, "name": "rr"}, {"use_batched_encoding": False, "truncate_dim": 16}]
)
def test_reranking(st_model, tmp_path, kwargs):  # noqa: F811
    _run_both("RerankingEvaluator", st_model, tmp_path, _rerank_samples(), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": "pm", "add_transitive_closure": True},
        {"top_k": 3, "max_pairs": 40, "query_chunk_size": 7, "corpus_chunk_size": 9},
    ],
)
def test_paraphrase_mining(st_model, tmp_path, kwargs):  # noqa: F811
    sentences = make_sentences(45, 71)
    sentences[10] = sentences[11]  # an exact duplicate pair (tied top score)
    sentences_map = {f"s{i}": s for i, s in enumerate(sentences)}
    rng = random.Random(8)
    dups = [(f"s{rng.randrange(45)}", f"s{rng.randrange(45)}") for _ in range(15)] + [("s10", "s11")]
    dups = [(a, b) for a, b in dups if a != b]
    _run_both("ParaphraseMiningEvaluator", st_model, tmp_path, sentences_map, duplicates_list=dups, **kwargs)


def test_label_accuracy_with_st_softmax_loss(st_model, tmp_path):  # noqa: F811
    from sentence_transformers import InputExample
    from sentence_transformers.sentence_transformer.losses import SoftmaxLoss as STSoftmax
    from torch.utils.data import DataLoader

    from raystx.losses.softmax import SoftmaxLoss

    rng = random.Random(9)
    examples = [
        InputExample(texts=[a, b], label=rng.randrange(3))
        for a, b in zip(make_sentences(40, 81), make_sentences(40, 82))
    ]
    torch.manual_seed(0)
    st_loss = STSoftmax(st_model, 32, num_labels=3, concatenation_sent_multiplication=True)
    theirs = _st().LabelAccuracyEvaluator(
        DataLoader(examples, batch_size=8), name="nli", softmax_model=st_loss
    )
    want = theirs(st_model, output_path=str(tmp_path / "b"))

    ours = ours_mod.LabelAccuracyEvaluator(
        DataLoader(examples, batch_size=8), name="nli", softmax_model=st_loss
    )
    assert_same_metrics(ours(st_model, output_path=str(tmp_path / "a")), want)
    assert ours.primary_metric == theirs.primary_metric == "nli_accuracy"
    assert (tmp_path / "a" / ours.csv_file).read_text() == (tmp_path / "b" / theirs.csv_file).read_text()

    # the raystx SoftmaxLoss (its .logits) with the same classifier weights, on a list of dict rows
    loss = SoftmaxLoss(st_model, 32, num_labels=3, concatenation_sent_multiplication=True)
    loss.classifier.load_state_dict(st_loss.classifier.state_dict())
    rows = [{"sentence1": e.texts[0], "sentence2": e.texts[1], "label": e.label} for e in examples]
    assert_same_metrics(ours_mod.LabelAccuracyEvaluator(rows, name="nli", softmax_model=loss)(st_model), want)


def test_sequential(st_model):  # noqa: F811
    s1, s2 = make_sentences(20, 91), make_sentences(20, 92)
    labels = [i % 2 for i in range(20)]
    scores = [i / 20 for i in range(20)]

    def build(mod):
        return mod.SequentialEvaluator(
            [
                mod.BinaryClassificationEvaluator(s1, s2, labels, name="bin"),
                mod.EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts"),
            ],
            main_score_function=lambda xs: sum(xs) / len(xs),
        )

    ours, theirs = build(ours_mod), build(_st())
    got, want = ours(st_model), theirs(st_model)
    assert_same_metrics(got, want)
    assert ours.primary_metric == "sequential_score"
    assert got["sequential_score"] == pytest.approx((got["bin_cosine_ap"] + got["sts_spearman_cosine"]) / 2)
