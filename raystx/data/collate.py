"""Turn a batch of rows into what a loss consumes: tokenized features per input column plus a label tensor.

Runs off the training step's critical path: ``Prefetcher`` fetches rows and tokenizes the next batches in a
background thread that owns its own tokenizer copy (fast tokenizers are not safe to share across threads; the
main thread's tokenizer stays free for ``model.encode`` during evaluation).
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

Features = dict[str, Tensor]
Tokenize = Callable[..., Features]


def thread_private_tokenize(model: torch.nn.Module) -> Tokenize:
    """A ``tokenize(texts)`` bound to a private copy of the model's tokenizer (safe to use in another thread)."""
    first = model[0] if isinstance(model, torch.nn.Sequential) else model
    private = getattr(first, "with_private_tokenizer", None)
    if callable(private):  # a Router: one tokenizer per route
        return private().tokenize
    if not hasattr(first, "tokenizer"):
        return model.tokenize
    module = copy.copy(first)  # shallow: shares parameters, gets its own tokenizer below
    module.tokenizer = copy.deepcopy(first.tokenizer)
    return module.tokenize


def resolve_prompt(prompts: Any, dataset: str, column: str) -> str | None:
    """The prompt for ``column`` of ``dataset`` from ST-style ``prompts`` (str | {col: str} | {ds: str | {col: str}})."""
    if prompts is None:
        return None
    if isinstance(prompts, str):
        return prompts
    if dataset in prompts:
        inner = prompts[dataset]
        if isinstance(inner, str):
            return inner
        return inner.get(column)
    value = prompts.get(column)
    return value if isinstance(value, str) else None


def resolve_route(router_mapping: Any, dataset: str, column: str) -> str | None:
    """The Router task for ``column`` of ``dataset`` from ``router_mapping`` ({col: route} | {ds: {col: route}})."""
    if not router_mapping:
        return None
    inner = router_mapping.get(dataset)
    if isinstance(inner, Mapping):
        return inner.get(column)
    value = router_mapping.get(column)
    return value if isinstance(value, str) else None


def checked_texts(dataset: str, column: str, values: Sequence[Any]) -> list[str]:
    """``values`` as a list of str; raises ``DatasetValidationError`` naming the dataset, column and position
    in the batch for anything that is not a string (None must not be trained on as the text "None")."""
    texts = list(values)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            from raystx.data.errors import DatasetValidationError

            shown = "None" if text is None else f"{type(text).__name__} {text!r:.60}"
            raise DatasetValidationError(
                f"dataset {dataset!r}: the input column {column!r} holds {shown} (at position {position} of a "
                "batch); every text must be a string: drop or fill those rows before training",
                dataset=dataset,
                columns=[column],
            )
    return texts


def labels_to_tensor(values: Sequence[Any], kind: str) -> Tensor:
    """Labels as a tensor: int64 for class labels, float32 for scores and vectors."""
    array = np.asarray(values)
    if kind == "int":
        return torch.as_tensor(array.astype(np.int64))
    return torch.as_tensor(array.astype(np.float32))


class BatchCollator:
    """Rows of one dataset -> (features per input column, labels or None)."""

    def __init__(
        self,
        tokenize: Tokenize,
        input_columns: Mapping[str, Sequence[str]],
        label_columns: Mapping[str, str | None],
        label_kinds: Mapping[str, str],
        prompts: Any = None,
        router_mapping: Any = None,
    ) -> None:
        self.tokenize = tokenize
        self.router_mapping = router_mapping
        self.input_columns = input_columns
        self.label_columns = label_columns
        self.label_kinds = label_kinds
        self.prompts = prompts

    def __call__(
        self, dataset: str, rows: Mapping[str, Sequence[Any]]
    ) -> tuple[list[Features], Tensor | None]:
        features = []
        for column in self.input_columns[dataset]:
            texts = checked_texts(dataset, column, rows[column])
            prompt = resolve_prompt(self.prompts, dataset, column)
            # The model's tokenize prepends the prompt and records its length (for prompt-excluding pooling);
            # a Router model tokenizes with the route the column maps to and records it as features["task"].
            options: dict[str, Any] = {"prompt": prompt} if prompt else {}
            task = resolve_route(self.router_mapping, dataset, column)
            if task is not None:
                options["task"] = task
            features.append(self.tokenize(texts, **options))
        label_column = self.label_columns.get(dataset)
        labels = None
        if label_column is not None:
            labels = labels_to_tensor(rows[label_column], self.label_kinds.get(dataset, "float"))
        return features, labels


class Prefetcher:
    """Produce ``make(i)`` for ``i`` in ``steps`` in a background thread, ``depth`` items ahead.

    Exceptions raised by ``make`` are re-raised in the consumer at the step that failed.
    """

    _DONE = object()

    def __init__(self, steps: Sequence[int], make: Callable[[int], Any], depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(list(steps), make), daemon=True)
        self._thread.start()

    def _run(self, steps: list[int], make: Callable[[int], Any]) -> None:
        try:
            for step in steps:
                if self._stop.is_set():
                    return
                item = (step, make(step), None)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
            self._queue.put((None, None, exc))
            return
        self._queue.put((None, self._DONE, None))

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        while True:
            step, item, exc = self._queue.get()
            if exc is not None:
                raise exc
            if item is self._DONE:
                return
            yield step, item

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)
