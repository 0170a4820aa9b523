"""Losses for training sentence-embedding models; names and arguments follow sentence-transformers."""

from __future__ import annotations

from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.losses.cached_multiple_negatives_ranking import CachedMultipleNegativesRankingLoss
from raystx.losses.cosent import CoSENTLoss
from raystx.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss

__all__ = ["ColumnContract", "RaystxLoss"]
__all__ += ["CoSENTLoss"]
__all__ += ["MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"]
