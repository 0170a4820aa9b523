"""Triplet and batch triplet losses: value and gradient parity with sentence-transformers, distance matrices
against direct formulas, edge cases (singleton classes, one class), and one end-to-end tiny-BERT check."""

from __future__ import annotations

import pytest
import torch
from conftest import make_sentences
from sentence_transformers import SentenceTransformer as STModel
from sentence_transformers.sentence_transformer import losses as st_losses

from raystx.losses import (
    BatchAllTripletLoss,
    BatchHardSoftMarginTripletLoss,
    BatchHardTripletLoss,
    BatchHardTripletLossDistanceFunction,
    BatchSemiHardTripletLoss,
    TripletDistanceMetric,
    TripletLoss,
)
from raystx.losses.denoising_auto_encoder import find_transformer
from raystx.models import SentenceTransformer

TOL = {"rtol": 1e-5, "atol": 1e-5}
BATCH_LOSSES = {
    "BatchAllTripletLoss": BatchAllTripletLoss,
    "BatchHardTripletLoss": BatchHardTripletLoss,
    "BatchSemiHardTripletLoss": BatchSemiHardTripletLoss,
    "BatchHardSoftMarginTripletLoss": BatchHardSoftMarginTripletLoss,
}
LABELS = {
    "three_classes": torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1, 2]),
    "with_singleton": torch.tensor([0, 1, 0, 1, 3, 1, 0, 0, 1, 1, 0, 1]),
    "one_class": torch.zeros(12, dtype=torch.long),
}


def _embeddings(columns: int, n: int = 12, d: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(columns)]


def _value_and_grads(fn, embeddings, labels):
    leaves = [e.clone().requires_grad_(True) for e in embeddings]
    value = fn(leaves, labels)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def assert_same(ours, ref, embeddings, labels) -> None:
    value, grads = _value_and_grads(ours.compute_loss_from_embeddings, embeddings, labels)
    ref_value, ref_grads = _value_and_grads(ref.compute_loss_from_embeddings, embeddings, labels)
    torch.testing.assert_close(value, ref_value, **TOL)
    for g, rg in zip(grads, ref_grads):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, rg, **TOL)


@pytest.mark.parametrize("margin", [5.0, 0.3])
@pytest.mark.parametrize("metric", ["EUCLIDEAN", "MANHATTAN", "COSINE"])
def test_triplet_matches_sentence_transformers(metric: str, margin: float) -> None:
    ours = TripletLoss(None, getattr(TripletDistanceMetric, metric), triplet_margin=margin)
    ref = st_losses.TripletLoss(None, getattr(st_losses.TripletDistanceMetric, metric), triplet_margin=margin)
    assert_same(ours, ref, _embeddings(3, seed=1), None)
    assert ours.get_config_dict() == ref.get_config_dict()


def test_triplet_equals_direct_formula() -> None:
    a, p, n = _embeddings(3, seed=2)
    expected = torch.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + 1.0).mean()
    got = TripletLoss(None, triplet_margin=1.0).compute_loss_from_embeddings([a, p, n])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_distance_matrices_match_direct_formulas() -> None:
    (x,) = _embeddings(1, seed=3)
    x = torch.cat([x, x[:2]])  # duplicate rows: zero off-diagonal distances
    fn = BatchHardTripletLossDistanceFunction
    torch.testing.assert_close(fn.euclidean_distance(x), torch.cdist(x, x), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(
        fn.euclidean_distance(x, squared=True), torch.cdist(x, x) ** 2, rtol=1e-7, atol=1e-7
    )
    unit = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(fn.cosine_distance(x), 1 - unit @ unit.T, rtol=1e-12, atol=1e-12)
    leaf = x.clone().requires_grad_(True)
    fn.euclidean_distance(leaf).sum().backward()
    assert torch.isfinite(leaf.grad).all()
    half = fn.euclidean_distance(x.to(torch.bfloat16))
    assert half.dtype == torch.float32


@pytest.mark.parametrize("labels_name", list(LABELS))
@pytest.mark.parametrize("distance", ["euclidean_distance", "cosine_distance"])
@pytest.mark.parametrize("loss_name", list(BATCH_LOSSES))
def test_batch_triplet_losses_match_sentence_transformers(
    loss_name: str, distance: str, labels_name: str
) -> None:
    ours_distance = getattr(BatchHardTripletLossDistanceFunction, distance)
    ref_distance = getattr(st_losses.BatchHardTripletLossDistanceFunction, distance)
    margins = [None] if loss_name == "BatchHardSoftMarginTripletLoss" else [5.0, 0.5]
    for margin in margins:
        kwargs = {} if margin is None else {"margin": margin}
        ours = BATCH_LOSSES[loss_name](None, distance_metric=ours_distance, **kwargs)
        ref = getattr(st_losses, loss_name)(None, distance_metric=ref_distance, **kwargs)
        assert_same(ours, ref, _embeddings(1, seed=4), LABELS[labels_name])
        assert ours.get_config_dict() == {**ref.get_config_dict(), "gather_across_devices": True}


def test_batch_hard_equals_direct_formula() -> None:
    (x,) = _embeddings(1, seed=5)
    labels = LABELS["three_classes"]
    d = torch.cdist(x, x)
    expected = []
    for a in range(len(labels)):
        pos = [d[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        expected.append(torch.relu(max(pos) - min(neg) + 2.0))
    got = BatchHardTripletLoss(None, margin=2.0).compute_loss_from_embeddings([x], labels)
    torch.testing.assert_close(got, torch.stack(expected).mean(), rtol=1e-9, atol=1e-9)


def test_batch_all_and_semi_hard_equal_direct_formulas() -> None:
    (x,) = _embeddings(1, seed=6)
    labels = LABELS["three_classes"]
    d = torch.cdist(x, x)
    margin = 1.0
    n = len(labels)
    all_losses, semi_losses = [], []
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            negatives = [d[a, k] for k in range(n) if labels[k] != labels[a]]
            all_losses += [torch.relu(d[a, p] - dn + margin) for dn in negatives]
            farther = [dn for dn in negatives if dn > d[a, p]]
            chosen = min(farther) if farther else max(negatives)
            semi_losses.append(torch.relu(d[a, p] - chosen + margin))
    all_losses = torch.stack(all_losses)
    expected_all = all_losses.sum() / (all_losses > 1e-16).sum()
    expected_semi = torch.stack(semi_losses).mean()
    got_all = BatchAllTripletLoss(None, margin=margin).compute_loss_from_embeddings([x], labels)
    got_semi = BatchSemiHardTripletLoss(None, margin=margin).compute_loss_from_embeddings([x], labels)
    torch.testing.assert_close(got_all, expected_all, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got_semi, expected_semi, rtol=1e-9, atol=1e-9)


def test_batch_losses_need_labels_and_expose_sentence_embedder() -> None:
    loss = BatchHardTripletLoss(torch.nn.Identity())
    assert loss.sentence_embedder is loss.model
    with pytest.raises(ValueError, match="class label"):
        loss.compute_loss_from_embeddings(_embeddings(1), None)
    with pytest.raises(ValueError, match="one label per sentence"):
        loss.compute_loss_from_embeddings(_embeddings(1), torch.zeros(3))


@pytest.mark.parametrize("loss_name", ["BatchSemiHardTripletLoss", "TripletLoss"])
def test_full_forward_on_tiny_model_matches_sentence_transformers(tiny_bert_dir, loss_name: str) -> None:
    model, st_model = SentenceTransformer(str(tiny_bert_dir)), STModel(str(tiny_bert_dir))
    if loss_name == "TripletLoss":
        ours, ref = (
            TripletLoss(model, triplet_margin=0.5),
            st_losses.TripletLoss(st_model, triplet_margin=0.5),
        )
        columns, labels = [make_sentences(6, seed=s) for s in (1, 2, 3)], None
    else:
        ours, ref = (
            BatchSemiHardTripletLoss(model, margin=0.5),
            st_losses.BatchSemiHardTripletLoss(st_model, margin=0.5),
        )
        columns, labels = [make_sentences(9, seed=4)], torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    results = []
    for loss, m, tokenize in ((ours, model, model.tokenize), (ref, st_model, st_model.preprocess)):
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
