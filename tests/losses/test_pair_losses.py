"""Pair losses (AnglE, CosineSimilarity, Softmax, Contrastive, OnlineContrastive, CoSENT end to end):
value and gradient parity with sentence-transformers, on random embeddings and through the tiny BERT."""

from __future__ import annotations

import pytest
import torch
from conftest import make_sentences
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers import util as st_util
from sentence_transformers.sentence_transformer import losses as st_losses
from torch import nn

from raystx.losses import (
    AnglELoss,
    ContrastiveLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    OnlineContrastiveLoss,
    SiameseDistanceMetric,
    SoftmaxLoss,
)
from raystx.losses.angle import pairwise_angle_sim
from raystx.losses.denoising_auto_encoder import find_transformer
from raystx.models import SentenceTransformer

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _embeddings(columns: int, n: int = 10, d: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(columns)]


def _value_and_grads(fn, embeddings: list[torch.Tensor], labels):
    leaves = [e.clone().requires_grad_(True) for e in embeddings]
    value = fn(leaves, labels)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def assert_same(ours, ref, embeddings, labels) -> None:
    value, grads = _value_and_grads(ours.compute_loss_from_embeddings, embeddings, labels)
    ref_value, ref_grads = _value_and_grads(ref.compute_loss_from_embeddings, embeddings, labels)
    torch.testing.assert_close(value, ref_value, **TOL)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, **TOL)


def test_pairwise_angle_sim_matches_sentence_transformers() -> None:
    for d in (6, 7):  # odd dimensions are zero-padded
        x, y = _embeddings(2, d=d, seed=d)
        torch.testing.assert_close(
            pairwise_angle_sim(x, y), st_util.pairwise_angle_sim(x, y), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("scale", [20.0, 3.0])
def test_angle_pairs_match_sentence_transformers(scale: float) -> None:
    embeddings = _embeddings(2, seed=1)
    labels = torch.rand(10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert_same(AnglELoss(None, scale=scale), st_losses.AnglELoss(None, scale=scale), embeddings, labels)


@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("columns", [3, 5])
def test_angle_ntuples_match_sentence_transformers(columns: int, with_labels: bool) -> None:
    embeddings = _embeddings(columns, seed=columns)
    labels = torch.rand(10, dtype=torch.float64) if with_labels else None
    assert_same(AnglELoss(None), st_losses.AnglELoss(None), embeddings, labels)


def test_angle_pairs_need_labels() -> None:
    with pytest.raises(ValueError, match="label"):
        AnglELoss(None).compute_loss_from_embeddings(_embeddings(2), None)


@pytest.mark.parametrize(
    ("loss_fct", "transformation"),
    [(nn.MSELoss(), nn.Identity()), (nn.L1Loss(), nn.ReLU()), (nn.MSELoss(reduction="sum"), nn.Tanh())],
)
def test_cosine_similarity_matches_sentence_transformers(loss_fct, transformation) -> None:
    embeddings = [e.float() for e in _embeddings(2, seed=3)]
    labels = torch.rand(10, generator=torch.Generator().manual_seed(4))
    ours = CosineSimilarityLoss(None, loss_fct=loss_fct, cos_score_transformation=transformation)
    ref = st_losses.CosineSimilarityLoss(None, loss_fct=loss_fct, cos_score_transformation=transformation)
    assert_same(ours, ref, embeddings, labels)
    assert ours.get_config_dict() == ref.get_config_dict()


def test_cosine_similarity_equals_mse_formula() -> None:
    a, b = _embeddings(2, seed=5)
    labels = torch.rand(10, dtype=torch.float64)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    expected = ((cos.float() - labels.float()) ** 2).mean()
    got = CosineSimilarityLoss(None).compute_loss_from_embeddings([a.float(), b.float()], labels)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


METRICS = ["EUCLIDEAN", "MANHATTAN", "COSINE_DISTANCE"]


@pytest.mark.parametrize("size_average", [True, False])
@pytest.mark.parametrize("metric", METRICS)
def test_contrastive_matches_sentence_transformers(metric: str, size_average: bool) -> None:
    embeddings = _embeddings(2, seed=6)
    labels = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0, 1])
    ours = ContrastiveLoss(
        None, getattr(SiameseDistanceMetric, metric), margin=2.0, size_average=size_average
    )
    ref = st_losses.ContrastiveLoss(
        None, getattr(st_losses.SiameseDistanceMetric, metric), margin=2.0, size_average=size_average
    )
    assert_same(ours, ref, embeddings, labels)
    assert ours.get_config_dict() == ref.get_config_dict()


def test_contrastive_metric_by_name_and_nonbinary_warning() -> None:
    loss = ContrastiveLoss(None, distance_metric="SiameseDistanceMetric.MANHATTAN")
    assert loss.distance_metric is SiameseDistanceMetric.MANHATTAN
    with pytest.raises(ValueError, match="Unknown SiameseDistanceMetric"):
        ContrastiveLoss(None, distance_metric="HAMMING")
    with pytest.warns(UserWarning, match="binary labels"):
        loss.compute_loss_from_embeddings(_embeddings(2), torch.full((10,), 0.5))


@pytest.mark.parametrize(
    "labels",
    [
        torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0, 1]),
        torch.zeros(10, dtype=torch.long),  # no positives: negatives below their mean distance
        torch.ones(10, dtype=torch.long),  # no negatives
    ],
)
@pytest.mark.parametrize("metric", METRICS)
def test_online_contrastive_matches_sentence_transformers(metric: str, labels: torch.Tensor) -> None:
    embeddings = _embeddings(2, seed=7)
    ours = OnlineContrastiveLoss(None, getattr(SiameseDistanceMetric, metric), margin=3.0)
    ref = st_losses.OnlineContrastiveLoss(None, getattr(st_losses.SiameseDistanceMetric, metric), margin=3.0)
    assert_same(ours, ref, embeddings, labels)
    ref_config = ref.get_config_dict()
    assert ours.get_config_dict() == {**ref_config, "gather_across_devices": True}


def test_softmax_loss_matches_sentence_transformers_and_trains_its_head(tiny_bert_dir) -> None:
    st_model = STModel(str(tiny_bert_dir))
    ref = st_losses.SoftmaxLoss(
        st_model, embedding_dimension=32, num_labels=3, concatenation_sent_multiplication=True
    )
    ours = SoftmaxLoss(None, 32, 3, concatenation_sent_multiplication=True)
    ours.classifier.load_state_dict(ref.classifier.state_dict())
    assert ours.trainable_modules() == [ours.classifier]
    assert ours.get_config_dict() == ref.get_config_dict()
    a, b = [e.float() for e in _embeddings(2, d=32, seed=8)]
    class_ids = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2, 0])
    probabilities = torch.softmax(torch.randn(10, 3, generator=torch.Generator().manual_seed(9)), dim=1)
    for labels in (class_ids, probabilities):
        ours.classifier.zero_grad()
        value, grads = _value_and_grads(ours.compute_loss_from_embeddings, [a, b], labels)
        # ST's SoftmaxLoss has no embedding-level entry point: apply its head the way its forward does.
        ref.classifier.zero_grad()
        u, v = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        logits = ref.classifier(torch.cat([u, v, (u - v).abs(), u * v], dim=1))
        ref_value = ref.loss_fct(logits, labels)
        ref_value.backward()
        torch.testing.assert_close(value, ref_value.detach(), **TOL)
        assert ours.classifier.weight.grad.abs().sum() > 0
        torch.testing.assert_close(ours.classifier.weight.grad, ref.classifier.weight.grad, **TOL)
        torch.testing.assert_close(ours.classifier.bias.grad, ref.classifier.bias.grad, **TOL)
        torch.testing.assert_close(grads[0], u.grad, **TOL)
        torch.testing.assert_close(grads[1], v.grad, **TOL)


def test_softmax_loss_accepts_old_dimension_name_and_predicts_without_labels(tiny_bert_dir) -> None:
    model = SentenceTransformer(str(tiny_bert_dir))
    loss = SoftmaxLoss(model, sentence_embedding_dimension=32, num_labels=2, concatenation_sent_rep=False)
    assert loss.classifier.in_features == 32
    features = [model.tokenize(make_sentences(3, seed=1)), model.tokenize(make_sentences(3, seed=2))]
    embeddings, logits = loss(features, None)
    assert logits.shape == (3, 2) and len(embeddings) == 2
    with pytest.raises(ValueError, match="at least one"):
        SoftmaxLoss(model, 32, 2, concatenation_sent_rep=False, concatenation_sent_difference=False)


def _forward_backward(loss, model, tokenize, columns, labels):
    model.zero_grad()
    value = loss([tokenize(texts) for texts in columns], labels)
    value.backward()
    grads = {n: p.grad.clone() for n, p in find_transformer(model).named_parameters() if p.grad is not None}
    return value.detach(), grads


@pytest.mark.parametrize("loss_name", ["CoSENTLoss", "SoftmaxLoss", "OnlineContrastiveLoss"])
def test_full_forward_on_tiny_model_matches_sentence_transformers(tiny_bert_dir, loss_name: str) -> None:
    """Same tiny BERT loaded by raystx and by ST: equal loss and equal transformer parameter gradients."""
    model, st_model = SentenceTransformer(str(tiny_bert_dir)), STModel(str(tiny_bert_dir))
    columns = [make_sentences(8, seed=11), make_sentences(8, seed=12)]
    if loss_name == "CoSENTLoss":
        ours, ref = CoSENTLoss(model), st_losses.CoSENTLoss(st_model)
        labels = torch.rand(8, generator=torch.Generator().manual_seed(0))
    elif loss_name == "SoftmaxLoss":
        ref = st_losses.SoftmaxLoss(st_model, embedding_dimension=32, num_labels=3)
        ours = SoftmaxLoss(model, 32, 3)
        ours.classifier.load_state_dict(ref.classifier.state_dict())
        labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    else:
        ours, ref = OnlineContrastiveLoss(model), st_losses.OnlineContrastiveLoss(st_model)
        labels = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0])
    value, grads = _forward_backward(ours, model, model.tokenize, columns, labels)
    ref_value, ref_grads = _forward_backward(ref, st_model, st_model.preprocess, columns, labels)
    torch.testing.assert_close(value, ref_value, **TOL)
    assert value > 0
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **TOL)
