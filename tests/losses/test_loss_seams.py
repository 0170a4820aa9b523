"""The seams every loss declares on ``RaystxLoss``: ``alternative_contracts`` and ``last_num_negatives``."""

from __future__ import annotations

import inspect

import torch

import raystx.losses as losses
from raystx.data.columns import contracts_of
from raystx.losses.base import ColumnContract, RaystxLoss


def test_every_loss_class_declares_the_seams_with_the_base_types():
    classes = [c for c in vars(losses).values() if inspect.isclass(c) and issubclass(c, RaystxLoss)]
    assert len(classes) > 20
    for cls in classes:
        assert isinstance(cls.alternative_contracts, tuple), cls
        assert all(isinstance(c, ColumnContract) for c in cls.alternative_contracts), cls
        assert cls.last_num_negatives is None, cls  # nothing measured before the first call
    assert RaystxLoss.alternative_contracts == () and RaystxLoss.last_num_negatives is None
    assert losses.SoftmaxLoss.alternative_contracts == (ColumnContract(2, 2, "vector"),)


def test_wrappers_adopt_the_inner_contracts_and_mnrl_counts_its_negatives(tiny_bert_dir):
    from raystx.models import SentenceTransformer

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    inner = losses.SoftmaxLoss(model, model.get_sentence_embedding_dimension(), num_labels=3)
    wrapped = losses.MatryoshkaLoss(model, inner, [32, 16])
    assert (
        contracts_of(wrapped)
        == contracts_of(inner)
        == [ColumnContract(2, 2, "int"), ColumnContract(2, 2, "vector")]
    )

    mnrl = losses.MultipleNegativesRankingLoss(model)
    assert mnrl.last_num_negatives is None
    emb = [torch.randn(4, 32), torch.randn(4, 32), torch.randn(4, 32)]
    mnrl.compute_loss_from_embeddings(emb, None)
    assert mnrl.last_num_negatives == 4 * 2 - 1  # the other 3 positives and all 4 hard negatives
    assert losses.CoSENTLoss(model).last_num_negatives is None
