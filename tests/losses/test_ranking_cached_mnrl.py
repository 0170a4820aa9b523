"""CachedMultipleNegativesRankingLoss: equals MNRL (value and parameter gradients) and matches ST's cached loss."""

from __future__ import annotations

import pytest
import torch
from conftest import make_sentences
from dist_harness import assert_same_loss_and_grads, loss_and_grads
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers.sentence_transformer import losses as st_losses

from raystx.losses._cached_gradcache import RngSnapshot, minibatch_ranges, slice_features
from raystx.losses.cached_multiple_negatives_ranking import CachedMultipleNegativesRankingLoss
from raystx.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer


@pytest.fixture(scope="module")
def st_model(tiny_bert_dir):
    """The sentence-transformers oracle model (float64 for tight gradient comparisons)."""
    return STModel(str(tiny_bert_dir), device="cpu").double()


@pytest.fixture(scope="module")
def model(tiny_bert_dir):
    """The raystx model with the same weights (float64)."""
    return SentenceTransformer(str(tiny_bert_dir), device="cpu").double()


def _features(model, num_columns: int, rows: int = 10, seed: int = 0):
    return [model.tokenize(make_sentences(rows, seed=seed + 17 * c)) for c in range(num_columns)]


@pytest.mark.parametrize("num_columns", [2, 3])
def test_cached_equals_plain_mnrl(model, num_columns):
    features = _features(model, num_columns)
    plain = loss_and_grads(model, MultipleNegativesRankingLoss(model), features)
    cached = loss_and_grads(model, CachedMultipleNegativesRankingLoss(model, mini_batch_size=4), features)
    assert_same_loss_and_grads(cached, plain)


def test_cached_matches_sentence_transformers(model, st_model):
    kwargs = dict(
        scale=15.0,
        mini_batch_size=3,
        directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
        hardness_mode="all_negatives",
        hardness_strength=2.0,
    )
    ours = loss_and_grads(
        model, CachedMultipleNegativesRankingLoss(model, **kwargs), _features(model, 3, seed=5)
    )
    ref = loss_and_grads(
        st_model,
        st_losses.CachedMultipleNegativesRankingLoss(st_model, **kwargs),
        _features(st_model, 3, seed=5),
    )
    assert_same_loss_and_grads(ours, ref)


def test_cached_scales_with_outer_gradient(model):
    """The replay hook multiplies by grad_output, so ``(0.25 * loss).backward()`` gives 0.25x gradients."""
    features = _features(model, 2, seed=9)
    loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=4)
    _, grads = loss_and_grads(model, loss, features)
    _, quarter = loss_and_grads(model, loss, features, scale=0.25)
    for name in grads:
        torch.testing.assert_close(quarter[name], 0.25 * grads[name], rtol=1e-9, atol=1e-12)


def test_cached_without_grad_returns_plain_value(model):
    features = _features(model, 2, seed=3)
    with torch.no_grad():
        cached = CachedMultipleNegativesRankingLoss(model, mini_batch_size=3)(
            [dict(f) for f in features], None
        )
        plain = MultipleNegativesRankingLoss(model)([dict(f) for f in features], None)
    torch.testing.assert_close(cached, plain, rtol=1e-9, atol=1e-12)


def test_rng_snapshot_replays_dropout():
    dropout = torch.nn.Dropout(0.5)
    x = torch.ones(64)
    snapshot = RngSnapshot([x])
    first = dropout(x)
    after_first = dropout(x)
    with snapshot:
        replay = dropout(x)
    assert torch.equal(first, replay)
    # leaving the snapshot restores the outer stream: the next draw continues where it was
    torch.manual_seed(0)
    torch.rand(3)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    torch.rand(3)
    with RngSnapshot([x]):
        torch.rand(5)
    assert torch.equal(torch.rand(3), expected_next)
    assert not torch.equal(first, after_first)


def test_minibatch_ranges_and_slicing():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    features = {"input_ids": mask * 7, "attention_mask": mask, "sentence_id": "x"}
    assert minibatch_ranges(features, 2) == [(0, 2), (2, 4), (4, 5)]
    # token budget 4 over row lengths 3, 2, 1, 4, 1: pack while the sum stays within the budget
    assert minibatch_ranges(features, 2, mini_batch_num_tokens=4) == [(0, 1), (1, 3), (3, 4), (4, 5)]
    mb = slice_features(features, 1, 3)
    assert mb["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert mb["input_ids"].shape == (2, 2) and mb["sentence_id"] == "x"


def test_cached_replays_dropout_masks(tiny_bert_dir):
    """With dropout on, step 3 re-embeds every mini-batch exactly as step 1 did (RNG state restored)."""
    model = SentenceTransformer(str(tiny_bert_dir), device="cpu").double()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
    model.train()
    loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=3)
    seen: list[torch.Tensor] = []
    original = loss.embed_minibatch

    def recording(features):
        out = original(features)
        seen.append(out.detach().clone())
        return out

    loss.embed_minibatch = recording
    features = _features(model, 2, rows=7, seed=21)
    torch.manual_seed(0)
    value = loss([dict(f) for f in features], None)
    first_pass = list(seen)
    seen.clear()
    value.backward()
    assert len(first_pass) == len(seen) == 6  # 2 columns x 3 mini-batches
    assert all(p.grad is not None for p in model[0].auto_model.encoder.parameters())
    for a, b in zip(first_pass, seen):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.eval()
    with torch.no_grad():
        clean = model(dict(features[0]))["sentence_embedding"][:3]
    assert not torch.allclose(first_pass[0], clean)  # dropout really was active
