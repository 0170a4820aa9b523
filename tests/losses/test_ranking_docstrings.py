"""Each loss of this area documents an Inputs table (Texts | Labels) that agrees with its ColumnContract."""

from __future__ import annotations

import inspect
import re

import pytest

from raystx.losses import (
    AdaptiveLayerLoss,
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    CachedMultipleNegativesSymmetricRankingLoss,
    ColumnContract,
    GISTEmbedLoss,
    GlobalOrthogonalRegularizationLoss,
    Matryoshka2dLoss,
    MatryoshkaLoss,
    MegaBatchMarginLoss,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)

LOSSES = [
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
    CachedMultipleNegativesRankingLoss,
    CachedMultipleNegativesSymmetricRankingLoss,
    GISTEmbedLoss,
    CachedGISTEmbedLoss,
    MegaBatchMarginLoss,
    GlobalOrthogonalRegularizationLoss,
    MatryoshkaLoss,
    AdaptiveLayerLoss,
    Matryoshka2dLoss,
]
WRAPPERS = {MatryoshkaLoss, AdaptiveLayerLoss, Matryoshka2dLoss}


def parse_inputs_table(doc: str) -> list[tuple[str, str]]:
    """The (texts, labels) rows of the reST grid table that follows the ``Inputs:`` line."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Inputs:")
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        text = line.strip()
        if text.startswith("+"):
            continue
        if not text.startswith("|"):
            break
        rows.append([cell.strip() for cell in text.strip("|").split("|")])
    header, *body = rows
    assert header == ["Texts", "Labels"], header
    return [(texts, labels) for texts, labels in body]


def column_range(texts: str) -> tuple[int, int | None] | None:
    """``(min, max)`` input columns a row describes (``max`` None: unbounded); None for ``any``."""
    if texts == "any":
        return None
    inner = re.fullmatch(r"\((.*)\).*", texts)
    assert inner, texts
    items = [item.strip() for item in inner.group(1).split(",")]
    if "..." in items:  # (a, p, negative_1, ..., negative_n): n >= 1
        return len(items) - 2, None
    return len(items), len(items)


def test_parser_on_a_known_table():
    doc = """
    Inputs:
        +------------------------------+--------+
        | Texts                        | Labels |
        +==============================+========+
        | (anchor, positive) pairs     | none   |
        +------------------------------+--------+
        | (a, p, n_1, ..., n_k) tuples | none   |
        +------------------------------+--------+

    Example:
    """
    rows = parse_inputs_table(doc)
    assert rows == [("(anchor, positive) pairs", "none"), ("(a, p, n_1, ..., n_k) tuples", "none")]
    assert [column_range(t) for t, _ in rows] == [(2, 2), (3, None)]


@pytest.mark.parametrize("loss_cls", LOSSES, ids=lambda c: c.__name__)
def test_inputs_table_matches_contract(loss_cls):
    doc = inspect.getdoc(loss_cls)
    rows = parse_inputs_table(doc)
    assert rows, f"{loss_cls.__name__} has an empty Inputs table"
    assert "Example:" in doc and "raystx" in doc.split("Example:")[1]
    contract: ColumnContract = loss_cls.contract
    ranges = [column_range(texts) for texts, _ in rows]
    labels = {label for _, label in rows}
    if loss_cls in WRAPPERS:
        # "any | any": the wrapper takes the contract of the loss it wraps
        assert ranges == [None] and labels == {"any"}
        return
    if ranges == [None]:
        assert (contract.min_inputs, contract.max_inputs) == (1, None)
    else:
        assert min(r[0] for r in ranges) == contract.min_inputs
        maxima = [r[1] for r in ranges]
        assert (None if None in maxima else max(maxima)) == contract.max_inputs
    assert labels == {contract.label}
