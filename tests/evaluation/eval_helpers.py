"""Helpers shared by the evaluation parity tests (test files import them as ``from eval_helpers import ...``;
pytest puts this directory on ``sys.path``). ``st_model`` is a fixture: importing it into a test module
registers it there."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="session")
def st_model(tiny_bert_dir):
    """The tiny random BERT loaded by sentence-transformers (Transformer + mean pooling), on CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_bert_dir), device="cpu")


def assert_same_metrics(ours: dict, theirs: dict, tol: float = 1e-6) -> None:
    """Same key set, every value within ``tol`` (NaN only where both are NaN)."""
    only_ours, only_theirs = set(ours) - set(theirs), set(theirs) - set(ours)
    assert not only_ours and not only_theirs, f"keys differ: ours-only {only_ours}, ST-only {only_theirs}"
    for key, value in theirs.items():
        mine = ours[key]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(mine, float) and math.isnan(mine), key
            continue
        assert abs(float(mine) - float(value)) <= tol, f"{key}: ours {mine} vs ST {value}"


def make_ir_data(n_docs: int = 50, n_queries: int = 10, seed: int = 0):
    """A small retrieval set: ``(queries, corpus, relevant_docs)`` dicts with string ids.

    Some documents are exact duplicates under other ids (tied scores), some queries are judged against ids that
    are not in the corpus, and one query has no judgements (it must be skipped).
    """
    import random

    from conftest import make_sentences

    rng = random.Random(seed)
    docs = make_sentences(n_docs, seed=seed + 100)
    docs[5] = docs[4]
    docs[17] = docs[16] = docs[3]
    corpus = {f"d{i}": text for i, text in enumerate(docs)}
    queries = {f"q{i}": text for i, text in enumerate(make_sentences(n_queries, seed=seed + 200))}
    relevant = {}
    for i in range(n_queries - 1):
        relevant[f"q{i}"] = {f"d{j}" for j in rng.sample(range(n_docs), rng.randint(1, 4))}
    relevant["q0"] |= {"d4", "missing-doc"}
    relevant["q1"] |= {"d17"}
    return queries, corpus, relevant


def write_beir_dir(directory, queries: dict, corpus: dict, relevant: dict, split: str = "test"):
    """Write a BEIR-format directory (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) and return its path."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "corpus.jsonl", "w", encoding="utf-8") as f:
        for cid, text in corpus.items():
            f.write(json.dumps({"_id": cid, "title": "", "text": text}) + "\n")
    with open(directory / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (directory / "qrels").mkdir(exist_ok=True)
    with open(directory / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, cids in relevant.items():
            for cid in sorted(cids):
                f.write(f"{qid}\t{cid}\t1\n")
    return directory
