"""Two gloo processes x B rows == one process on the 2B union batch (MNRL, CachedMNRL, GIST, CachedGIST).

Each rank computes its loss on its own rows against the gathered global batch; the trainer averages the
parameter gradients over ranks. So the mean of the rank losses must equal the single-process loss and the
rank-averaged gradients must equal the single-process gradients (float64, tight tolerances).
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_bert, make_sentences
from dist_harness import loss_and_grads, run_distributed

from raystx.losses import (
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    GISTEmbedLoss,
    MultipleNegativesRankingLoss,
)

ROWS_PER_RANK = 4
EMBEDDING_CONFIGS = [
    (3, dict()),
    (3, dict(directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"))),
    (2, dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")),
    (4, dict(hardness_mode="all_negatives", hardness_strength=3.0)),
]


def _embedding_worker(rank: int, world: int) -> list[dict]:
    """MNRL on random float64 embeddings: this rank's slice of a union batch every rank can rebuild."""
    results = []
    for num_columns, kwargs in EMBEDDING_CONFIGS:
        g = torch.Generator().manual_seed(num_columns)
        union = [
            torch.randn(2 * ROWS_PER_RANK, 6, generator=g, dtype=torch.float64) for _ in range(num_columns)
        ]
        rows = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK) if world > 1 else slice(None)
        leaves = [u[rows].clone().requires_grad_() for u in union]
        loss = MultipleNegativesRankingLoss(None, **kwargs)
        value = loss.compute_loss_from_embeddings(leaves, None)
        value.backward()
        results.append(
            {"loss": value.detach(), "grads": [x.grad for x in leaves], "negatives": loss.last_num_negatives}
        )
    return results


def _model_worker(rank: int, world: int, model_dir: str, guide_dir: str) -> dict[str, tuple]:
    """Each loss on a tiny float64 model: this rank's rows of a 3-column (anchor, positive, negative) batch."""
    from raystx.models import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu").double()
    guide = SentenceTransformer(guide_dir, device="cpu").double()
    columns = [make_sentences(2 * ROWS_PER_RANK, seed=100 + c) for c in range(3)]
    if world > 1:
        columns = [c[rank * ROWS_PER_RANK : (rank + 1) * ROWS_PER_RANK] for c in columns]
    features = [model.tokenize(c) for c in columns]
    losses = {
        "mnrl": MultipleNegativesRankingLoss(model),
        "cached_mnrl": CachedMultipleNegativesRankingLoss(model, mini_batch_size=3),
        "gist": GISTEmbedLoss(model, guide, margin=0.02),
        "cached_gist": CachedGISTEmbedLoss(model, guide, mini_batch_size=3, margin=0.02),
    }
    return {name: loss_and_grads(model, loss, features) for name, loss in losses.items()}


def test_mnrl_two_ranks_equal_union_batch():
    single = _embedding_worker(0, 1)
    ranks = run_distributed(_embedding_worker, world_size=2, timeout=60)
    for index, (num_columns, _) in enumerate(EMBEDDING_CONFIGS):
        mean_loss = (ranks[0][index]["loss"] + ranks[1][index]["loss"]) / 2
        torch.testing.assert_close(mean_loss, single[index]["loss"], rtol=1e-10, atol=1e-12)
        for column in range(num_columns):
            # each rank's slice gets the gradient of the sum of all rank losses; the trainer averages by 2
            stitched = torch.cat([ranks[r][index]["grads"][column] for r in range(2)]) / 2
            torch.testing.assert_close(stitched, single[index]["grads"][column], rtol=1e-10, atol=1e-12)
        # every anchor saw the whole global batch of candidates on both ranks
        assert (
            ranks[0][index]["negatives"]
            == single[index]["negatives"]
            == 2 * ROWS_PER_RANK * (num_columns - 1) - 1
        )


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-guide-dist"), seed=3, hidden=16)


def test_model_losses_two_ranks_equal_union_batch(tiny_bert_dir, guide_dir):
    single = _model_worker(0, 1, str(tiny_bert_dir), str(guide_dir))
    ranks = run_distributed(
        _model_worker, world_size=2, args=(str(tiny_bert_dir), str(guide_dir)), timeout=90
    )
    for name, (value, grads) in single.items():
        mean_loss = (ranks[0][name][0] + ranks[1][name][0]) / 2
        torch.testing.assert_close(mean_loss, value, rtol=1e-9, atol=1e-11, msg=lambda m, n=name: f"{n}: {m}")
        assert ranks[0][name][1].keys() == grads.keys()
        for param, grad in grads.items():
            averaged = (ranks[0][name][1][param] + ranks[1][name][1][param]) / 2
            torch.testing.assert_close(
                averaged, grad, rtol=1e-7, atol=1e-10, msg=lambda m, n=name, p=param: f"{n} {p}: {m}"
            )
    # the union batch really is shared: a rank alone (no gather) gives a different loss
    assert not torch.allclose(ranks[0]["mnrl"][0], single["mnrl"][0])
