"""Evaluators on a raystx model (and on a bare encoder without precision/truncation/prompt support) give the
numbers sentence-transformers' evaluators give on the ST model loaded from the same directory."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import make_sentences
from eval_helpers import assert_same_metrics, make_ir_data, st_model  # noqa: F401

import raystx.evaluation as ours_mod


@pytest.fixture(scope="module")
def raystx_model(tiny_bert_dir):
    from raystx.models import SentenceTransformer

    return SentenceTransformer(str(tiny_bert_dir), device="cpu")


class BareEncoder:
    """Only ``encode(texts, batch_size, show_progress_bar, convert_to_numpy, convert_to_tensor)``: evaluators must
    emulate precision, truncate_dim, normalization and prompts themselves."""

    similarity_fn_name = "cosine"

    def __init__(self, model):
        self._model = model

    def encode(
        self,
        sentences,
        batch_size=32,
        show_progress_bar=False,
        convert_to_numpy=True,
        convert_to_tensor=False,
    ):
        return self._model.encode(
            sentences,
            batch_size=batch_size,
            convert_to_numpy=convert_to_numpy,
            convert_to_tensor=convert_to_tensor,
        )


def _pairs(n=40):
    rng = random.Random(4)
    return (
        make_sentences(n, 1),
        make_sentences(n, 2),
        [rng.random() for _ in range(n)],
        [i % 2 for i in range(n)],
    )


CASES = [
    (
        "EmbeddingSimilarityEvaluator",
        "sts",
        {"similarity_fn_names": ["cosine", "euclidean", "manhattan", "dot"]},
    ),
    ("EmbeddingSimilarityEvaluator", "sts", {"precision": "int8", "truncate_dim": 16}),
    ("EmbeddingSimilarityEvaluator", "sts", {"precision": "binary"}),
    ("EmbeddingSimilarityEvaluator", "sts", {"precision": "ubinary", "similarity_fn_names": ["dot"]}),
    ("EmbeddingSimilarityEvaluator", "sts", {"precision": "uint8", "similarity_fn_names": ["cosine"]}),
    (
        "BinaryClassificationEvaluator",
        "bin",
        {"similarity_fn_names": ["cosine", "manhattan"], "truncate_dim": 24},
    ),
    ("InformationRetrievalEvaluator", "ir", {"corpus_chunk_size": 9}),
    (
        "InformationRetrievalEvaluator",
        "ir",
        {"query_prompt": "query: ", "corpus_prompt": "doc: ", "truncate_dim": 20},
    ),
    ("TripletEvaluator", "trip", {"similarity_fn_names": ["cosine", "dot"]}),
    ("TranslationEvaluator", "tr", {}),
    ("ParaphraseMiningEvaluator", "pm", {"top_k": 5}),
]


def _args(kind):
    s1, s2, scores, labels = _pairs()
    if kind == "sts":
        return (s1, s2, scores)
    if kind == "bin":
        return (s1, s2, labels)
    if kind == "ir":
        return make_ir_data()
    if kind == "trip":
        return (s1, s2, make_sentences(40, 3))
    if kind == "tr":
        return (s1, [s + " dog" if i % 2 else s for i, s in enumerate(s1)])
    return ({f"id{i}": s for i, s in enumerate(s1)},)


@pytest.mark.parametrize("wrap", [False, True], ids=["raystx", "bare-encoder"])
@pytest.mark.parametrize(
    ("cls_name", "kind", "kwargs"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_matches_st_evaluator_on_st_model(st_model, raystx_model, wrap, cls_name, kind, kwargs):  # noqa: F811
    import sentence_transformers.sentence_transformer.evaluation as st_eval

    if kind == "pm":
        kwargs = {**kwargs, "duplicates_list": [("id1", "id2"), ("id3", "id9"), ("id4", "id5")]}
    model = BareEncoder(raystx_model) if wrap else raystx_model
    got = getattr(ours_mod, cls_name)(*_args(kind), **kwargs)(model)
    want = getattr(st_eval, cls_name)(*_args(kind), **kwargs)(st_model)
    assert_same_metrics(got, want)


def test_same_embeddings_as_st(st_model, raystx_model):  # noqa: F811
    """Guards the premise of the comparisons above."""
    texts = make_sentences(20, 5)
    assert np.allclose(raystx_model.encode(texts), st_model.encode(texts), atol=1e-6)
