"""Gradient sync over 2 real gloo ranks: the row-sparse path for embedding tables gives exactly the dense average,
falls back to dense when most rows are touched, and carries the non-finite-loss flag either way."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))
from dist_harness import run_distributed  # noqa: E402


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(3000, 6), torch.nn.Linear(6, 3))


def _grads_after_sync(rank: int, world_size: int, ids_per_rank: list[list[int]], sparse: bool, bad_rank: int):
    from raystx.train.optim import row_sparse_flags, sync_gradients

    model = _model()
    ids = torch.tensor(ids_per_rank[rank])
    model(ids).pow(2).sum().mul(rank + 1).backward()
    params = list(model.parameters())
    flags = row_sparse_flags([model], params) if sparse else None
    bad = sync_gradients(params, local_bad=rank == bad_rank, row_sparse=flags)
    return {"bad": bad, "flags": flags, "grads": [p.grad.clone() for p in params]}


def _expected(ids_per_rank: list[list[int]]) -> list[torch.Tensor]:
    total = None
    for rank, ids in enumerate(ids_per_rank):
        model = _model()
        model(torch.tensor(ids)).pow(2).sum().mul(rank + 1).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
    return [g / len(ids_per_rank) for g in total]


def test_row_sparse_sync_equals_the_dense_average_and_carries_the_bad_flag():
    ids = [[5, 17, 17, 2999, 40], [17, 1200, 6, 6, 0]]  # overlapping and disjoint rows
    expected = _expected(ids)
    for sparse, bad_rank in ((True, -1), (False, -1), (True, 1)):
        results = run_distributed(_grads_after_sync, 2, args=(ids, sparse, bad_rank))
        for result in results:
            assert result["bad"] is (bad_rank >= 0)
            if sparse:
                assert result["flags"] == [True, False, False]
            for got, want in zip(result["grads"], expected):
                torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        # untouched rows stay exactly zero
        untouched = torch.ones(3000, dtype=torch.bool)
        untouched[torch.tensor(ids[0] + ids[1])] = False
        assert results[0]["grads"][0][untouched].abs().max() == 0


def test_dense_fallback_when_most_rows_are_touched():
    ids = [list(range(0, 3000, 2)), list(range(1, 3000, 3))]  # the union covers ~2/3 of the table
    expected = _expected(ids)
    results = run_distributed(_grads_after_sync, 2, args=(ids, True, -1))
    for result in results:
        for got, want in zip(result["grads"], expected):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def _buffer_sync(rank: int, world_size: int, ids_per_rank: list[list[int]], replace_rank: int):
    from raystx.train.optim import GradientSync, row_sparse_flags

    model = _model()
    params = list(model.parameters())
    sync = GradientSync(params, row_sparse_flags([model], params))
    optimizer = torch.optim.SGD(params, lr=0.0)
    results = []
    for step in range(2):  # two steps: the buffer must be zeroed in between, its views kept
        sync.zero_grad(optimizer)
        ids = torch.tensor(ids_per_rank[rank])
        model(ids).pow(2).sum().mul(rank + 1).backward()
        in_buffer = [p.grad.data_ptr() == sync.buffer[o : o + n].data_ptr() for p, o, n in sync.slots]
        if rank == replace_rank and step == 1:
            params[1].grad = params[1].grad.clone()  # code that replaces a gradient instead of accumulating
        bad = sync.sync(local_bad=False)
        results.append({"bad": bad, "in_buffer": in_buffer, "grads": [p.grad.clone() for p in params]})
    return {"steps": results, "slots": len(sync.slots), "buffer": sync.buffer.numel()}


def test_flat_buffer_sync_keeps_views_and_equals_the_dense_average():
    ids = [[5, 17, 17, 2999, 40], [17, 1200, 6, 6, 0]]
    expected = _expected(ids)
    for result in run_distributed(_buffer_sync, 2, args=(ids, 0)):
        assert result["slots"] == 2  # the Linear's weight and bias; the embedding table goes row-sparse
        assert result["buffer"] == 6 * 3 + 3 + 1  # their floats plus the flag
        for step in result["steps"]:
            assert step["bad"] is False
            assert all(step["in_buffer"])  # autograd accumulated into the views
            for got, want in zip(step["grads"], expected):  # step 2 equals step 1: zeroed in between
                torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
