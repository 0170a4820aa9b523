"""Retrieval and reranking evaluators check their ids and samples at construction: nothing to evaluate is a
clear ValueError (never a ZeroDivisionError at the end of a run), unknown ids in the qrels warn with counts."""

from __future__ import annotations

import logging
import warnings

import pytest

from raystx.evaluation import InformationRetrievalEvaluator, NanoBEIREvaluator
from raystx.evaluation._ids import RetrievalIdWarning
from raystx.evaluation.reranking import RerankingEvaluator

pytest_plugins = ["bad_input_catalogue"]  # the `catalogue` fixture
AREA = "Evaluators"
QUERIES = {"q1": "what is a cat", "q2": "where do dogs live", "q3": "why is the sky blue"}
CORPUS = {f"d{i}": f"document number {i}" for i in range(6)}


def _names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_all_query_ids_unknown_is_a_value_error_not_zero_division(catalogue):
    qrels = {"x1": {"d1"}, "x2": {"d2"}, "x3": {"d3"}}
    message = catalogue.raises(
        ValueError,
        lambda: InformationRetrievalEvaluator(QUERIES, CORPUS, qrels, name="dev"),
        input="InformationRetrievalEvaluator whose relevant_docs name only unknown query ids",
    )
    _names(message, "'dev'", "no query to evaluate", "none of the 3 query ids", "'x1'", "'q1'")


def test_query_ids_that_differ_only_in_type_are_named_as_such(catalogue):
    queries = {1: "what is a cat", 2: "where do dogs live"}
    message = catalogue.raises(
        ValueError,
        lambda: InformationRetrievalEvaluator(queries, CORPUS, {"1": {"d1"}, "2": {"d2"}}),
        input="Query ids given as int in `queries` but as str in relevant_docs",
    )
    _names(message, "differ only in type", "int vs str", "convert both to str")


def test_no_relevant_documents_at_all(catalogue):
    message = catalogue.raises(
        ValueError,
        lambda: InformationRetrievalEvaluator(QUERIES, CORPUS, {"q1": set(), "q2": set()}),
        input="relevant_docs with no relevant document for any query",
    )
    _names(message, "no query to evaluate", "no relevant document for any query")


def test_a_string_instead_of_a_set_of_ids(catalogue):
    message = catalogue.raises(
        ValueError,
        lambda: InformationRetrievalEvaluator(QUERIES, CORPUS, {"q1": "d1"}),
        input="relevant_docs = {'q1': 'd1'} (a string, not a set of ids)",
    )
    _names(message, "single strings", "'q1': 'd1'", "{'q1': {'d1'}}")


def test_some_unknown_query_ids_warn_with_counts(catalogue):
    qrels = {"q1": {"d1"}, "q2": {"d2"}, "x9": {"d3"}}
    message = catalogue.warns(
        RetrievalIdWarning,
        lambda: InformationRetrievalEvaluator(QUERIES, CORPUS, qrels),
        input="relevant_docs naming 1 unknown query id among 3",
    )
    _names(message, "1 of 3 query ids", "'x9'", "not evaluated")


def test_unknown_document_ids_warn_with_counts(catalogue):
    qrels = {"q1": {"d1", "zz"}, "q2": {"d2"}, "q3": {"yy"}}
    message = catalogue.warns(
        RetrievalIdWarning,
        lambda: InformationRetrievalEvaluator(QUERIES, CORPUS, qrels),
        input="relevant_docs naming 2 document ids that are not in the corpus",
    )
    _names(message, "2 of 4 relevant document ids", "'yy', 'zz'", "affecting 2 of 3 queries", "below 1")


def test_valid_ids_do_not_warn_and_queries_without_qrels_are_skipped_as_in_sentence_transformers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluator = InformationRetrievalEvaluator(QUERIES, CORPUS, {"q1": {"d1"}, "q3": ["d2", "d3"]})
    assert evaluator.queries_ids == ["q1", "q3"]


def test_nano_beir_checks_each_dataset(tmp_path, catalogue):
    import json

    directory = tmp_path / "NanoSciFact"
    (directory / "qrels").mkdir(parents=True)
    (directory / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(4))
    )
    (directory / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a query"}) + "\n")
    (directory / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nQ1\td1\t1\n")
    message = catalogue.raises(
        ValueError,
        lambda: NanoBEIREvaluator(dataset_names=["scifact"], dataset_id=str(tmp_path)),
        input="NanoBEIR directory whose qrels name query ids its queries.jsonl lacks",
    )
    _names(message, "'NanoSciFact'", "no query to evaluate", "'Q1'", "'q1'")


def test_reranking_sample_without_a_key(catalogue):
    samples = [{"query": "q", "positive": ["a"], "negative": ["b"]}, {"query": "q", "positives": ["a"]}]
    message = catalogue.raises(
        ValueError,
        lambda: RerankingEvaluator(samples, name="rr"),
        input="RerankingEvaluator sample with 'positives' instead of 'positive' and no 'negative'",
    )
    _names(message, "'rr'", "sample 1", "['positive', 'negative']")


def test_reranking_with_nothing_to_rank(catalogue, caplog):
    samples = [
        {"query": "q", "positive": ["a"], "negative": []},
        {"query": "r", "positive": [], "negative": "b"},
    ]
    message = catalogue.raises(
        ValueError,
        lambda: RerankingEvaluator(samples),
        input="RerankingEvaluator whose samples all lack a positive or a negative",
    )
    _names(message, "none of the 2 samples", "positive and a negative")
    caplog.set_level(logging.WARNING, logger="raystx.evaluation.reranking")
    evaluator = RerankingEvaluator(samples + [{"query": "s", "positive": "a", "negative": ["b", "c"]}])
    assert len(evaluator.samples) == 1 and "2 of 3 samples" in caplog.text


@pytest.mark.parametrize("qrels", [{"q1": {"d1"}}, {"q1": {"d1"}, "q2": {"d4", "d5"}}])
def test_metrics_are_unchanged_by_the_checks(qrels):
    """A valid set evaluates as before (the checks only read the ids)."""
    evaluator = InformationRetrievalEvaluator(QUERIES, CORPUS, qrels)
    assert evaluator.queries_ids == list(qrels)
    assert evaluator.queries == [QUERIES[q] for q in qrels]
