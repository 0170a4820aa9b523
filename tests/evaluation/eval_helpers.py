"""Helpers shared by the evaluation parity tests (test files import them as ``from eval_helpers import ...``;
pytest puts this directory on ``sys.path``). ``st_model`` is a fixture: importing it into a test module
registers it there."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="session")
def st_model(tiny_bert_dir):
    """The tiny random BERT loaded by sentence-transformers (Transformer + mean pooling), on CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_bert_dir), device="cpu")


def assert_same_metrics(ours: dict, theirs: dict, tol: float = 1e-6) -> None:
    """Same key set, every value within ``tol`` (NaN only where both are NaN)."""
    only_ours, only_theirs = set(ours) - set(theirs), set(theirs) - set(ours)
    assert not only_ours and not only_theirs, f"keys differ: ours-only {only_ours}, ST-only {only_theirs}"
    for key, value in theirs.items():
        mine = ours[key]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(mine, float) and math.isnan(mine), key
            continue
        assert abs(float(mine) - float(value)) <= tol, f"{key}: ours {mine} vs ST {value}"
