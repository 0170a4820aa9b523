"""Losses for training sentence-embedding models; names and arguments follow sentence-transformers."""

from __future__ import annotations

from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.losses.cosent import CoSENTLoss

__all__ = ["ColumnContract", "RaystxLoss"]
__all__ += ["CoSENTLoss"]
