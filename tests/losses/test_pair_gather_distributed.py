"""Batch-level losses with gather_across_devices: 2 gloo ranks x B rows must equal 1 process x 2B rows.

Every rank embeds its own rows with the same (linear) model, computes the loss with gathering, backpropagates,
and averages the parameter gradients over ranks as the trainer does. The objective is the mean of the ranks'
loss values; it and the averaged gradients must match the single-process loss on the union batch (1e-5).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from dist_harness import run_distributed

from raystx.losses import (
    AnglELoss,
    BatchAllTripletLoss,
    BatchHardSoftMarginTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    ContrastiveTensionLossInBatchNegatives,
    CoSENTLoss,
    OnlineContrastiveLoss,
)

ROWS_PER_RANK = 6
IN_DIM, OUT_DIM = 5, 4
LOSSES = [
    "CoSENTLoss",
    "AnglELoss",
    "AnglELoss-triplets",
    "OnlineContrastiveLoss",
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "BatchHardSoftMarginTripletLoss",
    "ContrastiveTensionLossInBatchNegatives",
]


def _global_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = 2 * ROWS_PER_RANK
    return {
        "inputs": torch.randn(3, n, IN_DIM, generator=g, dtype=torch.float64),
        "weight": torch.randn(IN_DIM, OUT_DIM, generator=g, dtype=torch.float64),
        "weight2": torch.randn(IN_DIM, OUT_DIM, generator=g, dtype=torch.float64),
        "scores": torch.rand(n, generator=g, dtype=torch.float64),
        "binary": torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1]),
        "classes": torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1, 2]),
    }


def _loss_value(
    name: str, batch: dict[str, torch.Tensor], rows: slice
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss on ``rows`` of the global batch; returns it and the leaf parameters it depends on."""
    weight = batch["weight"].clone().requires_grad_(True)
    x = batch["inputs"][:, rows]
    columns = [x[i] @ weight for i in range(3)]
    if name == "CoSENTLoss":
        return CoSENTLoss(None).compute_loss_from_embeddings(columns[:2], batch["scores"][rows]), [weight]
    if name == "AnglELoss":
        return AnglELoss(None).compute_loss_from_embeddings(columns[:2], batch["scores"][rows]), [weight]
    if name == "AnglELoss-triplets":
        return AnglELoss(None).compute_loss_from_embeddings(columns, None), [weight]
    if name == "OnlineContrastiveLoss":
        return OnlineContrastiveLoss(None).compute_loss_from_embeddings(columns[:2], batch["binary"][rows]), [
            weight
        ]
    if name == "ContrastiveTensionLossInBatchNegatives":
        weight2 = batch["weight2"].clone().requires_grad_(True)
        loss = ContrastiveTensionLossInBatchNegatives(torch.nn.Identity(), scale=7.0)
        value = loss.compute_loss_from_embeddings([x[0] @ weight, x[0] @ weight2])
        return value, [weight, weight2, loss.logit_scale]
    cls = {
        "BatchAllTripletLoss": BatchAllTripletLoss,
        "BatchHardTripletLoss": BatchHardTripletLoss,
        "BatchSemiHardTripletLoss": BatchSemiHardTripletLoss,
        "BatchHardSoftMarginTripletLoss": BatchHardSoftMarginTripletLoss,
    }[name]
    return cls(None).compute_loss_from_embeddings(columns[:1], batch["classes"][rows]), [weight]


def _rank_fn(rank: int, world_size: int) -> dict[str, dict[str, object]]:
    batch = _global_batch()
    rows = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)
    results = {}
    for name in LOSSES:
        value, params = _loss_value(name, batch, rows)
        value.backward()
        grads = []
        for p in params:  # the trainer averages parameter gradients over ranks
            grad = p.grad.detach().clone()
            dist.all_reduce(grad)
            grads.append(grad / world_size)
        results[name] = {"value": value.detach(), "grads": grads}
    return results


@pytest.fixture(scope="module")
def two_rank_results() -> list[dict[str, dict[str, object]]]:
    return run_distributed(_rank_fn, world_size=2, timeout=180.0)


@pytest.mark.parametrize("name", LOSSES)
def test_two_ranks_equal_one_process_on_the_union_batch(name: str, two_rank_results) -> None:
    value, params = _loss_value(name, _global_batch(), slice(None))
    value.backward()
    rank_values = torch.stack([r[name]["value"] for r in two_rank_results])
    torch.testing.assert_close(rank_values.mean(), value.detach(), rtol=1e-5, atol=1e-5)
    if name != "ContrastiveTensionLossInBatchNegatives":  # the others compute the global loss on every rank
        torch.testing.assert_close(rank_values[0], rank_values[1], rtol=1e-5, atol=1e-5)
    for rank_result in two_rank_results:
        for averaged, param in zip(rank_result[name]["grads"], params):
            torch.testing.assert_close(averaged, param.grad, rtol=1e-5, atol=1e-5)


def test_without_gather_each_rank_sees_only_its_rows() -> None:
    """Sanity check of the test itself: the local-only CoSENT value differs from the global one."""
    batch = _global_batch()
    weight = batch["weight"]
    x = batch["inputs"]
    local = CoSENTLoss(None, gather_across_devices=False).compute_loss_from_embeddings(
        [x[0, :ROWS_PER_RANK] @ weight, x[1, :ROWS_PER_RANK] @ weight], batch["scores"][:ROWS_PER_RANK]
    )
    full, _ = _loss_value("CoSENTLoss", batch, slice(None))
    assert abs(local.item() - full.item()) > 1e-3
