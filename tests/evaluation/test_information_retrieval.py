"""InformationRetrievalEvaluator parity with sentence-transformers (same model, same data) and its chunking."""

from __future__ import annotations

import json

import pytest
import torch
from eval_helpers import assert_same_metrics, make_ir_data, st_model  # noqa: F401

from raystx.evaluation import InformationRetrievalEvaluator
from raystx.evaluation._ranking import chunk_top_k, id_ranks, merge_top_k


def _st_fns():
    from sentence_transformers import util

    return {"cos_sim": util.cos_sim, "dot_score": util.dot_score}


CASES = [
    {},
    {"name": "dev", "corpus_chunk_size": 7},
    {
        "mrr_at_k": [3, 10],
        "ndcg_at_k": [1, 5, 60],
        "accuracy_at_k": [2],
        "precision_recall_at_k": [4, 50],
        "map_at_k": [7, 100],
        "corpus_chunk_size": 11,
    },
    {"score_functions": "two", "name": "two"},
    {"score_functions": "two", "main_score_function": "dot", "corpus_chunk_size": 13},
    {"truncate_dim": 12, "name": "t12"},
    {"query_prompt": "query: ", "corpus_prompt": "passage: ", "corpus_chunk_size": 20},
]


@pytest.mark.parametrize("kwargs", CASES)
def test_parity_with_sentence_transformers(st_model, kwargs, tmp_path):  # noqa: F811
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator as STEval

    queries, corpus, relevant = make_ir_data()
    if kwargs.get("score_functions") == "two":
        kwargs = {**kwargs, "score_functions": _st_fns()}
        if kwargs.get("main_score_function") == "dot":
            kwargs["score_functions"] = {
                "cosine": kwargs["score_functions"]["cos_sim"],
                "dot": kwargs["score_functions"]["dot_score"],
            }
    ours = InformationRetrievalEvaluator(queries, corpus, relevant, write_predictions=True, **kwargs)
    theirs = STEval(queries, corpus, relevant, write_predictions=True, **kwargs)
    got = ours(st_model, output_path=str(tmp_path / "a"), epoch=0, steps=3)
    want = theirs(st_model, output_path=str(tmp_path / "b"), epoch=0, steps=3)
    assert_same_metrics(got, want)
    assert list(got) == list(want)
    assert ours.primary_metric == theirs.primary_metric and ours.primary_metric in got
    assert ours.queries_ids == theirs.queries_ids and "q9" not in ours.queries_ids

    a_csv = (tmp_path / "a" / ours.csv_file).read_text().splitlines()
    b_csv = (tmp_path / "b" / theirs.csv_file).read_text().splitlines()
    assert a_csv[0] == b_csv[0]
    assert [round(float(x), 9) for x in a_csv[1].split(",")] == [
        round(float(x), 9) for x in b_csv[1].split(",")
    ]
    for path in sorted((tmp_path / "b").glob("*.jsonl")):
        mine = [json.loads(line) for line in (tmp_path / "a" / path.name).read_text().splitlines()]
        ref = [json.loads(line) for line in path.read_text().splitlines()]
        assert [[h["corpus_id"] for h in m["results"]] for m in mine] == [
            [h["corpus_id"] for h in r["results"]] for r in ref
        ]


def test_chunking_does_not_change_results(st_model):  # noqa: F811
    queries, corpus, relevant = make_ir_data(seed=3)
    full = InformationRetrievalEvaluator(queries, corpus, relevant)(st_model)
    for size in (1, 4, 49):
        assert (
            InformationRetrievalEvaluator(queries, corpus, relevant, corpus_chunk_size=size)(st_model) == full
        )


def test_top_k_tie_break_by_corpus_id():
    """All-equal scores: the kept hits are the k smallest ids (string order), whatever the chunking."""
    ids = [f"d{i}" for i in range(30)]
    ranks = id_ranks(ids)
    scores = torch.zeros(2, 30)
    scores[1, 25] = 1.0
    best_v, best_i = torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.long)
    for start in range(0, 30, 8):
        v, i = chunk_top_k(scores[:, start : start + 8], 5, ranks[start : start + 8])
        best_v, best_i = merge_top_k(best_v, best_i, v, i + start, 5, ranks)
    assert [ids[i] for i in best_i[0].tolist()] == sorted(ids)[:5]
    assert [ids[i] for i in best_i[1].tolist()] == ["d25"] + sorted(ids)[:4]


def test_metrics_by_hand():
    """A 1-query ranking whose metrics are easy to compute by hand."""
    import numpy as np

    from raystx.evaluation._ranking import retrieval_metrics

    rel = np.array([[0, 1, 0, 1, 0]], dtype=float)  # hits at ranks 2 and 4, 3 relevant docs in total
    m = retrieval_metrics(rel, np.array([3]), [1, 2], [2, 5], [5], [5], [5])
    assert m["accuracy@k"] == {1: 0.0, 2: 1.0}
    assert m["precision@k"][2] == pytest.approx(0.5) and m["recall@k"][5] == pytest.approx(2 / 3)
    assert m["mrr@k"][5] == pytest.approx(0.5)
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    assert m["ndcg@k"][5] == pytest.approx(dcg / (1 + 1 / np.log2(3) + 1 / np.log2(4)))
    assert m["map@k"][5] == pytest.approx((1 / 2 + 2 / 4) / 3)
