"""MultipleNegativesRankingLoss: value and gradient parity with sentence-transformers on random embeddings."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from sentence_transformers.util import cos_sim as st_cos_sim
from sentence_transformers.util import dot_score as st_dot_score

from raystx.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from raystx.util import cos_sim, dot_score

SETTINGS = [
    (("query_to_doc",), "joint"),
    (("query_to_doc", "doc_to_query"), "per_direction"),
    (("query_to_doc", "doc_to_query"), "joint"),
    (("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"), "joint"),
]
HARDNESS = [(None, 0.0), ("in_batch_negatives", 9.0), ("hard_negatives", 5.0), ("all_negatives", 3.0)]


def _embeddings(num_columns: int, batch: int = 6, dim: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=g, dtype=torch.float64) for _ in range(num_columns)]


def _value_and_grads(loss_fn, embeddings: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [e.clone().requires_grad_(True) for e in embeddings]
    value = loss_fn(leaves, None)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("num_columns", [2, 4])
@pytest.mark.parametrize(("directions", "partition_mode"), SETTINGS)
@pytest.mark.parametrize(("hardness_mode", "hardness_strength"), HARDNESS)
def test_mnrl_matches_sentence_transformers(
    num_columns, directions, partition_mode, hardness_mode, hardness_strength
):
    embeddings = _embeddings(num_columns, seed=num_columns)
    kwargs = dict(
        scale=13.0,
        directions=directions,
        partition_mode=partition_mode,
        hardness_mode=hardness_mode,
        hardness_strength=hardness_strength,
    )
    ours = MultipleNegativesRankingLoss(None, similarity_fct=cos_sim, **kwargs)
    ref = st_losses.MultipleNegativesRankingLoss(None, similarity_fct=st_cos_sim, **kwargs)
    value, grads = _value_and_grads(ours.compute_loss_from_embeddings, embeddings)
    ref_value, ref_grads = _value_and_grads(ref.compute_loss_from_embeddings, embeddings)
    torch.testing.assert_close(value, ref_value, rtol=1e-5, atol=1e-5)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5)
    assert ours.last_num_negatives == 6 * (num_columns - 1) - 1


def test_mnrl_dot_score_and_config():
    embeddings = _embeddings(3, seed=7)
    ours = MultipleNegativesRankingLoss(None, scale=1.0, similarity_fct=dot_score)
    ref = st_losses.MultipleNegativesRankingLoss(None, scale=1.0, similarity_fct=st_dot_score)
    value, grads = _value_and_grads(ours.compute_loss_from_embeddings, embeddings)
    ref_value, ref_grads = _value_and_grads(ref.compute_loss_from_embeddings, embeddings)
    torch.testing.assert_close(value, ref_value, rtol=1e-5, atol=1e-5)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5)
    config = ours.get_config_dict()
    ref_config = ref.get_config_dict()
    assert set(config) == set(ref_config)
    assert {k: config[k] for k in config if k != "gather_across_devices"} == {
        k: ref_config[k] for k in ref_config if k != "gather_across_devices"
    }
    assert config["gather_across_devices"] is True


def test_mnrl_matches_direct_formula():
    """Default MNRL equals cross-entropy over scaled cosine scores against [positives; negatives]."""
    a, p, n = _embeddings(3, seed=3)
    value = MultipleNegativesRankingLoss(None).compute_loss_from_embeddings([a, p, n], None)
    scores = 20.0 * cos_sim(a, torch.cat([p, n]))
    expected = torch.nn.functional.cross_entropy(scores, torch.arange(a.shape[0]))
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scale=0.0),
        dict(directions=()),
        dict(directions=("doc_to_query",)),
        dict(directions=("query_to_doc", "sideways")),
        dict(partition_mode="blend"),
        dict(directions=("query_to_doc", "doc_to_doc"), partition_mode="per_direction"),
        dict(hardness_mode="hardest"),
        dict(hardness_strength=-1.0),
    ],
)
def test_mnrl_rejects_bad_options(kwargs):
    with pytest.raises(ValueError):
        MultipleNegativesRankingLoss(None, **kwargs)


def test_mnrl_needs_two_columns():
    with pytest.raises(ValueError):
        MultipleNegativesRankingLoss(None).compute_loss_from_embeddings(_embeddings(1), None)
