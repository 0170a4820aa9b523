"""CoSENTLoss parity with sentence-transformers (value and embedding gradients) and its ranking formula."""

from __future__ import annotations

import pytest
import torch

from raystx.losses.cosent import CoSENTLoss
from raystx.util import pairwise_dot_score


def _st_loss(name: str, **kwargs):
    from sentence_transformers.sentence_transformer import losses as st_losses

    return getattr(st_losses, name)(None, **kwargs)


def _embeddings(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(
        n, d, generator=g, dtype=torch.float64
    )


def _value_and_grads(loss_fn, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor):
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    value = loss_fn.compute_loss_from_embeddings([a, b], labels)
    value.backward()
    return value.detach(), a.grad, b.grad


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("scale", [20.0, 5.0])
def test_cosent_matches_sentence_transformers(ties: bool, scale: float) -> None:
    a, b = _embeddings(12, 8, seed=1)
    g = torch.Generator().manual_seed(2)
    labels = (
        torch.randint(0, 4, (12,), generator=g).double() / 3 if ties else torch.rand(12, generator=g).double()
    )
    ours = _value_and_grads(CoSENTLoss(None, scale=scale), a, b, labels)
    ref = _value_and_grads(_st_loss("CoSENTLoss", scale=scale), a, b, labels)
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_cosent_with_dot_similarity_matches_sentence_transformers() -> None:
    from sentence_transformers.util import pairwise_dot_score as st_pairwise_dot

    a, b = _embeddings(9, 6, seed=3)
    labels = torch.rand(9, generator=torch.Generator().manual_seed(4)).double()
    ours = _value_and_grads(CoSENTLoss(None, scale=0.5, similarity_fct=pairwise_dot_score), a, b, labels)
    ref = _value_and_grads(_st_loss("CoSENTLoss", scale=0.5, similarity_fct=st_pairwise_dot), a, b, labels)
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_cosent_equals_quadratic_formula() -> None:
    a, b = _embeddings(7, 5, seed=5)
    labels = torch.tensor([0.1, 0.5, 0.5, 0.9, 0.0, 0.1, 1.0], dtype=torch.float64)
    scores = 20.0 * torch.nn.functional.cosine_similarity(a, b)
    terms = [torch.zeros((), dtype=torch.float64)]
    for i in range(7):
        for k in range(7):
            if labels[i] > labels[k]:
                terms.append(scores[k] - scores[i])
    expected = torch.logsumexp(torch.stack(terms), dim=0)
    got = CoSENTLoss(None).compute_loss_from_embeddings([a, b], labels)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_cosent_all_equal_labels_gives_log_one_and_config() -> None:
    a, b = _embeddings(4, 3, seed=6)
    loss = CoSENTLoss(None)
    value = loss.compute_loss_from_embeddings([a, b], torch.ones(4, dtype=torch.float64))
    assert value.item() == 0.0
    assert loss.get_config_dict() == {
        "scale": 20.0,
        "similarity_fct": "pairwise_cos_sim",
        "gather_across_devices": True,
    }
    with pytest.raises(ValueError, match="one label per pair"):
        loss.compute_loss_from_embeddings([a, b], torch.ones(3))
