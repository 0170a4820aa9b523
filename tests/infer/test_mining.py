"""``raystx.util.mine_hard_negatives`` against ``sentence_transformers.util.mine_hard_negatives`` (the oracle).

Both load the same tiny random BERT. The data is chosen so that no two candidate scores of a query are within
``GAP`` of each other (``tie_free_corpus``): float rounding of a different matmul blocking can then not swap
two candidates, so "same rows, same order" is a fair demand. Every output format is compared with and without
range/margins/score bounds/include_positives, in this process (``num_workers=0``: same shard code, no Ray) and
on Ray with 1 and 2 workers (identical results).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

sentence_transformers = pytest.importorskip("sentence_transformers")

from datasets import Dataset  # noqa: E402

from raystx.models import SentenceTransformer  # noqa: E402
from raystx.testing import unique_sentences  # noqa: E402
from raystx.util import mine_hard_negatives  # noqa: E402

GAP = 5e-6
FORMATS = ["triplet", "n-tuple", "labeled-pair", "labeled-list"]
# tiny random BERT: positives score ~0.95, the nearest corpus passages ~0.97, so margins are set to keep some
OPTIONS = {
    "defaults": {},
    "range+relative_margin": {
        "range_min": 2,
        "range_max": 25,
        "relative_margin": -0.01,
        "output_scores": True,
    },
    "absolute_margin+max_score": {"absolute_margin": -0.015, "max_score": 0.975, "output_scores": True},
    "min_score+num_negatives": {"min_score": 0.96, "range_max": 8, "num_negatives": 4},
    "include_positives": {"include_positives": True, "output_scores": True},
}


def tie_free_corpus(
    model, queries: list[str], positives: list[str], pool: list[str], top: int = 40
) -> list[str]:
    """``pool`` minus the passages whose score is within ``GAP`` of a better one among a query's ``top``."""
    emb = {t: e for t, e in zip(pool + positives, model.encode(pool + positives, normalize_embeddings=True))}
    q = model.encode(queries, normalize_embeddings=True)
    corpus = list(pool)
    while True:
        texts = list(dict.fromkeys(corpus + positives))
        scores = q @ np.stack([emb[t] for t in texts]).T
        drop = set()
        for row in scores:
            order = np.argsort(-row)[:top]
            close = np.flatnonzero(np.abs(np.diff(row[order])) < GAP)
            drop |= {texts[order[i + 1]] for i in close if texts[order[i + 1]] not in positives}
        if not drop:
            return corpus
        corpus = [t for t in corpus if t not in drop]


@pytest.fixture(scope="module")
def models(tiny_bert_dir: Path):
    return (
        SentenceTransformer(str(tiny_bert_dir), device="cpu"),
        sentence_transformers.SentenceTransformer(str(tiny_bert_dir), device="cpu"),
    )


@pytest.fixture(scope="module")
def data(models):
    ours, _ = models
    anchors = unique_sentences(30, seed=1)
    positives = unique_sentences(30, seed=2)
    # five anchors get a second positive (duplicate queries, max_positives = 2)
    anchors, positives = anchors + anchors[:5], positives + unique_sentences(5, seed=9)
    corpus = tie_free_corpus(ours, anchors, positives, unique_sentences(160, seed=3))
    assert len(corpus) > 80
    return Dataset.from_dict({"query": anchors, "answer": positives}), corpus


def _flat(values: list) -> tuple[list[int], np.ndarray]:
    """Row lengths and all numbers of a score column (floats, or lists of floats of any length)."""
    rows = [v if isinstance(v, list) else [v] for v in values]
    return [len(r) for r in rows], np.array([x for r in rows for x in r], dtype=float)


def assert_same(ours: Dataset, reference: Dataset) -> None:
    assert ours.column_names == reference.column_names
    assert len(ours) == len(reference)
    for column in reference.column_names:
        if "score" in column:
            (our_lengths, our_values), (ref_lengths, ref_values) = (
                _flat(ours[column]),
                _flat(reference[column]),
            )
            assert our_lengths == ref_lengths, column
            np.testing.assert_allclose(our_values, ref_values, atol=1e-5)
        else:
            assert ours[column] == reference[column], column


def oracle(data, st_model, **kwargs) -> Dataset:
    dataset, corpus = data
    return sentence_transformers.util.mine_hard_negatives(
        dataset, st_model, corpus=corpus, verbose=False, **kwargs
    )


CI_OPTIONS = ("defaults", "range+relative_margin")
GRID = [
    pytest.param(fmt, opt, marks=[] if fmt in FORMATS[:2] or opt in CI_OPTIONS else [pytest.mark.slow])
    for fmt in FORMATS
    for opt in OPTIONS
]


@pytest.mark.parametrize(("output_format", "option"), GRID)
def test_in_process_equals_sentence_transformers(models, data, output_format: str, option: str) -> None:
    ours_model, st_model = models
    kwargs = {"output_format": output_format, **OPTIONS[option]}
    ours = mine_hard_negatives(data[0], ours_model, corpus=data[1], num_workers=0, verbose=False, **kwargs)
    reference = oracle(data, st_model, **kwargs)
    assert len(reference) > 0, "test data should leave some rows"
    assert_same(ours, reference)


def test_faiss_equals_exact(models, data) -> None:
    pytest.importorskip("faiss")
    kwargs = {"output_format": "n-tuple", "output_scores": True, "num_negatives": 5, "verbose": False}
    exact = mine_hard_negatives(data[0], models[0], corpus=data[1], num_workers=0, **kwargs)
    approx = mine_hard_negatives(data[0], models[0], corpus=data[1], num_workers=0, use_faiss=True, **kwargs)
    assert_same(approx, exact)


def allowed_negatives(model, data, window: tuple[int, int], max_score: float) -> dict[str, set[str]]:
    """Per query, the passages a random draw may pick: of the ``range_max + max_positives`` best passages,
    those that are not the query's positives and score at most ``max_score``, ranks ``range_min..range_max``."""
    dataset, corpus = data
    queries, answers = list(dataset["query"]), list(dataset["answer"])
    texts = list(dict.fromkeys(corpus + answers))
    emb = model.encode(texts, normalize_embeddings=True)
    max_positives = max(queries.count(q) for q in queries)
    out = {}
    for query in dict.fromkeys(queries):
        own = {p for q, p in zip(queries, answers) if q == query}
        scores = emb @ model.encode([query], normalize_embeddings=True)[0]
        top = np.argsort(-scores)[: window[1] + max_positives]
        ranked = [texts[i] for i in top if texts[i] not in own and scores[i] <= max_score]
        out[query] = set(ranked[window[0] : window[1]])
    return out


def test_random_sampling_seeded_and_from_allowed_candidates(models, data) -> None:
    ours_model, st_model = models
    kwargs = {
        "sampling_strategy": "random",
        "range_min": 3,
        "range_max": 20,
        "max_score": 0.98,
        "output_format": "triplet",
        "verbose": False,
    }
    runs = [
        mine_hard_negatives(data[0], ours_model, corpus=data[1], num_workers=0, seed=s, **kwargs)
        for s in (7, 7, 8)
    ]
    assert runs[0]["negative"] == runs[1]["negative"]
    assert runs[0]["negative"] != runs[2]["negative"]
    allowed = allowed_negatives(ours_model, data, (3, 20), 0.98)
    for run in runs:
        for query, negative in zip(run["query"], run["negative"]):
            assert negative in allowed[query]
    # the same draws as sentence-transformers' global `random` seeded alike
    random.seed(7)
    assert_same(runs[0], oracle(data, st_model, **{k: v for k, v in kwargs.items() if k != "verbose"}))


def test_bad_input_fails_early_naming_the_argument(models, data) -> None:
    dataset, corpus = data
    with pytest.raises(NotImplementedError, match="cross_encoder"):
        mine_hard_negatives(dataset, models[0], cross_encoder=object(), num_workers=0)
    with pytest.raises(ValueError, match="anchor_column_name='question'.*columns are"):
        mine_hard_negatives(dataset, models[0], anchor_column_name="question", num_workers=0)
    with pytest.raises(ValueError, match="Cannot mine 5 negatives"):
        mine_hard_negatives(dataset, models[0], range_min=8, range_max=10, num_negatives=5, num_workers=0)
    with pytest.raises(ValueError, match="query_prompt_name='query'"):
        mine_hard_negatives(dataset, models[0], query_prompt_name="query", num_workers=0)
    with pytest.raises(ValueError, match="output_format"):
        mine_hard_negatives(dataset, models[0], output_format="pairs", num_workers=0)


RAY_OPTIONS = {
    "output_format": "n-tuple",
    "output_scores": True,
    "range_min": 1,
    "absolute_margin": -0.015,
    "query_prompt": "query: ",
    "num_negatives": 4,
}


def test_ray_workers_equal_sentence_transformers(ray_session, models, data) -> None:
    """1 and 2 Ray workers: the same rows as sentence-transformers, and identical to each other."""
    reference = oracle(data, models[1], **RAY_OPTIONS)
    assert len(reference) > 0
    results = [
        mine_hard_negatives(data[0], models[0], corpus=data[1], num_workers=w, verbose=False, **RAY_OPTIONS)
        for w in (1, 2)
    ]
    for result in results:
        assert_same(result, reference)
    assert results[0].to_dict() == results[1].to_dict()


@pytest.mark.slow
@pytest.mark.parametrize("output_format", FORMATS)
def test_ray_every_format(ray_session, models, data, output_format: str, tmp_path: Path) -> None:
    kwargs = {"output_format": output_format, "relative_margin": -0.01, "output_scores": True}
    out = tmp_path / "mined.parquet"
    ours = mine_hard_negatives(
        data[0], models[0], corpus=data[1], num_workers=2, verbose=False, output_path=out, **kwargs
    )
    assert_same(ours, oracle(data, models[1], **kwargs))
    assert_same(Dataset.from_parquet(str(out)), ours)


def test_running_pool_is_reused_and_equals_a_fresh_call(ray_session, models, data) -> None:
    """``pool=`` (from ``start_multi_process_pool``) mines the rows a call with its own replicas mines, on the
    same actors each time (no start-up), and one replica per CPU runs one torch thread."""
    from raystx.infer import mining

    fresh = mine_hard_negatives(
        data[0], models[0], corpus=data[1], num_workers=2, verbose=False, **RAY_OPTIONS
    )
    assert mining.LAST_TIMINGS["start"] > 0
    pool = models[0].start_multi_process_pool(num_workers=2, cpus_per_worker=1)
    try:
        infos = pool.wait_ready()
        assert [i["threads"] for i in infos] == [1, 1] and len({i["pid"] for i in infos}) == 2
        for _ in range(2):
            reused = mine_hard_negatives(
                data[0], models[0], corpus=data[1], pool=pool, verbose=False, **RAY_OPTIONS
            )
            assert mining.LAST_TIMINGS["start"] == 0.0
            assert reused.to_dict() == fresh.to_dict()
        assert [i["pid"] for i in pool.wait_ready()] == [i["pid"] for i in infos]  # the same processes
        # the pool still encodes plain texts between mining calls
        np.testing.assert_allclose(
            models[0].encode(data[1][:20], pool=pool), models[0].encode(data[1][:20]), rtol=0, atol=1e-6
        )
    finally:
        models[0].stop_multi_process_pool(pool)
    with pytest.raises(ValueError, match="was stopped"):
        mine_hard_negatives(data[0], models[0], corpus=data[1], pool=pool, verbose=False)
    with pytest.raises(TypeError, match="start_multi_process_pool"):
        mine_hard_negatives(data[0], models[0], corpus=data[1], pool=object(), verbose=False)
