"""GradCache losses on a CUDA device: RNG replay of dropout on the GPU and cached == plain (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_bert, make_sentences
from dist_harness import assert_same_loss_and_grads, loss_and_grads

from raystx.losses import (
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    GISTEmbedLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)
from raystx.losses._cached_gradcache import RngSnapshot
from raystx.models import SentenceTransformer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _features(model, num_columns: int, rows: int = 10, seed: int = 0):
    return [
        {
            k: v.to("cuda") if isinstance(v, torch.Tensor) else v
            for k, v in model.tokenize(make_sentences(rows, seed=seed + 3 * c)).items()
        }
        for c in range(num_columns)
    ]


@pytest.fixture(scope="module")
def model(tiny_bert_dir):
    return SentenceTransformer(str(tiny_bert_dir), device="cuda").double()


def test_rng_snapshot_replays_cuda_dropout():
    x = torch.ones(4096, device="cuda")
    dropout = torch.nn.Dropout(0.5)
    snapshot = RngSnapshot([x])
    first = dropout(x)
    second = dropout(x)
    with snapshot:
        replay = dropout(x)
    assert torch.equal(first, replay) and not torch.equal(first, second)
    third = dropout(x)  # the outer CUDA stream continues after `second`, undisturbed by the replay
    torch.cuda.set_rng_state(snapshot.cuda_states[0])
    dropout(x)
    dropout(x)
    assert torch.equal(third, dropout(x))


def test_cached_mnrl_replays_dropout_on_cuda(tiny_bert_dir):
    model = SentenceTransformer(str(tiny_bert_dir), device="cuda")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
    model.train()
    loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=4)
    seen: list[torch.Tensor] = []
    original = loss.embed_minibatch

    def recording(features):
        out = original(features)
        seen.append(out.detach().clone())
        return out

    loss.embed_minibatch = recording
    value = loss(_features(model, 3, rows=9), None)
    first_pass, seen[:] = list(seen), []
    value.backward()
    assert len(first_pass) == len(seen) == 9
    for a, b in zip(first_pass, seen):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cached_equals_plain_on_cuda(model, tmp_path_factory):
    features = _features(model, 3)
    plain = loss_and_grads(model, MultipleNegativesRankingLoss(model), features)
    cached = loss_and_grads(model, CachedMultipleNegativesRankingLoss(model, mini_batch_size=3), features)
    assert_same_loss_and_grads(cached, plain)

    guide = SentenceTransformer(
        str(build_tiny_bert(tmp_path_factory.mktemp("cuda-guide"), seed=4, hidden=16)), device="cuda"
    ).double()
    plain = loss_and_grads(model, MatryoshkaLoss(model, GISTEmbedLoss(model, guide), [32, 8]), features)
    cached = loss_and_grads(
        model, MatryoshkaLoss(model, CachedGISTEmbedLoss(model, guide, mini_batch_size=4), [32, 8]), features
    )
    assert_same_loss_and_grads(cached, plain)
