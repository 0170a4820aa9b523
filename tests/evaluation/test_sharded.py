"""Sharded evaluator encoding (``raystx.evaluation.sharded``) on 2 gloo ranks, no Ray: every evaluator's metrics
on rank 0 equal one process's (1e-6), each rank encodes only its slice of the texts, a user's evaluator that
bypasses the seam runs on rank 0 alone, and the gathered rows are bit-identical whatever their dtype."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from shard_suite import CustomEvaluator, build_suite, flat_metrics

import raystx.evaluation._encode as encode_module
from raystx.evaluation import EmbeddingSimilarityEvaluator, SentenceEvaluator, SequentialEvaluator
from raystx.evaluation.sharded import (
    encode_rows,
    gather_rows,
    is_shardable,
    run_evaluator,
    shard_bounds,
    sharded_encoding,
)
from raystx.models import SentenceTransformer

sys.path.insert(0, str(Path(__file__).parent.parent / "losses"))
from dist_harness import run_distributed  # noqa: E402


def _model(model_dir: str) -> SentenceTransformer:
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 16
    model.eval()
    return model


def _run_suite(rank: int, world_size: int, model_dir: str) -> dict:
    """Every suite evaluator through ``run_evaluator``; what this rank encoded and what it returned."""
    model = _model(model_dir)
    suite = build_suite(teacher=model)
    encoded: list[int] = []
    local = encode_module.encode_local

    def counting(model, sentences, **options):
        encoded.append(len(sentences))
        return local(model, sentences, **options)

    encode_module.encode_local = counting
    try:
        results = {name: run_evaluator(ev, model) for name, ev in suite.items()}
    finally:
        encode_module.encode_local = local
    custom = suite["sequential"].evaluators[-1]
    return {"results": results, "encoded": sum(encoded), "custom_calls": custom.calls}


def _single_process(model_dir: str) -> dict:
    model = _model(model_dir)
    suite = build_suite(teacher=model)
    return {name: ev(model) for name, ev in suite.items()}


def _gather_on_rank(rank: int, world_size: int) -> list:
    """gather_rows of pieces of different lengths and dtypes; encode_rows of a tiny list (no collective)."""
    out = []
    for dtype in (torch.float32, torch.int8, torch.uint8, torch.bfloat16, torch.float64):
        piece = (torch.arange((rank + 2) * 6).reshape(rank + 2, 6) * (rank + 1) - 7).to(dtype)
        out.append(gather_rows(piece))
    out.append(gather_rows(np.full((rank + 1, 3), rank, dtype=np.int8)))
    with sharded_encoding():
        out.append(encode_rows(lambda part: np.array([[len(part)]]), ["one query"]))
    return out


def test_shard_bounds_cover_every_row_once_in_order():
    for n in (0, 1, 5, 16, 17):
        for world in (1, 2, 3):
            pieces = [range(*shard_bounds(n, r, world)) for r in range(world)]
            assert [i for p in pieces for i in p] == list(range(n))
            assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_which_evaluators_shard():
    sts = EmbeddingSimilarityEvaluator(["a"], ["b"], [0.5])
    assert is_shardable(sts) and is_shardable(SequentialEvaluator([sts]))
    assert not is_shardable(CustomEvaluator(["a"]))  # its own __call__: rank 0 alone

    class Renamed(EmbeddingSimilarityEvaluator):  # a subclass that keeps raystx's __call__ stays sharded
        pass

    class Wrapped(EmbeddingSimilarityEvaluator):
        def __call__(self, model, output_path=None, epoch=-1, steps=-1):
            return super().__call__(model, output_path, epoch, steps)

    class OptIn(SentenceEvaluator):
        shardable = True

    assert is_shardable(Renamed(["a"], ["b"], [0.5]))
    assert not is_shardable(Wrapped(["a"], ["b"], [0.5]))
    assert is_shardable(OptIn())
    assert not is_shardable(lambda model, *a: {})


def test_gather_rows_is_bit_exact_for_every_dtype_and_uneven_pieces():
    ranks = run_distributed(_gather_on_rank, 2, (), timeout=300)
    assert len(ranks[0]) == len(ranks[1])
    for got0, got1 in zip(ranks[0], ranks[1]):
        if isinstance(got0, torch.Tensor):
            assert torch.equal(got0, got1)
        else:
            assert np.array_equal(got0, got1)
    for i, dtype in enumerate((torch.float32, torch.int8, torch.uint8, torch.bfloat16, torch.float64)):
        expected = torch.cat(
            [(torch.arange((r + 2) * 6).reshape(r + 2, 6) * (r + 1) - 7).to(dtype) for r in (0, 1)]
        )
        assert ranks[0][i].dtype == dtype and torch.equal(ranks[0][i], expected)
    assert np.array_equal(ranks[0][5], np.array([[0] * 3, [1] * 3, [1] * 3], dtype=np.int8))
    assert ranks[0][6].tolist() == [[1]]  # one text: encoded whole on each rank, not split


def test_every_evaluator_sharded_on_two_ranks_equals_one_process(tiny_bert_dir):
    single = _single_process(str(tiny_bert_dir))
    one_rank = _run_suite(0, 1, str(tiny_bert_dir))  # no process group: plain calls
    ranks = run_distributed(_run_suite, 2, (str(tiny_bert_dir),), timeout=600)

    expected = flat_metrics(single)
    assert flat_metrics(one_rank["results"]) == expected
    got = flat_metrics(ranks[0]["results"])
    assert got.keys() == expected.keys() and len(expected) > 50
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-6), key
    assert all(v is None for v in ranks[1]["results"].values())  # rank 0's result is the one reported
    # the work was split: each rank encoded about half the texts (lists shorter than 2 per rank, such as one
    # reranking query, are encoded whole on both; the custom evaluator's model.encode is not counted)
    assert ranks[0]["custom_calls"] == 1 and ranks[1]["custom_calls"] == 0
    total = one_rank["encoded"]
    for rank in ranks:
        assert rank["encoded"] < 0.6 * total, (rank["encoded"], total)
    assert ranks[0]["encoded"] + ranks[1]["encoded"] >= total
