"""The driver-side arithmetic of ``raystx.infer.replicas`` (no Ray): length order and chunk sizes."""

from __future__ import annotations

import numpy as np

from raystx.infer.replicas import CHUNKS_PER_REPLICA, chunk_rows, length_order, thread_env


def test_length_order_is_longest_first_and_stable() -> None:
    texts = ["aa", "b", "cccc", "dd", "", "eeee"]
    assert length_order(texts).tolist() == [2, 5, 0, 3, 1, 4]
    assert length_order([]).tolist() == []


def test_chunk_rows_are_whole_batches_between_one_batch_and_the_cap() -> None:
    # 20,000 texts on 2 replicas: ~32 chunks each, rounded up to whole batches of 32
    assert chunk_rows(20_000, 32, 2, 1024) == 320
    assert 20_000 / 320 / 2 <= CHUNKS_PER_REPLICA
    assert chunk_rows(1_000_000, 32, 2, 1024) == 1024  # capped
    assert chunk_rows(10, 32, 2, 1024) == 32  # never less than one batch
    for total, batch, replicas in [(4500, 16, 1), (4500, 16, 2), (77, 5, 3)]:
        rows = chunk_rows(total, batch, replicas, 10_000)
        assert rows % batch == 0 and np.ceil(total / rows) <= CHUNKS_PER_REPLICA * replicas


def test_one_thread_replicas_keep_every_thread_pool_to_one() -> None:
    assert thread_env(1) == {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "RAYON_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    assert "TOKENIZERS_PARALLELISM" not in thread_env(4) and thread_env(4)["OMP_NUM_THREADS"] == "4"
