"""EmbeddingSimilarityEvaluator parity with sentence-transformers on the same tiny model."""

from __future__ import annotations

import random

import pytest
from conftest import make_sentences
from eval_helpers import assert_same_metrics, st_model  # noqa: F401

from raystx.evaluation import EmbeddingSimilarityEvaluator, SimilarityFunction


def _data(n: int = 40):
    s1, s2 = make_sentences(n, seed=1), make_sentences(n, seed=2)
    rng = random.Random(3)
    return s1, s2, [rng.random() for _ in range(n)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": "sts-dev"},
        {"similarity_fn_names": ["cosine", "euclidean", "manhattan", "dot"], "name": "all"},
        {"main_similarity": SimilarityFunction.MANHATTAN, "name": "m"},
        {"main_similarity": "dot", "similarity_fn_names": ["cosine", "dot"]},
        {"truncate_dim": 16, "similarity_fn_names": ["cosine", "euclidean"]},
        {"precision": "int8", "similarity_fn_names": ["cosine", "dot"]},
        {"precision": "uint8", "name": "u"},
        {"precision": "binary", "similarity_fn_names": ["cosine", "manhattan"]},
        {"precision": "ubinary", "similarity_fn_names": ["euclidean"]},
    ],
)
def test_parity_with_sentence_transformers(st_model, kwargs, tmp_path):  # noqa: F811
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator as STEval

    s1, s2, scores = _data()
    ours = EmbeddingSimilarityEvaluator(s1, s2, scores, **kwargs)
    st_kwargs = {k: (v.value if isinstance(v, SimilarityFunction) else v) for k, v in kwargs.items()}
    theirs = STEval(s1, s2, scores, **st_kwargs)
    got = ours(st_model, output_path=str(tmp_path / "ours"), epoch=1, steps=5)
    want = theirs(st_model, output_path=str(tmp_path / "st"), epoch=1, steps=5)
    assert_same_metrics(got, want)
    assert ours.primary_metric == theirs.primary_metric
    assert ours.primary_metric in got
    assert ours.greater_is_better is True
    assert ours.csv_file == theirs.csv_file
    assert (tmp_path / "ours" / ours.csv_file).read_text().splitlines()[0] == (
        tmp_path / "st" / theirs.csv_file
    ).read_text().splitlines()[0]


def test_csv_appends_one_row_per_call(st_model, tmp_path):  # noqa: F811
    s1, s2, scores = _data(12)
    ev = EmbeddingSimilarityEvaluator(s1, s2, scores, name="x", similarity_fn_names=["cosine", "dot"])
    for step in (1, 2, 3):
        ev(st_model, output_path=str(tmp_path), epoch=0, steps=step)
    lines = (tmp_path / "similarity_evaluation_x_results.csv").read_text().splitlines()
    assert lines[0] == "epoch,steps,cosine_pearson,cosine_spearman,dot_pearson,dot_spearman"
    assert [line.split(",")[1] for line in lines[1:]] == ["1", "2", "3"]


def test_matches_direct_formula(st_model):  # noqa: F811
    """Spearman of cosine similarities computed directly from the embeddings."""
    import numpy as np
    from scipy.stats import spearmanr

    s1, s2, scores = _data(20)
    e1 = st_model.encode(s1, convert_to_numpy=True)
    e2 = st_model.encode(s2, convert_to_numpy=True)
    cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
    got = EmbeddingSimilarityEvaluator(s1, s2, scores, similarity_fn_names=["cosine"])(st_model)
    assert got["spearman_cosine"] == pytest.approx(spearmanr(scores, cos)[0], abs=1e-6)


def test_similarity_function_accepts_aliases_and_foreign_enums():
    from sentence_transformers import SimilarityFunction as STSimilarityFunction

    assert SimilarityFunction(STSimilarityFunction.MANHATTAN) is SimilarityFunction.MANHATTAN
    assert SimilarityFunction("dot_product") is SimilarityFunction.DOT_PRODUCT is SimilarityFunction.DOT
    with pytest.raises(ValueError):
        SimilarityFunction("jaccard")
