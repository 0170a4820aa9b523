"""MatryoshkaLoss: parity with sentence-transformers for plain, labelled and cached inner losses."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import make_sentences
from dist_harness import assert_same_loss_and_grads, loss_and_grads
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers.sentence_transformer import losses as st_losses

from raystx.losses import (
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    ColumnContract,
    CoSENTLoss,
    GISTEmbedLoss,
    MatryoshkaLoss,
    MSELoss,
    MultipleNegativesRankingLoss,
)
from raystx.losses.matryoshka import shrink
from raystx.models import SentenceTransformer

DIMS = [8, 32, 16]
WEIGHTS = [2.0, 1.0, 0.5]


@pytest.fixture(scope="module")
def models(tiny_bert_dir):
    """raystx and sentence-transformers models with the same weights, float64."""
    ours = SentenceTransformer(str(tiny_bert_dir), device="cpu").double()
    return ours, STModel(str(tiny_bert_dir), device="cpu").double()


def _features(model, num_columns: int, rows: int = 8, seed: int = 0):
    return [model.tokenize(make_sentences(rows, seed=seed + 7 * c)) for c in range(num_columns)]


def test_matryoshka_mnrl_matches_sentence_transformers(models):
    ours_model, st_model = models
    ours = loss_and_grads(
        ours_model,
        MatryoshkaLoss(ours_model, MultipleNegativesRankingLoss(ours_model), DIMS, WEIGHTS),
        _features(ours_model, 3),
    )
    ref = loss_and_grads(
        st_model,
        st_losses.MatryoshkaLoss(st_model, st_losses.MultipleNegativesRankingLoss(st_model), DIMS, WEIGHTS),
        _features(st_model, 3),
    )
    assert_same_loss_and_grads(ours, ref)


def test_matryoshka_runs_the_model_once_per_column(models):
    ours_model, _ = models
    calls = []
    handle = ours_model[0].register_forward_hook(lambda *args: calls.append(1))  # the transformer
    try:
        loss = MatryoshkaLoss(ours_model, MultipleNegativesRankingLoss(ours_model), DIMS, WEIGHTS)
        loss(_features(ours_model, 3), None)
    finally:
        handle.remove()
    assert len(calls) == 3
    assert "forward" not in ours_model.__dict__  # the patch is gone


def test_matryoshka_with_labels_matches_sentence_transformers(models):
    """CoSENT (float labels) and MSE (teacher-embedding labels, truncated per dimension)."""
    ours_model, st_model = models
    scores = torch.linspace(0, 1, 8, dtype=torch.float64)
    ours = loss_and_grads(
        ours_model,
        MatryoshkaLoss(ours_model, CoSENTLoss(ours_model), DIMS),
        _features(ours_model, 2),
        labels=scores,
    )
    ref = loss_and_grads(
        st_model,
        st_losses.MatryoshkaLoss(st_model, st_losses.CoSENTLoss(st_model), DIMS),
        _features(st_model, 2),
        labels=scores,
    )
    assert_same_loss_and_grads(ours, ref)

    teacher = torch.randn(8, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = loss_and_grads(
        ours_model,
        MatryoshkaLoss(ours_model, MSELoss(ours_model), DIMS),
        _features(ours_model, 1),
        labels=teacher,
    )
    ref = loss_and_grads(
        st_model,
        st_losses.MatryoshkaLoss(st_model, st_losses.MSELoss(st_model), DIMS),
        _features(st_model, 1),
        labels=teacher,
    )
    assert_same_loss_and_grads(ours, ref)


def test_matryoshka_wraps_cached_loss(models):
    ours_model, st_model = models
    features = _features(ours_model, 3, rows=10, seed=3)
    cached = loss_and_grads(
        ours_model,
        MatryoshkaLoss(
            ours_model, CachedMultipleNegativesRankingLoss(ours_model, mini_batch_size=3), DIMS, WEIGHTS
        ),
        features,
    )
    plain = loss_and_grads(
        ours_model,
        MatryoshkaLoss(ours_model, MultipleNegativesRankingLoss(ours_model), DIMS, WEIGHTS),
        features,
    )
    st_inner = st_losses.CachedMultipleNegativesRankingLoss(st_model, mini_batch_size=3)
    ref = loss_and_grads(
        st_model,
        st_losses.MatryoshkaLoss(st_model, st_inner, DIMS, WEIGHTS),
        _features(st_model, 3, rows=10, seed=3),
    )
    assert_same_loss_and_grads(cached, plain)
    assert_same_loss_and_grads(cached, ref)


def test_matryoshka_wraps_gist_plain_and_cached(models, tiny_bert_dir):
    ours_model, _ = models
    guide = SentenceTransformer(str(tiny_bert_dir), device="cpu").double()
    guide.max_seq_length = 7  # forces re-tokenization for the guide
    features = _features(ours_model, 2, seed=5)
    plain = loss_and_grads(
        ours_model, MatryoshkaLoss(ours_model, GISTEmbedLoss(ours_model, guide), DIMS), features
    )
    cached = loss_and_grads(
        ours_model,
        MatryoshkaLoss(ours_model, CachedGISTEmbedLoss(ours_model, guide, mini_batch_size=3), DIMS),
        features,
    )
    assert_same_loss_and_grads(cached, plain)


def test_matryoshka_dims_per_step_matches_sentence_transformers(models):
    ours_model, st_model = models
    random.seed(11)
    ours = loss_and_grads(
        ours_model,
        MatryoshkaLoss(
            ours_model, MultipleNegativesRankingLoss(ours_model), DIMS, WEIGHTS, n_dims_per_step=2
        ),
        _features(ours_model, 2, seed=2),
    )
    random.seed(11)
    ref = loss_and_grads(
        st_model,
        st_losses.MatryoshkaLoss(
            st_model, st_losses.MultipleNegativesRankingLoss(st_model), DIMS, WEIGHTS, n_dims_per_step=2
        ),
        _features(st_model, 2, seed=2),
    )
    assert_same_loss_and_grads(ours, ref)


def test_matryoshka_from_embeddings_direct_formula():
    g = torch.Generator().manual_seed(0)
    a, p = (
        torch.randn(5, 32, generator=g, dtype=torch.float64),
        torch.randn(5, 32, generator=g, dtype=torch.float64),
    )
    inner = MultipleNegativesRankingLoss(None, scale=5.0, similarity_fct=lambda x, y: x @ y.T)
    value = MatryoshkaLoss(None, inner, DIMS, WEIGHTS).compute_loss_from_embeddings([a, p])
    expected = sum(
        w * torch.nn.functional.cross_entropy(5.0 * shrink(a, d) @ shrink(p, d).T, torch.arange(5))
        for d, w in zip(DIMS, WEIGHTS)
    )
    torch.testing.assert_close(value, expected)


def test_matryoshka_validation_and_config(models):
    ours_model, _ = models
    inner = CoSENTLoss(ours_model)
    with pytest.raises(ValueError):
        MatryoshkaLoss(ours_model, inner, [])
    with pytest.raises(ValueError):
        MatryoshkaLoss(ours_model, inner, [64])  # larger than the model dimension 32
    with pytest.raises(ValueError):
        MatryoshkaLoss(ours_model, inner, [32, 16], [1.0])
    loss = MatryoshkaLoss(ours_model, inner, [16, 32], [0.5, 1.0])
    assert loss.contract == inner.contract
    inner.alternative_contracts = (ColumnContract(3, 3, "float"),)  # wrappers pass these on too
    assert MatryoshkaLoss(ours_model, inner, [32]).alternative_contracts == inner.alternative_contracts
    assert loss.get_config_dict() == {
        "loss": "CoSENTLoss",
        "matryoshka_dims": (32, 16),
        "matryoshka_weights": (1.0, 0.5),
        "n_dims_per_step": -1,
    }
