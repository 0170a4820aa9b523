"""``model.encode(..., pool=...)`` on 2 Ray actors returns what ``encode`` in this process returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raystx.infer import InferencePool
from raystx.infer.model_pool import EncodePool, pool_from_devices
from raystx.models import SentenceTransformer
from raystx.testing import make_sentences


@pytest.fixture(scope="module")
def model(tiny_bert_dir) -> SentenceTransformer:
    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.prompts = {"query": "query: "}
    return model


def test_pool_encode_equals_local_encode(ray_session, model):
    texts = make_sentences(203, seed=3)  # not a multiple of the chunk size: a short last chunk
    pool = model.start_multi_process_pool(num_workers=2)
    try:
        assert isinstance(pool, EncodePool) and pool.num_workers == 2
        ours = model.encode(texts, pool=pool, chunk_size=25, batch_size=16)
        expected = model.encode(texts, batch_size=16)
        assert ours.shape == expected.shape == (203, 32)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)

        # prompt, normalization, truncation and tensor output go through the pool the same way
        ours = model.encode_query(
            texts[:50], pool=pool, normalize_embeddings=True, truncate_dim=16, convert_to_tensor=True
        )
        expected = model.encode_query(
            texts[:50], normalize_embeddings=True, truncate_dim=16, convert_to_tensor=True
        )
        assert isinstance(ours, torch.Tensor) and ours.shape == (50, 16)
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
        assert not torch.allclose(
            ours,
            model.encode(texts[:50], normalize_embeddings=True, truncate_dim=16, convert_to_tensor=True),
            atol=1e-3,
        )  # the prompt counted
    finally:
        model.stop_multi_process_pool(pool)
    with pytest.raises(ValueError, match="was stopped"):
        model.encode(texts, pool=pool)


@pytest.mark.slow  # CI keeps the float pool parity run
def test_pool_encode_quantizes_the_whole_matrix_like_local_encode(ray_session, model):
    """int8 ranges come from all rows (as in one process), not per chunk; an ``InferencePool`` works too."""
    texts = make_sentences(60, seed=5)
    ours = model.encode(texts, pool=InferencePool(num_workers=2), chunk_size=10, precision="int8")
    np.testing.assert_array_equal(ours, model.encode(texts, precision="int8"))


def test_pool_rejects_what_it_cannot_encode_before_starting_actors(model):
    with pytest.raises(ValueError, match="sentence embeddings only"):
        model.encode(["a b"], pool=InferencePool(), output_value="token_embeddings")
    with pytest.raises(TypeError, match="start_multi_process_pool"):
        model.encode(["a b"], pool={"processes": []})
    with pytest.raises(ValueError, match="chunk_size"):
        model.encode(["a b"], pool=EncodePool(InferencePool()), chunk_size=0)


def test_target_devices_size_the_pool():
    assert pool_from_devices(["cpu", "cpu", "cpu"]) == InferencePool(num_workers=3)
    assert pool_from_devices(["cuda:0", "cuda:1"]) == InferencePool(num_workers=2, use_gpu=True)
    with pytest.raises(ValueError, match="mixes CPU and GPU"):
        pool_from_devices(["cpu", "cuda:0"])
