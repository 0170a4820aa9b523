"""The sharded exact search (no Ray): chunked, sharded and merged top-k equals one full matmul + ``torch.topk``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raystx.infer import search
from raystx.infer.search import CorpusShard, merge_parts, merge_topk


def _data(n_corpus: int = 53, n_queries: int = 9, dim: int = 8):
    gen = torch.Generator().manual_seed(0)
    corpus = torch.nn.functional.normalize(torch.randn(n_corpus, dim, generator=gen), dim=-1).numpy()
    queries = torch.nn.functional.normalize(torch.randn(n_queries, dim, generator=gen), dim=-1).numpy()
    return corpus, queries


@pytest.mark.parametrize("num_shards", [1, 3])
def test_sharded_chunked_topk_equals_full_topk(monkeypatch, num_shards: int) -> None:
    monkeypatch.setattr(search, "SCORES_PER_CHUNK", 9 * 5)  # 5 corpus rows per chunk for 9 queries
    corpus, queries = _data()
    k = 12
    reference = torch.topk(torch.from_numpy(queries) @ torch.from_numpy(corpus).T, k=k, dim=1)
    ids = np.random.default_rng(1).permutation(len(corpus))  # shards get interleaved, unsorted ids
    parts = []
    pair_rows, pair_ids = np.array([0, 4, 8]), np.array([3, 50, 17])
    for shard_ids in np.array_split(ids, num_shards):
        shard = CorpusShard("cosine", 1, use_faiss=False)
        shard.load_arrays(shard_ids, corpus[shard_ids])
        parts.append(shard.search(queries, k, pair_rows, pair_ids))
    scores, top_ids, pair_scores = merge_parts(parts, k, len(pair_ids))
    np.testing.assert_array_equal(top_ids, reference.indices.numpy())
    np.testing.assert_allclose(scores, reference.values.numpy(), atol=1e-6)
    expected_pairs = (queries[pair_rows] * corpus[pair_ids]).sum(1)
    np.testing.assert_allclose(pair_scores, expected_pairs, atol=1e-6)


def test_merge_topk_pads_short_rows_and_orders_ties_by_id() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1]], dtype=np.float32)
    ids = np.array([[7, 2, 3, -1]])
    top_scores, top_ids = merge_topk(scores, ids, 5)
    assert top_ids.tolist() == [[2, 3, 7, -1, -1]]
    assert top_scores[0, :3].tolist() == pytest.approx([0.9, 0.5, 0.5])
    assert np.isneginf(top_scores[0, 3:]).all()


def test_faiss_shard_equals_exact_shard() -> None:
    pytest.importorskip("faiss")
    corpus, queries = _data()
    ids = np.arange(len(corpus))
    exact, approx = CorpusShard("cosine", 1, use_faiss=False), CorpusShard("cosine", 1, use_faiss=True)
    exact.load_arrays(ids, corpus)
    approx.load_arrays(ids, corpus)
    a = exact.search(queries, 10, np.empty(0, np.int64), np.empty(0, np.int64))
    b = approx.search(queries, 10, np.empty(0, np.int64), np.empty(0, np.int64))
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
