"""The v2 ``fit()`` dataset classes of sentence-transformers: they yield ``InputExample``s for a ``DataLoader``.

``model.fit(train_objectives=[(DataLoader(dataset, ...), loss)])`` reads the examples each class yields (see
``raystx.train.fit``): a ``SentenceLabelDataset`` also switches the trainer to label-grouped batches, a
``NoDuplicatesDataLoader`` to batches without repeated texts. New code should build a ``datasets.Dataset``.
"""

from __future__ import annotations

import gzip
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, IterableDataset

from raystx.data.input_example import InputExample, NoDuplicatesDataLoader

logger = logging.getLogger(__name__)

__all__ = [
    "DenoisingAutoEncoderDataset",
    "NoDuplicatesDataLoader",
    "ParallelSentencesDataset",
    "SentenceLabelDataset",
    "SentencesDataset",
]


class SentencesDataset(Dataset):
    """A list of ``InputExample`` as a map-style dataset (``model`` is accepted for compatibility, unused)."""

    def __init__(self, examples: Sequence[InputExample], model: Any = None) -> None:
        self.examples = list(examples)

    def __getitem__(self, item: int) -> InputExample:
        return self.examples[item]

    def __len__(self) -> int:
        return len(self.examples)


class SentenceLabelDataset(IterableDataset):
    """Examples in runs of ``samples_per_label`` with the same label (for batch-triplet losses).

    Labels with fewer than ``samples_per_label`` examples are dropped. Each pass visits the labels in a random
    order and draws ``samples_per_label`` distinct examples of each; without replacement an example is drawn at
    most once per pass over the labels. Iteration yields ``len(self)`` examples. Under ``fit()`` the trainer
    builds label-grouped batches itself (``batch_sampler="group_by_label"``) from these examples.
    """

    def __init__(
        self, examples: Sequence[InputExample], samples_per_label: int = 2, with_replacement: bool = False
    ) -> None:
        super().__init__()
        if samples_per_label < 1:
            raise ValueError(f"samples_per_label must be >= 1 (got {samples_per_label})")
        self.samples_per_label = samples_per_label
        self.with_replacement = with_replacement
        by_label: dict[Any, list[InputExample]] = {}
        for example in examples:
            by_label.setdefault(example.label, []).append(example)
        self.groups = [group for group in by_label.values() if len(group) >= samples_per_label]
        self.grouped_inputs = [example for group in self.groups for example in group]
        logger.info(
            "SentenceLabelDataset: %d examples, %d usable (labels with at least %d examples), %d labels",
            len(examples),
            len(self.grouped_inputs),
            samples_per_label,
            len(self.groups),
        )

    def __iter__(self) -> Iterator[InputExample]:
        if not self.groups:
            return
        produced = 0
        while produced < len(self.grouped_inputs):
            used: list[set[int]] = [set() for _ in self.groups]
            progressed = False
            for label in np.random.permutation(len(self.groups)):
                group = self.groups[label]
                free = [i for i in range(len(group)) if self.with_replacement or i not in used[label]]
                if len(free) < self.samples_per_label:
                    continue
                for i in np.random.choice(free, self.samples_per_label, replace=False):
                    used[label].add(int(i))
                    produced += 1
                    progressed = True
                    yield group[int(i)]
                    if produced >= len(self.grouped_inputs):
                        return
            if not progressed:
                return

    def __len__(self) -> int:
        return len(self.grouped_inputs)


class DenoisingAutoEncoderDataset(Dataset):
    """``InputExample(texts=[noise_fn(sentence), sentence])`` per sentence (for ``DenoisingAutoEncoderLoss``).

    The default noise deletes each whitespace-separated word with probability 0.6 (keeping at least one);
    sentence-transformers tokenizes with nltk instead, which raystx does not require.
    """

    def __init__(self, sentences: Sequence[str], noise_fn: Callable[[str], str] | None = None) -> None:
        self.sentences = list(sentences)
        self.noise_fn = noise_fn if noise_fn is not None else DenoisingAutoEncoderDataset.delete

    def __getitem__(self, item: int) -> InputExample:
        sentence = self.sentences[item]
        return InputExample(texts=[self.noise_fn(sentence), sentence])

    def __len__(self) -> int:
        return len(self.sentences)

    @staticmethod
    def delete(text: str, del_ratio: float = 0.6) -> str:
        """``text`` with each word dropped with probability ``del_ratio`` (at least one word stays)."""
        words = text.split()
        if not words:
            return text
        keep = np.random.rand(len(words)) > del_ratio
        if not keep.any():
            keep[np.random.randint(len(words))] = True
        return " ".join(word for word, kept in zip(words, keep) if kept)


class ParallelSentencesDataset(Dataset):
    """Translations paired with the teacher's embedding of the source sentence (multilingual distillation).

    ``load_data(path)`` reads a tab-separated file (``.gz`` too) whose first column is the source sentence and
    whose other columns are its translations. Each item is ``InputExample(texts=[sentence], label=embedding)``
    where ``sentence`` is the source or one of its translations and ``embedding`` is
    ``teacher_model.encode(source)``; train the student with ``MSELoss``. With several files, ``weight`` sets how
    many source sentences each contributes per round of sampling.
    """

    def __init__(
        self, student_model: Any, teacher_model: Any, batch_size: int = 8, use_embedding_cache: bool = True
    ) -> None:
        self.student_model = student_model
        self.teacher_model = teacher_model
        self.batch_size = batch_size
        self.use_embedding_cache = use_embedding_cache
        self.embedding_cache: dict[str, np.ndarray] = {}
        self.datasets: list[list[tuple[str, list[str]]]] = []
        self.positions: list[int] = []
        self.dataset_indices: list[int] = []
        self.cache: list[InputExample] = []
        self.num_sentences = 0

    def load_data(
        self,
        filepath: str,
        weight: int = 100,
        max_sentences: int | None = None,
        max_sentence_length: int = 128,
    ) -> None:
        """Read parallel sentences from ``filepath`` (one tab-separated group per line) and add them."""
        opener = gzip.open if str(filepath).endswith(".gz") else open
        with opener(filepath, "rt", encoding="utf8") as handle:
            rows = [line.rstrip("\n").split("\t") for line in handle if line.strip()]
        self.add_dataset(
            rows, weight=weight, max_sentences=max_sentences, max_sentence_length=max_sentence_length
        )

    def add_dataset(
        self,
        parallel_sentences: Sequence[Sequence[str]],
        weight: int = 100,
        max_sentences: int | None = None,
        max_sentence_length: int | None = 128,
    ) -> None:
        """Add groups ``[source, translation, ...]``; groups with a sentence over ``max_sentence_length`` chars are skipped."""
        groups: dict[str, list[str]] = {}
        for sentences in parallel_sentences:
            sentences = [s.strip() for s in sentences if s.strip()]
            if not sentences:
                continue
            if max_sentence_length and max(len(s) for s in sentences) > max_sentence_length:
                continue
            targets = groups.setdefault(sentences[0], [])
            targets.extend(s for s in sentences if s not in targets)
            if max_sentences and len(groups) >= max_sentences:
                break
        if not groups:
            return
        self.num_sentences += sum(len(targets) for targets in groups.values())
        self.dataset_indices.extend([len(self.datasets)] * weight)
        self.datasets.append(list(groups.items()))
        self.positions.append(0)

    def _next_group(self, dataset: int) -> tuple[str, list[str]]:
        group = self.datasets[dataset][self.positions[dataset]]
        self.positions[dataset] += 1
        if self.positions[dataset] >= len(self.datasets[dataset]):
            self.positions[dataset] = 0
            random.shuffle(self.datasets[dataset])
        return group

    def _embed(self, sentences: list[str]) -> list[np.ndarray]:
        todo = [s for s in dict.fromkeys(sentences) if s not in self.embedding_cache]
        if todo:
            vectors = self.teacher_model.encode(todo, batch_size=self.batch_size, convert_to_numpy=True)
            fresh = dict(zip(todo, np.asarray(vectors)))
        else:
            fresh = {}
        out = [self.embedding_cache[s] if s in self.embedding_cache else fresh[s] for s in sentences]
        if self.use_embedding_cache:
            self.embedding_cache.update(fresh)
        return out

    def generate_data(self) -> None:
        """Fill the cache with one round of sampling (``weight`` source groups per dataset), shuffled."""
        groups = [self._next_group(dataset) for dataset in self.dataset_indices]
        embeddings = self._embed([source for source, _ in groups])
        for (_, targets), embedding in zip(groups, embeddings):
            self.cache.extend(InputExample(texts=[t], label=embedding) for t in targets)
        random.shuffle(self.cache)

    def __len__(self) -> int:
        return self.num_sentences

    def __getitem__(self, idx: int) -> InputExample:
        if not self.datasets:
            raise IndexError("ParallelSentencesDataset is empty: call load_data() or add_dataset() first")
        if not self.cache:
            self.generate_data()
        return self.cache.pop()
