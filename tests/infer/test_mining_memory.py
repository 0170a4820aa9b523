"""Mining a corpus whose embeddings are larger than the allowed driver growth keeps the driver's RSS flat.

A synthetic 200k-passage corpus (generated here, never stored) and a tiny BERT with 256-dim embeddings: the
corpus embeddings take 200_000 x 256 x 4 B = 195 MiB. They live in the Ray object store and the shard actors;
the driver only holds the texts, the (queries, k) candidates and the result, so its peak RSS (sampled every
50 ms) may grow by at most 120 MiB over its value before the call (measured: 90 MiB).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from raystx.testing import WORDS, build_tiny_bert

N_PASSAGES = 200_000
N_QUERIES = 64
EMBEDDING_MIB = N_PASSAGES * 256 * 4 / 2**20
MAX_GROWTH_MIB = 120  # measured: 90 MiB (driver-side text blocks, Ray bookkeeping)


def synthetic_passages(n: int) -> list[str]:
    """``n`` distinct short passages: word i of the vocabulary mixed by the digits of the row number."""
    words = len(WORDS)
    return [" ".join(WORDS[(i // words**j + j * 7) % words] for j in range(4)) + f" {i}" for i in range(n)]


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_driver_rss_stays_flat_for_a_large_corpus(ray_session, tmp_path: Path) -> None:
    from datasets import Dataset

    from raystx.models import SentenceTransformer
    from raystx.util import mine_hard_negatives

    model = SentenceTransformer(str(build_tiny_bert(tmp_path / "wide", hidden=256, layers=1)), device="cpu")
    assert model.get_sentence_embedding_dimension() == 256
    corpus = synthetic_passages(N_PASSAGES)
    pairs = Dataset.from_dict(
        {
            "anchor": [f"query {i} {WORDS[i % len(WORDS)]}" for i in range(N_QUERIES)],
            "positive": corpus[:N_QUERIES],
        }
    )
    assert EMBEDDING_MIB > MAX_GROWTH_MIB
    with PeakRSS() as rss:
        start = rss.peak
        mined = mine_hard_negatives(
            pairs, model, corpus=corpus, num_negatives=3, output_format="n-tuple", num_workers=2,
            batch_size=256, verbose=False,
        )  # fmt: skip
    growth_mib = (rss.peak - start) / 2**20
    print(f"driver peak RSS growth {growth_mib:.1f} MiB (corpus embeddings {EMBEDDING_MIB:.0f} MiB)")
    assert len(mined) == N_QUERIES
    assert growth_mib < MAX_GROWTH_MIB
