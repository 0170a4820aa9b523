"""Symmetric ranking, MegaBatchMargin and GlobalOrthogonalRegularization losses vs sentence-transformers."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_sentences
from dist_harness import assert_same_loss_and_grads, loss_and_grads
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers.sentence_transformer import losses as st_losses
from sentence_transformers.util import dot_score as st_dot_score

from raystx.losses import (
    CachedMultipleNegativesSymmetricRankingLoss,
    GlobalOrthogonalRegularizationLoss,
    MegaBatchMarginLoss,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)
from raystx.models import SentenceTransformer
from raystx.util import dot_score


@pytest.fixture(scope="module")
def models(tiny_bert_dir):
    """raystx and sentence-transformers models with the same weights, float64."""
    return SentenceTransformer(str(tiny_bert_dir), device="cpu").double(), STModel(
        str(tiny_bert_dir), device="cpu"
    ).double()


def _features(model, num_columns: int, rows: int = 9, seed: int = 0):
    return [model.tokenize(make_sentences(rows, seed=seed + 13 * c)) for c in range(num_columns)]


def _random(num_columns: int, rows: int = 7, dim: int = 5, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, dim, generator=g, dtype=torch.float64) for _ in range(num_columns)]


def _value_and_grads(fn, embeddings):
    leaves = [e.clone().requires_grad_() for e in embeddings]
    value = fn(leaves)
    total = sum(value.values()) if isinstance(value, dict) else value
    total.backward()
    return value, [x.grad for x in leaves]


def _st(cls, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cls(*args, **kwargs)


# -- symmetric ranking ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_columns", [2, 3])
def test_symmetric_matches_sentence_transformers(num_columns):
    embeddings = _random(num_columns, seed=num_columns)
    ours = _value_and_grads(
        lambda e: MultipleNegativesSymmetricRankingLoss(None, scale=9.0).compute_loss_from_embeddings(e),
        embeddings,
    )
    ref_loss = _st(st_losses.MultipleNegativesSymmetricRankingLoss, None, scale=9.0)
    ref = _value_and_grads(lambda e: ref_loss.compute_loss_from_embeddings(e, None), embeddings)
    torch.testing.assert_close(ours[0], ref[0])
    for g, rg in zip(ours[1], ref[1]):
        torch.testing.assert_close(g, rg)


def test_symmetric_equals_mean_of_both_directions():
    a, p = _random(2, seed=4)
    value = MultipleNegativesSymmetricRankingLoss(None).compute_loss_from_embeddings([a, p])
    forward = MultipleNegativesRankingLoss(None).compute_loss_from_embeddings([a, p])
    backward = MultipleNegativesRankingLoss(None).compute_loss_from_embeddings([p, a])
    torch.testing.assert_close(value, (forward + backward) / 2)


def test_cached_symmetric_matches_plain_and_sentence_transformers(models):
    ours_model, st_model = models
    features = _features(ours_model, 2, seed=1)
    cached = loss_and_grads(
        ours_model, CachedMultipleNegativesSymmetricRankingLoss(ours_model, mini_batch_size=4), features
    )
    plain = loss_and_grads(ours_model, MultipleNegativesSymmetricRankingLoss(ours_model), features)
    ref_loss = _st(st_losses.CachedMultipleNegativesSymmetricRankingLoss, st_model, mini_batch_size=4)
    ref = loss_and_grads(st_model, ref_loss, _features(st_model, 2, seed=1))
    assert_same_loss_and_grads(cached, plain)
    assert_same_loss_and_grads(cached, ref)


# -- MegaBatchMargin ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("positive_margin", "negative_margin"), [(0.8, 0.3), (0.2, -0.4)])
def test_mega_batch_margin_matches_sentence_transformers(positive_margin, negative_margin):
    embeddings = _random(2, rows=8, seed=2)
    ours_loss = MegaBatchMarginLoss(None, positive_margin, negative_margin, use_mini_batched_version=False)
    ours = _value_and_grads(ours_loss.compute_loss_from_embeddings, embeddings)
    ref_loss = st_losses.MegaBatchMarginLoss(
        None, positive_margin, negative_margin, use_mini_batched_version=False, mini_batch_size=3
    )
    ref = _value_and_grads(lambda e: ref_loss.calculate_loss([[e[0]], [e[1]]]), embeddings)
    torch.testing.assert_close(ours[0], ref[0])
    for g, rg in zip(ours[1], ref[1]):
        torch.testing.assert_close(g, rg)


def test_mega_batch_margin_direct_formula():
    a, p = _random(2, rows=6, seed=8)
    value = MegaBatchMarginLoss(None, 0.5, 0.1).compute_loss_from_embeddings([a, p])
    sims = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(p, dim=-1).T
    hardest = sims.masked_fill(torch.eye(6, dtype=torch.bool), -2.0).max(dim=1).values
    expected = (torch.relu(0.5 - sims.diagonal()) + torch.relu(hardest - 0.1)).mean()
    torch.testing.assert_close(value, expected)


def test_mega_batch_margin_model_level(models):
    ours_model, st_model = models
    features = _features(ours_model, 2, seed=6)
    cached = loss_and_grads(
        ours_model, MegaBatchMarginLoss(ours_model, 0.9, 0.0, mini_batch_size=4), features
    )
    plain = loss_and_grads(
        ours_model, MegaBatchMarginLoss(ours_model, 0.9, 0.0, use_mini_batched_version=False), features
    )
    ref = loss_and_grads(
        st_model,
        st_losses.MegaBatchMarginLoss(st_model, 0.9, 0.0, mini_batch_size=4),
        _features(st_model, 2, seed=6),
    )
    assert_same_loss_and_grads(cached, plain)
    assert_same_loss_and_grads(cached, ref)
    with pytest.raises(ValueError):
        MegaBatchMarginLoss(ours_model)(_features(ours_model, 3), None)


# -- GlobalOrthogonalRegularization -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(mean_weight=0.0, aggregation="sum"), dict(second_moment_weight=None, mean_weight=2.5)],
)
@pytest.mark.parametrize("num_columns", [1, 3])
def test_gor_matches_sentence_transformers(kwargs, num_columns):
    embeddings = _random(num_columns, rows=6, dim=3, seed=num_columns)
    ours = _value_and_grads(
        GlobalOrthogonalRegularizationLoss(None, **kwargs).compute_loss_from_embeddings, embeddings
    )
    ref_loss = st_losses.GlobalOrthogonalRegularizationLoss(None, **kwargs)
    ref = _value_and_grads(ref_loss.compute_loss_from_embeddings, embeddings)
    assert ours[0].keys() == ref[0].keys()
    for key in ours[0]:
        torch.testing.assert_close(ours[0][key], ref[0][key])
    for g, rg in zip(ours[1], ref[1]):
        torch.testing.assert_close(g, rg)


def test_gor_dot_score_and_single_row():
    embeddings = _random(2, rows=5, dim=4, seed=3)
    ours = GlobalOrthogonalRegularizationLoss(None, similarity_fct=dot_score)
    ref = st_losses.GlobalOrthogonalRegularizationLoss(None, similarity_fct=st_dot_score)
    for key, value in ours.compute_loss_from_embeddings(embeddings).items():
        torch.testing.assert_close(value, ref.compute_loss_from_embeddings(embeddings)[key])
    assert ours.get_config_dict()["similarity_fct"] == "dot_score"
    single = GlobalOrthogonalRegularizationLoss(None).compute_loss_from_embeddings([torch.ones(1, 4)])
    assert all(float(v) == 0.0 for v in single.values())
    with pytest.raises(ValueError):
        GlobalOrthogonalRegularizationLoss(None, mean_weight=0.0, second_moment_weight=None)
