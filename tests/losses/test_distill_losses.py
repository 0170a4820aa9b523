"""Distillation losses (MSE, EmbedDistill, MarginMSE, DistillKLDiv): parity with sentence-transformers on
random embeddings, label-shape handling, the projection head, and one end-to-end tiny-BERT check."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import make_sentences
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers import util as st_util
from sentence_transformers.sentence_transformer import losses as st_losses

from raystx.losses import DistillKLDivLoss, EmbedDistillLoss, MarginMSELoss, MSELoss
from raystx.losses.denoising_auto_encoder import find_transformer
from raystx.models import SentenceTransformer
from raystx.util import pairwise_cos_sim, pairwise_dot_score

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _embeddings(columns: int, n: int = 8, d: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(columns)]


def _value_and_grads(fn, embeddings, labels):
    leaves = [e.clone().requires_grad_(True) for e in embeddings]
    value = fn(leaves, labels)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def _assert_close_all(ours, ref) -> None:
    torch.testing.assert_close(ours[0], ref[0], **TOL)
    for g, rg in zip(ours[1], ref[1]):
        torch.testing.assert_close(g, rg, **TOL)


@pytest.mark.parametrize("label_dims", [2, 3])
@pytest.mark.parametrize("metric", ["mse", "l2", "cosine"])
def test_embed_distill_matches_sentence_transformers(metric: str, label_dims: int) -> None:
    embeddings = _embeddings(2, seed=1)
    g = torch.Generator().manual_seed(2)
    labels = torch.randn(8, 6, generator=g, dtype=torch.float64)
    if label_dims == 3:
        labels = torch.randn(8, 2, 6, generator=g, dtype=torch.float64)
    teachers = [labels] * 2 if label_dims == 2 else list(labels.unbind(1))
    ours = EmbedDistillLoss(None, distance_metric=metric)
    ref = st_losses.EmbedDistillLoss(None, distance_metric=metric)
    _assert_close_all(
        _value_and_grads(ours.compute_loss_from_embeddings, embeddings, labels),
        _value_and_grads(ref.compute_loss_from_embeddings, embeddings, teachers),
    )
    assert ours.get_config_dict() == ref.get_config_dict()


def test_mse_equals_direct_formula_and_checks_label_shapes() -> None:
    a, b = _embeddings(2, seed=3)
    teacher = torch.randn(8, 6, dtype=torch.float64)
    expected = (((a - teacher) ** 2).mean() + ((b - teacher) ** 2).mean()) / 2
    loss = MSELoss(None)
    torch.testing.assert_close(
        loss.compute_loss_from_embeddings([a, b], teacher), expected, rtol=1e-12, atol=1e-12
    )
    assert loss.get_config_dict() == st_losses.MSELoss(None).get_config_dict() == {"projection_dim": None}
    with pytest.raises(ValueError, match="3 teacher embeddings"):
        loss.compute_loss_from_embeddings([a, b], torch.randn(8, 3, 6))
    with pytest.raises(ValueError, match="1-D"):
        loss.compute_loss_from_embeddings([a], torch.randn(8))
    with pytest.raises(ValueError, match="teacher embeddings"):
        loss.compute_loss_from_embeddings([a], None)


def test_projection_is_trainable_matches_st_and_round_trips(tiny_bert_dir, tmp_path) -> None:
    model, st_model = SentenceTransformer(str(tiny_bert_dir)), STModel(str(tiny_bert_dir))
    ours = EmbedDistillLoss(model, distance_metric="cosine", projection_dim=10)
    ref = st_losses.EmbedDistillLoss(st_model, distance_metric="cosine", projection_dim=10)
    assert ours.trainable_modules() == [ours.projection]
    ours.projection.load_state_dict(ref.projection.state_dict())
    embeddings = [e.float() for e in _embeddings(1, d=32, seed=4)]
    teacher = torch.randn(8, 10)
    value, _ = _value_and_grads(ours.compute_loss_from_embeddings, embeddings, teacher)
    ref_value, _ = _value_and_grads(ref.compute_loss_from_embeddings, embeddings, [teacher])
    torch.testing.assert_close(value, ref_value, **TOL)
    torch.testing.assert_close(ours.projection.weight.grad, ref.projection.weight.grad, **TOL)

    ours.save_projection(tmp_path / "projection.safetensors")
    fresh = EmbedDistillLoss(model)
    fresh.load_projection(tmp_path / "projection.safetensors")
    assert fresh.projection_dim == 10
    torch.testing.assert_close(fresh.projection.weight, ours.projection.weight)
    with pytest.raises(ValueError, match="No projection"):
        EmbedDistillLoss(model).save_projection(tmp_path / "none.safetensors")


@pytest.mark.parametrize(
    ("columns", "label_shape"),
    [(3, (8,)), (3, (8, 1)), (3, (8, 2)), (5, (8, 3)), (5, (8, 4))],
)
@pytest.mark.parametrize("similarity", ["dot", "cos"])
def test_margin_mse_matches_sentence_transformers(columns: int, label_shape: tuple, similarity: str) -> None:
    ours_fn, ref_fn = {
        "dot": (pairwise_dot_score, st_util.pairwise_dot_score),
        "cos": (pairwise_cos_sim, st_util.pairwise_cos_sim),
    }[similarity]
    embeddings = _embeddings(columns, seed=columns)
    labels = torch.randn(*label_shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours, ref = (
        MarginMSELoss(None, similarity_fct=ours_fn),
        st_losses.MarginMSELoss(None, similarity_fct=ref_fn),
    )
    _assert_close_all(
        _value_and_grads(ours.compute_loss_from_embeddings, embeddings, labels),
        _value_and_grads(ref.compute_loss_from_embeddings, embeddings, labels),
    )
    assert ours.get_config_dict() == ref.get_config_dict()


def test_margin_mse_rejects_wrong_label_shape() -> None:
    with pytest.raises(ValueError, match="expected"):
        MarginMSELoss(None).compute_loss_from_embeddings(_embeddings(4), torch.randn(8, 5))


@pytest.mark.parametrize(
    "temperatures",
    [{}, {"temperature": 2.0}, {"temperature": 1.0, "student_temperature": 0.5, "teacher_temperature": 3.0}],
)
@pytest.mark.parametrize("columns", [3, 5])
def test_distill_kl_div_matches_sentence_transformers(columns: int, temperatures: dict) -> None:
    embeddings = _embeddings(columns, seed=10 + columns)
    labels = torch.randn(8, columns - 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 3
    ours, ref = DistillKLDivLoss(None, **temperatures), st_losses.DistillKLDivLoss(None, **temperatures)
    _assert_close_all(
        _value_and_grads(ours.compute_loss_from_embeddings, embeddings, labels),
        _value_and_grads(ref.compute_loss_from_embeddings, embeddings, labels),
    )
    assert ours.get_config_dict() == ref.get_config_dict()


def test_distill_kl_div_equals_direct_formula_and_validates(caplog) -> None:
    q, p, n = _embeddings(3, seed=7)
    teacher = torch.randn(8, 2, dtype=torch.float64)
    student = torch.stack([(q * p).sum(1), (q * n).sum(1)], dim=1) / 2.0
    target = torch.softmax(teacher / 2.0, dim=1)
    expected = (target * (target.log() - torch.log_softmax(student, dim=1))).sum(1).mean() * 4.0
    got = DistillKLDivLoss(None, temperature=2.0).compute_loss_from_embeddings([q, p, n], teacher)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        DistillKLDivLoss(None).compute_loss_from_embeddings([q, p, n], torch.randn(8, 3))
    with pytest.raises(ValueError, match="at least|columns"):
        DistillKLDivLoss(None).compute_loss_from_embeddings([q, p], torch.randn(8, 1))
    with pytest.raises(ValueError, match="NaN"):
        DistillKLDivLoss(None).compute_loss_from_embeddings([q, p, n], torch.full((8, 2), float("nan")))
    with pytest.raises(ValueError, match="positive finite"):
        DistillKLDivLoss(None, temperature=0.0)
    with caplog.at_level(logging.WARNING):
        DistillKLDivLoss(None, teacher_temperature=0.01).compute_loss_from_embeddings(
            [q, p, n], torch.tensor([[0.0, 50.0]] * 8, dtype=torch.float64)
        )
    assert "exactly 0" in caplog.text


def test_full_forward_on_tiny_model_matches_sentence_transformers(tiny_bert_dir) -> None:
    """MarginMSE through the tiny BERT loaded by raystx and by ST: equal loss and parameter gradients."""
    model, st_model = SentenceTransformer(str(tiny_bert_dir)), STModel(str(tiny_bert_dir))
    columns = [make_sentences(6, seed=s) for s in (1, 2, 3)]
    labels = torch.randn(6, generator=torch.Generator().manual_seed(0))
    results = []
    for loss, m, tokenize in (
        (MarginMSELoss(model), model, model.tokenize),
        (st_losses.MarginMSELoss(st_model), st_model, st_model.preprocess),
    ):
        m.zero_grad()
        value = loss([tokenize(texts) for texts in columns], labels)
        value.backward()
        grads = {n: p.grad for n, p in find_transformer(m).named_parameters() if p.grad is not None}
        results.append((value.detach(), grads))
    (value, grads), (ref_value, ref_grads) = results
    torch.testing.assert_close(value, ref_value, **TOL)
    assert value > 0
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **TOL)
