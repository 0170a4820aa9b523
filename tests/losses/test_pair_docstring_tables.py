"""Every part-B loss documents its inputs in a reST ``Texts | Labels`` table that agrees with its contract.

The table is parsed from the class docstring; each row's text columns become an (min, max) input count and
its label wording a label kind. Every row must fit one of the loss's contracts (``contract`` plus any
``alternative_contracts``) and every contract must be exactly the union of the rows it covers.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import pytest

import raystx.losses as losses
from raystx.losses import ColumnContract

PART_B_LOSSES = [
    "AnglELoss",
    "BatchAllTripletLoss",
    "BatchHardSoftMarginTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "CoSENTLoss",
    "ContrastiveLoss",
    "ContrastiveTensionLoss",
    "ContrastiveTensionLossInBatchNegatives",
    "CosineSimilarityLoss",
    "DenoisingAutoEncoderLoss",
    "DistillKLDivLoss",
    "EmbedDistillLoss",
    "MSELoss",
    "MarginMSELoss",
    "OnlineContrastiveLoss",
    "SoftmaxLoss",
    "TripletLoss",
]


@dataclass(frozen=True)
class Row:
    texts: str
    labels: str
    min_inputs: int
    max_inputs: int | None
    label: str


def parse_table(doc: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Header cells and (texts, labels) data rows of the grid table after ``Inputs:``."""
    lines = doc.split("Inputs:", 1)[1].splitlines()
    table = []
    for line in lines[1:]:
        stripped = line.strip()
        if not stripped:
            if table:
                break
            continue
        if stripped[0] not in "+|":
            break
        table.append(stripped)
    rows: list[list[str]] = []
    current: list[str] | None = None
    for line in table:
        if line.startswith("+"):
            assert re.fullmatch(r"\+[-=]+\+[-=]+\+", line), f"malformed border: {line!r}"
            if current is not None:
                rows.append(current)
            current = None
            continue
        assert re.fullmatch(r"\|[^|]*\|[^|]*\|", line), f"malformed row (2 cells expected): {line!r}"
        cells = [c.strip() for c in line.strip("|").split("|")]
        current = cells if current is None else [f"{a} {b}".strip() for a, b in zip(current, cells)]
    widths = {len(line) for line in table}
    assert len(widths) == 1, "table lines have different widths"
    return rows[0], [(r[0], r[1]) for r in rows[1:]]


def input_range(texts: str) -> tuple[int, int | None]:
    if texts in ("single inputs", "sentence"):
        return 1, 1
    inner = re.sub(r"^\((.*)\)(?: \w+)?$", r"\1", texts)
    items = [i.strip() for i in inner.split(",")]
    if "..." in items:
        return items.index("..."), None
    return len(items), len(items)


def label_kind(labels: str) -> str:
    if labels == "none":
        return "none"
    if labels in ("float similarity score", "1 if positive, 0 if negative") or labels.startswith("M("):
        return "float"
    if labels == "class":
        return "int"
    if labels == "class probabilities" or labels.startswith(("teacher embeddings", "[")):
        return "vector"
    raise AssertionError(f"unknown label wording {labels!r}")


def label_fits(contract_label: str, kind: str) -> bool:
    return contract_label == kind or (contract_label == "float_or_vector" and kind in ("float", "vector"))


def rows_of(cls: type) -> list[Row]:
    header, data = parse_table(inspect.getdoc(cls))
    assert header == ["Texts", "Labels"]
    assert data, "empty table"
    return [Row(t, lab, *input_range(t), label_kind(lab)) for t, lab in data]


@pytest.mark.parametrize("name", PART_B_LOSSES)
def test_docstring_table_matches_contract(name: str) -> None:
    cls = getattr(losses, name)
    contracts: list[ColumnContract] = [cls.contract, *getattr(cls, "alternative_contracts", ())]
    rows = rows_of(cls)
    covered: dict[int, list[Row]] = {i: [] for i in range(len(contracts))}
    for row in rows:
        fits = [
            i
            for i, c in enumerate(contracts)
            if label_fits(c.label, row.label)
            and c.accepts_num_inputs(row.min_inputs)
            and (c.max_inputs is None if row.max_inputs is None else c.accepts_num_inputs(row.max_inputs))
        ]
        assert fits, f"{name}: row {row.texts!r} | {row.labels!r} fits none of {contracts}"
        covered[fits[0]].append(row)
    for i, contract in enumerate(contracts):
        mine = covered[i]
        assert mine, f"{name}: contract {contract} is not documented"
        assert min(r.min_inputs for r in mine) == contract.min_inputs
        maxima = [r.max_inputs for r in mine]
        assert (None if None in maxima else max(maxima)) == contract.max_inputs
        kinds = {r.label for r in mine}
        assert kinds == ({"float", "vector"} if contract.label == "float_or_vector" else {contract.label})


@pytest.mark.parametrize("name", PART_B_LOSSES)
def test_docstring_has_usage_example(name: str) -> None:
    doc = inspect.getdoc(getattr(losses, name))
    example = doc.split("Example:", 1)[1]
    assert "::" in example and f"{name}(" in example


def test_parser_rejects_a_mismatch() -> None:
    """The checks above can fail: a table row that contradicts the contract is caught."""

    class Wrong(losses.CoSENTLoss):
        """Wrong.

        Inputs:
            +---------------------------------------+--------+
            | Texts                                 | Labels |
            +=======================================+========+
            | (anchor, positive, negative) triplets | none   |
            +---------------------------------------+--------+
        """

    row = rows_of(Wrong)[0]
    assert (row.min_inputs, row.max_inputs, row.label) == (3, 3, "none")
    assert not Wrong.contract.accepts_num_inputs(3) or not label_fits(Wrong.contract.label, row.label)
