"""AdaptiveLayerLoss / Matryoshka2dLoss: parity with sentence-transformers on a tiny float64 model."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch
from conftest import build_tiny_bert, make_sentences
from dist_harness import assert_same_loss_and_grads, loss_and_grads
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers.sentence_transformer import losses as st_losses

from raystx.losses import (
    AdaptiveLayerLoss,
    CachedMultipleNegativesRankingLoss,
    CoSENTLoss,
    Matryoshka2dLoss,
    MultipleNegativesRankingLoss,
)
from raystx.models import SentenceTransformer


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 3-layer tiny BERT as raystx and sentence-transformers models (float64)."""
    directory = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-3l"), seed=5, layers=3)
    return (
        SentenceTransformer(str(directory), device="cpu").double(),
        STModel(str(directory), device="cpu").double(),
    )


def _features(model, num_columns: int, rows: int = 7, seed: int = 0):
    return [model.tokenize(make_sentences(rows, seed=seed + 5 * c)) for c in range(num_columns)]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_layers_per_step=-1),
        dict(n_layers_per_step=-1, layer_weighting="log", last_layer_weight=0.7, prior_layers_weight=1.3),
        dict(n_layers_per_step=2, layer_weighting="linear", kl_div_weight=2.0, kl_temperature=0.5),
        dict(n_layers_per_step=1, kl_temperature=0.0),
    ],
)
def test_adaptive_layer_matches_sentence_transformers(models, kwargs):
    ours_model, st_model = models
    random.seed(3)
    ours = loss_and_grads(
        ours_model,
        AdaptiveLayerLoss(ours_model, MultipleNegativesRankingLoss(ours_model), **kwargs),
        _features(ours_model, 3),
    )
    random.seed(3)
    ref = loss_and_grads(
        st_model,
        st_losses.AdaptiveLayerLoss(st_model, st_losses.MultipleNegativesRankingLoss(st_model), **kwargs),
        _features(st_model, 3),
    )
    assert_same_loss_and_grads(ours, ref)
    assert "forward" not in ours_model.__dict__ and "forward" not in ours_model[0].__dict__


def test_adaptive_layer_with_labels_matches_sentence_transformers(models):
    ours_model, st_model = models
    scores = torch.linspace(0, 1, 7, dtype=torch.float64)

    ours = loss_and_grads(
        ours_model,
        AdaptiveLayerLoss(ours_model, CoSENTLoss(ours_model), n_layers_per_step=-1),
        _features(ours_model, 2),
        labels=scores,
    )
    ref = loss_and_grads(
        st_model,
        st_losses.AdaptiveLayerLoss(st_model, st_losses.CoSENTLoss(st_model), n_layers_per_step=-1),
        _features(st_model, 2),
        labels=scores,
    )
    assert_same_loss_and_grads(ours, ref)


def test_matryoshka_2d_matches_sentence_transformers(models):
    ours_model, st_model = models
    kwargs = dict(n_layers_per_step=2, n_dims_per_step=2, layer_weighting="log")
    random.seed(7)
    ours_loss = Matryoshka2dLoss(ours_model, MultipleNegativesRankingLoss(ours_model), [32, 16, 8], **kwargs)
    ours = loss_and_grads(ours_model, ours_loss, _features(ours_model, 2, seed=1))
    random.seed(7)
    st_loss = st_losses.Matryoshka2dLoss(
        st_model, st_losses.MultipleNegativesRankingLoss(st_model), [32, 16, 8], **kwargs
    )
    ref = loss_and_grads(st_model, st_loss, _features(st_model, 2, seed=1))
    assert_same_loss_and_grads(ours, ref)
    config = ours_loss.get_config_dict()
    assert config["loss"] == "MultipleNegativesRankingLoss" and config["matryoshka_dims"] == (32, 16, 8)
    assert config["n_layers_per_step"] == 2 and config["layer_weighting"] == "log"


def test_layer_weights_and_validation(models):
    ours_model, _ = models
    inner = MultipleNegativesRankingLoss(ours_model)
    assert AdaptiveLayerLoss(ours_model, inner, layer_weighting="log").get_layer_weight(2) == pytest.approx(
        1 / (1 + math.log(3))
    )
    assert AdaptiveLayerLoss(ours_model, inner, layer_weighting="linear").get_layer_weight(3) == 0.25
    assert AdaptiveLayerLoss(ours_model, inner, layer_weighting=lambda i: 2.0 * i).get_layer_weight(3) == 6.0
    with pytest.raises(ValueError):
        AdaptiveLayerLoss(ours_model, inner, layer_weighting="cubic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AdaptiveLayerLoss(ours_model, CachedMultipleNegativesRankingLoss(ours_model))
    assert any("not compatible" in str(w.message) for w in caught)
    assert AdaptiveLayerLoss(ours_model, CoSENTLoss(ours_model)).contract == CoSENTLoss.contract
