"""GISTEmbedLoss / CachedGISTEmbedLoss: parity with sentence-transformers on tiny models (value and gradients)."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_bert, make_sentences
from dist_harness import assert_same_loss_and_grads, loss_and_grads
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers.sentence_transformer import losses as st_losses

from raystx.losses._ranking_gist import gist_rows
from raystx.losses._ranking_infonce import GlobalBatch
from raystx.losses.cached_gist_embed import CachedGISTEmbedLoss
from raystx.losses.gist_embed import GISTEmbedLoss
from raystx.models import SentenceTransformer


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-guide"), seed=1, hidden=16)


@pytest.fixture(scope="module")
def models(tiny_bert_dir, guide_dir):
    """raystx and sentence-transformers models from the same weights, in float64 for tight comparisons."""
    return {
        "ours": SentenceTransformer(str(tiny_bert_dir), device="cpu").double(),
        "ours_guide": SentenceTransformer(str(guide_dir), device="cpu").double(),
        "st": STModel(str(tiny_bert_dir), device="cpu").double(),
        "st_guide": STModel(str(guide_dir), device="cpu").double(),
    }


def _features(model, num_columns: int, rows: int = 8, seed: int = 0):
    return [model.tokenize(make_sentences(rows, seed=seed + 31 * c)) for c in range(num_columns)]


SETTINGS = [
    dict(),
    dict(margin_strategy="absolute", margin=0.05),
    dict(margin_strategy="relative", margin=0.02, temperature=0.05),
    dict(contrast_anchors=False, contrast_positives=False),
]


@pytest.mark.parametrize("num_columns", [2, 3])
@pytest.mark.parametrize("kwargs", SETTINGS)
def test_gist_matches_sentence_transformers(models, num_columns, kwargs):
    ours_model, st_model = models["ours"], models["st"]
    features = _features(ours_model, num_columns, seed=num_columns)
    st_features = _features(st_model, num_columns, seed=num_columns)
    ours = loss_and_grads(ours_model, GISTEmbedLoss(ours_model, models["ours_guide"], **kwargs), features)
    ref = loss_and_grads(
        st_model, st_losses.GISTEmbedLoss(st_model, models["st_guide"], **kwargs), st_features
    )
    assert_same_loss_and_grads(ours, ref)


@pytest.mark.parametrize("kwargs", [dict(), dict(margin_strategy="relative", margin=0.01)])
def test_cached_gist_matches_plain_and_sentence_transformers(models, kwargs):
    ours_model, st_model = models["ours"], models["st"]
    features = _features(ours_model, 4, rows=10, seed=11)
    st_features = _features(st_model, 4, rows=10, seed=11)
    guide = models["ours_guide"]
    cached = loss_and_grads(
        ours_model, CachedGISTEmbedLoss(ours_model, guide, mini_batch_size=3, **kwargs), features
    )
    plain = loss_and_grads(ours_model, GISTEmbedLoss(ours_model, guide, **kwargs), features)
    ref = loss_and_grads(
        st_model,
        st_losses.CachedGISTEmbedLoss(st_model, models["st_guide"], mini_batch_size=3, **kwargs),
        st_features,
    )
    assert_same_loss_and_grads(cached, plain)
    assert_same_loss_and_grads(cached, ref)


def test_gist_retokenizes_for_a_shorter_guide(models, tiny_bert_dir):
    """A guide with a shorter max_seq_length gets decoded-and-retokenized inputs (as in ST)."""
    ours_model, st_model = models["ours"], models["st"]
    ours_guide = SentenceTransformer(str(tiny_bert_dir), device="cpu").double()
    st_guide = STModel(str(tiny_bert_dir), device="cpu").double()
    ours_guide.max_seq_length = st_guide.max_seq_length = 6
    loss = GISTEmbedLoss(ours_model, ours_guide)
    assert loss.must_retokenize
    features = _features(ours_model, 2, seed=4)
    ours = loss_and_grads(ours_model, loss, features)
    ref = loss_and_grads(
        st_model, st_losses.GISTEmbedLoss(st_model, st_guide), _features(st_model, 2, seed=4)
    )
    assert_same_loss_and_grads(ours, ref)
    assert not GISTEmbedLoss(ours_model, models["st_guide"]).must_retokenize  # same vocab and length 128


def test_gist_rows_direct_formula():
    """With the guide equal to the model and margin 0, a candidate survives iff it scores below the positive."""
    g = torch.Generator().manual_seed(0)
    a, p = (
        torch.randn(5, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
    )
    batch = GlobalBatch(a, [p], 0, 5)
    per_row, kept = gist_rows(batch, batch, torch.arange(5), 0.1, "absolute", 0.0, False, False)
    sims = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(p, dim=-1).T
    positive = sims.diagonal().unsqueeze(1)
    logits = (sims / 0.1).masked_fill((sims > positive) & ~torch.eye(5, dtype=torch.bool), float("-inf"))
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(5), reduction="none")
    torch.testing.assert_close(per_row, expected)
    assert kept.tolist() == ((sims < positive).sum(dim=1)).tolist()


def test_gist_validates_options(models):
    with pytest.raises(ValueError):
        GISTEmbedLoss(models["ours"], models["ours_guide"], margin_strategy="soft")
    with pytest.raises(ValueError):
        GISTEmbedLoss(models["ours"], models["ours_guide"]).compute_loss_from_embeddings(
            [torch.ones(2, 3)] * 2
        )
