"""Mining against a 1M-passage corpus on 2 Ray workers keeps the driver's peak RSS within +150 MiB.

The corpus (1,000,000 distinct short passages) is generated here, never stored. The model is a static
(bag-of-tokens) embedding of width 64 over the tiny test vocabulary, so encoding a million passages takes
seconds per worker; its corpus embeddings (1M x 64 x 4 B = 244 MiB) are larger than the allowed growth, so
they must stay in the object store and the shard actors. The driver's RSS (which includes the shared-memory
pages of objects the driver itself puts) is sampled every 20 ms from just before the call to its end; a
small warm-up call first pays the one-time imports and Ray Data start-up, which do not grow with the corpus.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_mining_memory import PeakRSS, synthetic_passages

from raystx.testing import WORDS, build_wordpiece_tokenizer, write_wordpiece_vocab

N_PASSAGES = 1_000_000
N_QUERIES = 200
DIM = 64
MAX_GROWTH_MIB = 150


@pytest.mark.slow
def test_a_million_passages_keep_the_driver_flat(ray_session, tmp_path: Path) -> None:
    from datasets import Dataset

    from raystx.models import SentenceTransformer, StaticEmbedding
    from raystx.util import mine_hard_negatives

    tokenizer = build_wordpiece_tokenizer(write_wordpiece_vocab(tmp_path / "vocab.txt"))
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=DIM)], device="cpu")
    corpus = synthetic_passages(N_PASSAGES)
    pairs = Dataset.from_dict(
        {
            "anchor": [
                f"query {i} {WORDS[i % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]}" for i in range(N_QUERIES)
            ],
            "positive": corpus[:: N_PASSAGES // N_QUERIES][:N_QUERIES],
        }
    )
    options = {"num_negatives": 3, "output_format": "triplet", "num_workers": 2, "batch_size": 512}
    warm = mine_hard_negatives(pairs, model, corpus=corpus[:2000], verbose=False, **options)
    assert len(warm) == 3 * N_QUERIES

    started = time.perf_counter()
    with PeakRSS(interval=0.02) as rss:
        start = rss.peak
        mined = mine_hard_negatives(pairs, model, corpus=corpus, verbose=False, **options)
    growth_mib = (rss.peak - start) / 2**20
    embeddings_mib = N_PASSAGES * DIM * 4 / 2**20
    print(
        f"1M passages mined in {time.perf_counter() - started:.0f} s; driver RSS {start / 2**20:.0f} MiB at "
        f"start, peak growth {growth_mib:.1f} MiB (corpus embeddings {embeddings_mib:.0f} MiB)"
    )
    assert len(mined) == 3 * N_QUERIES  # triplet: one row per (query, negative)
    assert set(mined["anchor"]) == set(pairs["anchor"])
    passages = set(corpus)
    assert all(negative in passages for negative in mined["negative"])
    assert embeddings_mib > MAX_GROWTH_MIB
    assert growth_mib < MAX_GROWTH_MIB
