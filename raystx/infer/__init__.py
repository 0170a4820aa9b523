"""Distributed inference on Ray actors holding model replicas: bulk encoding and hard-negative mining.

``mine_hard_negatives`` (also ``raystx.util.mine_hard_negatives``) is sentence-transformers' function with the
encoding and the nearest-neighbour search spread over ``num_workers`` Ray actors. Importing this package does
not import Ray; the functions do when called.
"""

from __future__ import annotations

from raystx.infer.mining import mine_hard_negatives
from raystx.infer.pool import InferencePool

__all__ = ["InferencePool", "mine_hard_negatives"]
