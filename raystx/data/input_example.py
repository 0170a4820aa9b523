"""Data containers of the sentence-transformers v2 ``fit()`` API: ``InputExample`` and ``NoDuplicatesDataLoader``.

They exist so that v2-era training scripts run with only their imports changed; ``raystx.train.fit.fit`` turns
them into ``datasets.Dataset`` columns (``sentence_0``, ``sentence_1``, ..., ``label``) for the trainer. New code
should build a ``datasets.Dataset`` directly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any


class InputExample:
    """One training example: its texts (one per input column), a label and an optional id.

    Args:
        guid: an identifier for the example (not used for training).
        texts: the texts, in the order the loss receives them (e.g. ``[anchor, positive]``).
        label: a float score or an int class id; ``0`` (the default) means "no label" when every example of a
            data loader keeps it.
    """

    __slots__ = ("guid", "label", "texts")

    def __init__(self, guid: str = "", texts: Sequence[str] | None = None, label: int | float = 0) -> None:
        self.guid = guid
        self.texts = list(texts) if texts is not None else None
        self.label = label

    def __repr__(self) -> str:
        return f"InputExample(guid={self.guid!r}, texts={self.texts!r}, label={self.label!r})"

    def __str__(self) -> str:
        return f"<InputExample> label: {self.label}, texts: {'; '.join(map(str, self.texts or []))}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InputExample):
            return NotImplemented
        return (self.guid, self.texts, self.label) == (other.guid, other.texts, other.label)

    def __hash__(self) -> int:
        return hash((self.guid, tuple(self.texts or ()), self.label))


def _text_key(text: Any) -> str:
    """How two texts are compared for duplicates: case- and surrounding-space-insensitive."""
    return str(text).strip().lower()


class NoDuplicatesDataLoader:
    """Batches of ``InputExample`` in which no text occurs twice (for in-batch-negative losses).

    A v2 ``fit()`` call that receives this loader trains with ``batch_sampler="no_duplicates"`` and the
    loader's ``batch_size``; iterating it directly yields ``len(self)`` lists of ``batch_size`` examples,
    walking the shuffled examples and skipping any example whose texts are already in the batch (reshuffling
    and wrapping around when it reaches the end).

    Args:
        train_examples: the examples (kept as given; a shuffled copy is iterated).
        batch_size: examples per batch.
        seed: seed of the shuffling (``None``: not reproducible, as in sentence-transformers).
    """

    def __init__(
        self, train_examples: Sequence[InputExample], batch_size: int, seed: int | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.train_examples = list(train_examples)
        self.batch_size = int(batch_size)
        self.collate_fn = None
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return math.floor(len(self.train_examples) / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        n_batches = len(self)
        if n_batches == 0:
            return
        distinct = {_text_key(t) for ex in self.train_examples for t in (ex.texts or [])}
        if len(distinct) < self.batch_size:
            raise ValueError(
                f"NoDuplicatesDataLoader cannot fill a batch of {self.batch_size}: the examples hold only "
                f"{len(distinct)} distinct texts"
            )
        order = list(range(len(self.train_examples)))
        self._rng.shuffle(order)
        pointer = 0
        for _ in range(n_batches):
            batch: list[InputExample] = []
            seen: set[str] = set()
            misses = 0
            while len(batch) < self.batch_size:
                example = self.train_examples[order[pointer]]
                keys = [_text_key(t) for t in (example.texts or [])]
                if seen.isdisjoint(keys):
                    batch.append(example)
                    seen.update(keys)
                    misses = 0
                else:
                    misses += 1
                    if misses > len(order):
                        raise ValueError(
                            "NoDuplicatesDataLoader cannot fill a batch without repeating a text; lower "
                            "batch_size or deduplicate the examples"
                        )
                pointer += 1
                if pointer >= len(order):
                    pointer = 0
                    self._rng.shuffle(order)
            yield self.collate_fn(batch) if self.collate_fn is not None else batch


def examples_to_columns(examples: Sequence[Any]) -> dict[str, list[Any]]:
    """Columns for a ``datasets.Dataset`` from ``InputExample``-like objects (``.texts``, ``.label``).

    Text ``i`` of every example goes to column ``sentence_{i}``; a ``label`` column is added unless every label
    is ``0`` (the ``InputExample`` default, i.e. an unlabelled dataset). All examples must have the same number
    of texts. Returns ``{column: values}`` in example order.
    """
    if not examples:
        raise ValueError("No training examples: the data loader yielded nothing")
    widths = {len(ex.texts or []) for ex in examples}
    if len(widths) != 1:
        raise ValueError(
            f"Every InputExample of one data loader must have the same number of texts (found {sorted(widths)})"
        )
    width = widths.pop()
    if width == 0:
        raise ValueError("InputExample.texts is empty; give at least one text per example")
    columns: dict[str, list[Any]] = {f"sentence_{i}": [ex.texts[i] for ex in examples] for i in range(width)}
    labels = [ex.label for ex in examples]
    try:
        unlabelled = all(not isinstance(v, (list, tuple)) and v == 0 for v in labels)
    except (TypeError, ValueError):  # e.g. numpy arrays as labels
        unlabelled = False
    if not unlabelled:
        columns["label"] = [v.tolist() if hasattr(v, "tolist") else v for v in labels]
    return columns
