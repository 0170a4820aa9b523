"""Losses for training sentence-embedding models; names and arguments follow sentence-transformers."""

from __future__ import annotations

from raystx.losses.base import ColumnContract, RaystxLoss

__all__ = ["ColumnContract", "RaystxLoss"]
