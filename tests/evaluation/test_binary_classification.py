"""BinaryClassificationEvaluator parity with sentence-transformers, plus the threshold search on tied scores."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import make_sentences
from eval_helpers import assert_same_metrics, st_model  # noqa: F401

from raystx.evaluation import BinaryClassificationEvaluator
from raystx.evaluation._thresholds import best_accuracy_threshold, best_f1_threshold


def _pairs(n: int = 48):
    rng = random.Random(7)
    s1 = make_sentences(n, seed=11)
    s2 = make_sentences(n, seed=12)
    # some repeated sentences and identical pairs, so the dedup and tied scores are exercised
    s2[:4] = s1[:4]
    s1[10:13] = [s1[9]] * 3
    labels = [rng.randint(0, 1) for _ in range(n)]
    return s1, s2, labels


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": "quora"},
        {"similarity_fn_names": ["cosine", "dot", "euclidean", "manhattan"], "name": "all"},
        {"similarity_fn_names": ["manhattan"]},
        {"truncate_dim": 8, "similarity_fn_names": ["euclidean", "cosine"]},
    ],
)
def test_parity_with_sentence_transformers(st_model, kwargs, tmp_path):  # noqa: F811
    from sentence_transformers.sentence_transformer.evaluation import BinaryClassificationEvaluator as STEval

    s1, s2, labels = _pairs()
    ours = BinaryClassificationEvaluator(s1, s2, labels, **kwargs)
    theirs = STEval(s1, s2, labels, **kwargs)
    got = ours(st_model, output_path=str(tmp_path / "a"), epoch=2, steps=10)
    want = theirs(st_model, output_path=str(tmp_path / "b"), epoch=2, steps=10)
    assert_same_metrics(got, want)
    assert ours.primary_metric == theirs.primary_metric and ours.primary_metric in got
    ours_csv = (tmp_path / "a" / ours.csv_file).read_text().splitlines()
    st_csv = (tmp_path / "b" / theirs.csv_file).read_text().splitlines()
    assert ours_csv[0] == st_csv[0]
    assert np.allclose(
        [float(x) for x in ours_csv[1].split(",")], [float(x) for x in st_csv[1].split(",")], atol=1e-6
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("greater_is_better", [True, False])
def test_threshold_search_matches_st_on_ties(seed, greater_is_better):
    """Integer-valued float32 scores give many tied groups; results must equal ST's static methods exactly."""
    from sentence_transformers.sentence_transformer.evaluation import BinaryClassificationEvaluator as STEval

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    scores = rng.integers(0, 8, size=n).astype(np.float32) / np.float32(4)
    labels = rng.integers(0, 2, size=n)
    if seed == 0:
        labels[:] = 0  # no positives
    assert best_accuracy_threshold(scores, labels, greater_is_better) == STEval.find_best_acc_and_threshold(
        scores, labels, greater_is_better
    )
    assert best_f1_threshold(scores, labels, greater_is_better) == pytest.approx(
        STEval.find_best_f1_and_threshold(scores, labels, greater_is_better), abs=0
    )


def test_accuracy_threshold_formula():
    """Hand-checkable case: perfect separation at the midpoint between 0.4 and 0.6."""
    scores = np.array([0.9, 0.6, 0.4, 0.1], dtype=np.float32)
    acc, thr = best_accuracy_threshold(scores, np.array([1, 1, 0, 0]), True)
    assert acc == 1.0 and thr == pytest.approx(0.5)
    f1, p, r, thr = best_f1_threshold(scores, np.array([1, 0, 1, 0]), True)
    assert (f1, p, r) == pytest.approx((0.8, 2 / 3, 1.0)) and thr == pytest.approx(0.25)
