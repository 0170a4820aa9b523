"""Two gloo processes x B rows == one process on the 2B union batch (ranking losses with gather on).

Each rank computes its loss on its own rows against the gathered global batch; the trainer averages the
parameter gradients over ranks. So the mean of the rank losses must equal the single-process loss and the
rank-averaged gradients must equal the single-process gradients (float64, tight tolerances).
"""

from __future__ import annotations

import pytest
import torch
from conftest import WORDS, make_sentences
from dist_harness import loss_and_grads, run_distributed
from torch import nn

from raystx.losses import (
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    GISTEmbedLoss,
    GlobalOrthogonalRegularizationLoss,
    MegaBatchMarginLoss,
    MultipleNegativesRankingLoss,
)

ROWS_PER_RANK = 4
EMBEDDING_CONFIGS = [
    (3, dict()),
    (3, dict(directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"))),
    (2, dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")),
    (4, dict(hardness_mode="all_negatives", hardness_strength=3.0)),
]


def _embedding_losses():
    """(name, number of columns, loss) triples checked on random embeddings."""
    for index, (num_columns, kwargs) in enumerate(EMBEDDING_CONFIGS):
        yield f"mnrl{index}", num_columns, MultipleNegativesRankingLoss(None, **kwargs)
    yield "mega_batch_margin", 2, MegaBatchMarginLoss(None, 0.6, -0.2, use_mini_batched_version=False)
    yield "gor", 3, GlobalOrthogonalRegularizationLoss(None)


def _embedding_worker(rank: int, world: int) -> list[dict]:
    """Losses on random float64 embeddings: this rank's slice of a union batch every rank can rebuild."""
    results = []
    for seed, (_, num_columns, loss) in enumerate(_embedding_losses()):
        g = torch.Generator().manual_seed(seed)
        union = [
            torch.randn(2 * ROWS_PER_RANK, 6, generator=g, dtype=torch.float64) for _ in range(num_columns)
        ]
        rows = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK) if world > 1 else slice(None)
        leaves = [u[rows].clone().requires_grad_() for u in union]
        value = loss.compute_loss_from_embeddings(leaves, None)
        if isinstance(value, dict):
            value = sum(value.values())
        value.backward()
        negatives = getattr(loss, "last_num_negatives", None)
        results.append({"loss": value.detach(), "grads": [x.grad for x in leaves], "negatives": negatives})
    return results


class _WordTokenizer:
    """Whitespace tokenizer over a fixed word list (id 0 is padding); enough of the HF interface for GIST."""

    def __init__(self, words: list[str]) -> None:
        self.vocab = {"[PAD]": 0, **{w: i + 1 for i, w in enumerate(sorted(set(words)))}}
        self.words = {i: w for w, i in self.vocab.items()}

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def batch_decode(self, ids: torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        return [" ".join(self.words[i] for i in row.tolist() if i) for row in ids]


class TinyEncoder(nn.Module):
    """A torch-only sentence encoder with the model interface the losses use (no transformers import).

    Word embeddings -> tanh(linear) -> masked mean pooling, float64, weights drawn from ``seed``. The
    distributed workers use it because spawning a process that imports transformers costs seconds.
    """

    def __init__(self, seed: int, dim: int = 8) -> None:
        super().__init__()
        self.tokenizer = _WordTokenizer(WORDS)
        self.max_seq_length = 16
        g = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding(len(self.tokenizer.vocab), dim, dtype=torch.float64)
        self.proj = nn.Linear(dim, dim, dtype=torch.float64)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=g, dtype=torch.float64))

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = [[self.tokenizer.vocab[w] for w in text.split()][: self.max_seq_length] for text in texts]
        width = max(len(row) for row in ids)
        input_ids = torch.tensor([row + [0] * (width - len(row)) for row in ids])
        return {"input_ids": input_ids, "attention_mask": (input_ids > 0).long()}

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = features["attention_mask"].unsqueeze(-1).to(torch.float64)
        tokens = torch.tanh(self.proj(self.embed(features["input_ids"])))
        features["sentence_embedding"] = (tokens * mask).sum(dim=1) / mask.sum(dim=1)
        return features


MODEL_LOSSES = {
    "mnrl": lambda model, guide: MultipleNegativesRankingLoss(model),
    "cached_mnrl": lambda model, guide: CachedMultipleNegativesRankingLoss(model, mini_batch_size=3),
    "gist": lambda model, guide: GISTEmbedLoss(model, guide, margin=0.02),
    "cached_gist": lambda model, guide: CachedGISTEmbedLoss(model, guide, mini_batch_size=3, margin=0.02),
}


def _model_worker(rank: int, world: int, names: list[str]) -> dict[str, tuple]:
    """Each named loss on a tiny encoder: this rank's rows of an (anchor, positive, negative) batch."""
    model, guide = TinyEncoder(seed=2), TinyEncoder(seed=3, dim=4)
    columns = [make_sentences(2 * ROWS_PER_RANK, seed=100 + c) for c in range(3)]
    if world > 1:
        columns = [c[rank * ROWS_PER_RANK : (rank + 1) * ROWS_PER_RANK] for c in columns]
    features = [model.tokenize(c) for c in columns]
    return {name: loss_and_grads(model, MODEL_LOSSES[name](model, guide), features) for name in names}


def test_embedding_losses_two_ranks_equal_union_batch():
    """MNRL (several options), MegaBatchMargin and GOR: 2 ranks x B rows == 1 process x 2B rows."""
    single = _embedding_worker(0, 1)
    ranks = run_distributed(_embedding_worker, world_size=2, timeout=60)
    for index, (name, num_columns, _) in enumerate(_embedding_losses()):
        message = lambda m, n=name: f"{n}: {m}"  # noqa: E731
        mean_loss = (ranks[0][index]["loss"] + ranks[1][index]["loss"]) / 2
        torch.testing.assert_close(mean_loss, single[index]["loss"], rtol=1e-10, atol=1e-12, msg=message)
        for column in range(num_columns):
            # each rank's slice gets the gradient of the sum of all rank losses; the trainer averages by 2
            stitched = torch.cat([ranks[r][index]["grads"][column] for r in range(2)]) / 2
            torch.testing.assert_close(
                stitched, single[index]["grads"][column], rtol=1e-10, atol=1e-12, msg=message
            )
        if name.startswith("mnrl"):
            # every anchor saw the whole global batch of candidates on both ranks
            expected = 2 * ROWS_PER_RANK * (num_columns - 1) - 1
            assert ranks[0][index]["negatives"] == single[index]["negatives"] == expected


@pytest.mark.parametrize("names", [["mnrl", "cached_mnrl"], ["gist", "cached_gist"]], ids=["mnrl", "gist"])
def test_model_losses_two_ranks_equal_union_batch(names):
    """Losses that embed through the model (incl. GradCache replay): parameter gradients match."""
    single = _model_worker(0, 1, names)
    ranks = run_distributed(_model_worker, world_size=2, args=(names,), timeout=90)
    for name, (value, grads) in single.items():
        mean_loss = (ranks[0][name][0] + ranks[1][name][0]) / 2
        torch.testing.assert_close(mean_loss, value, rtol=1e-9, atol=1e-11, msg=lambda m, n=name: f"{n}: {m}")
        assert ranks[0][name][1].keys() == grads.keys()
        for param, grad in grads.items():
            averaged = (ranks[0][name][1][param] + ranks[1][name][1][param]) / 2
            torch.testing.assert_close(
                averaged, grad, rtol=1e-7, atol=1e-10, msg=lambda m, n=name, p=param: f"{n} {p}: {m}"
            )
        # the union batch really is shared: a rank's own loss differs from the union loss
        assert not torch.allclose(ranks[0][name][0], value)
