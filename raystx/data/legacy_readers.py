"""The v2 readers of sentence-transformers: turn dataset files into lists of ``InputExample``.

File formats follow sentence-transformers: ``STSDataReader`` reads delimited rows (``.gz`` too) with two
sentences and a score (normalised from ``[min_score, max_score]`` to ``[0, 1]`` by default);
``NLIDataReader`` reads ``s1.<split>``, ``s2.<split>`` and ``labels.<split>`` gzip files; ``LabelSentenceReader``
reads ``label<TAB>sentence`` lines and numbers the labels in order of appearance; ``PairedFilesReader`` reads
line-aligned files; ``TripletReader`` reads delimited anchor/positive/negative rows. ``max_examples=0`` means all.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Sequence
from typing import IO

from raystx.data.input_example import InputExample

__all__ = [
    "InputExample",
    "LabelSentenceReader",
    "NLIDataReader",
    "PairedFilesReader",
    "STSBenchmarkDataReader",
    "STSDataReader",
    "TripletReader",
]


def _open_text(path: str) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def _enough(examples: list[InputExample], max_examples: int) -> bool:
    return 0 < max_examples <= len(examples)


class STSDataReader:
    """Sentence pairs with a similarity score; columns chosen by index."""

    def __init__(
        self,
        dataset_folder: str,
        s1_col_idx: int = 0,
        s2_col_idx: int = 1,
        score_col_idx: int = 2,
        delimiter: str = "\t",
        quoting: int = csv.QUOTE_NONE,
        normalize_scores: bool = True,
        min_score: float = 0,
        max_score: float = 5,
    ) -> None:
        self.dataset_folder = dataset_folder
        self.s1_col_idx, self.s2_col_idx, self.score_col_idx = s1_col_idx, s2_col_idx, score_col_idx
        self.delimiter, self.quoting = delimiter, quoting
        self.normalize_scores, self.min_score, self.max_score = normalize_scores, min_score, max_score

    def get_examples(self, filename: str, max_examples: int = 0) -> list[InputExample]:
        """Examples ``texts=[s1, s2], label=score`` of ``dataset_folder/filename``; guid ``filename + row``."""
        examples: list[InputExample] = []
        with _open_text(os.path.join(self.dataset_folder, filename)) as handle:
            for row_id, row in enumerate(csv.reader(handle, delimiter=self.delimiter, quoting=self.quoting)):
                score = float(row[self.score_col_idx])
                if self.normalize_scores:
                    score = (score - self.min_score) / (self.max_score - self.min_score)
                texts = [row[self.s1_col_idx], row[self.s2_col_idx]]
                examples.append(InputExample(guid=f"{filename}{row_id}", texts=texts, label=score))
                if _enough(examples, max_examples):
                    break
        return examples


class STSBenchmarkDataReader(STSDataReader):
    """``STSDataReader`` for the STS benchmark files: sentences in columns 5 and 6, score in column 4."""

    def __init__(
        self,
        dataset_folder: str,
        s1_col_idx: int = 5,
        s2_col_idx: int = 6,
        score_col_idx: int = 4,
        delimiter: str = "\t",
        quoting: int = csv.QUOTE_NONE,
        normalize_scores: bool = True,
        min_score: float = 0,
        max_score: float = 5,
    ) -> None:
        super().__init__(
            dataset_folder,
            s1_col_idx,
            s2_col_idx,
            score_col_idx,
            delimiter,
            quoting,
            normalize_scores,
            min_score,
            max_score,
        )


class NLIDataReader:
    """NLI pairs from ``s1.<split>``, ``s2.<split>``, ``labels.<split>`` (gzip) with labels mapped to ids."""

    def __init__(self, dataset_folder: str) -> None:
        self.dataset_folder = dataset_folder

    def _lines(self, prefix: str, filename: str) -> list[str]:
        with gzip.open(
            os.path.join(self.dataset_folder, f"{prefix}.{filename}"), "rt", encoding="utf-8"
        ) as h:
            return h.readlines()

    def get_examples(self, filename: str, max_examples: int = 0) -> list[InputExample]:
        """``filename`` is the split suffix, e.g. ``"train.gz"``; guid ``"<filename>-<row>"``."""
        examples: list[InputExample] = []
        rows = zip(self._lines("s1", filename), self._lines("s2", filename), self._lines("labels", filename))
        for row_id, (a, b, label) in enumerate(rows):
            examples.append(
                InputExample(guid=f"{filename}-{row_id}", texts=[a, b], label=self.map_label(label))
            )
            if _enough(examples, max_examples):
                break
        return examples

    @staticmethod
    def get_labels() -> dict[str, int]:
        return {"contradiction": 0, "entailment": 1, "neutral": 2}

    def get_num_labels(self) -> int:
        return len(self.get_labels())

    def map_label(self, label: str) -> int:
        key = label.strip().lower()
        if key not in self.get_labels():
            raise ValueError(
                f"Unknown NLI label {label.strip()!r}; expected one of {sorted(self.get_labels())}"
            )
        return self.get_labels()[key]


class LabelSentenceReader:
    """``label<separator>sentence`` lines; labels become ids 0, 1, ... in order of first appearance."""

    def __init__(
        self, folder: str, label_col_idx: int = 0, sentence_col_idx: int = 1, separator: str = "\t"
    ) -> None:
        self.folder = folder
        self.label_map: dict[str, int] = {}
        self.label_col_idx, self.sentence_col_idx, self.separator = label_col_idx, sentence_col_idx, separator

    def get_examples(self, filename: str, max_examples: int = 0) -> list[InputExample]:
        examples: list[InputExample] = []
        with open(os.path.join(self.folder, filename), encoding="utf-8") as handle:
            for row_id, line in enumerate(handle):
                parts = line.strip().split(self.separator)
                label_id = self.label_map.setdefault(parts[self.label_col_idx], len(self.label_map))
                examples.append(
                    InputExample(
                        guid=f"{filename}-{row_id}", texts=[parts[self.sentence_col_idx]], label=label_id
                    )
                )
                if _enough(examples, max_examples):
                    break
        return examples


class PairedFilesReader:
    """Line ``i`` of every file forms example ``i`` (label 1); stops at the shortest file."""

    def __init__(self, filepaths: Sequence[str]) -> None:
        self.filepaths = list(filepaths)

    def get_examples(self, max_examples: int = 0) -> list[InputExample]:
        handles = [_open_text(path) for path in self.filepaths]
        examples: list[InputExample] = []
        try:
            for texts in zip(*handles):
                examples.append(InputExample(guid=str(len(examples)), texts=list(texts), label=1))
                if _enough(examples, max_examples):
                    break
        finally:
            for handle in handles:
                handle.close()
        return examples


class TripletReader:
    """Delimited (anchor, positive, negative) rows; columns chosen by index, optional header row."""

    def __init__(
        self,
        dataset_folder: str,
        s1_col_idx: int = 0,
        s2_col_idx: int = 1,
        s3_col_idx: int = 2,
        has_header: bool = False,
        delimiter: str = "\t",
        quoting: int = csv.QUOTE_NONE,
    ) -> None:
        self.dataset_folder = dataset_folder
        self.columns = (s1_col_idx, s2_col_idx, s3_col_idx)
        self.has_header, self.delimiter, self.quoting = has_header, delimiter, quoting

    def get_examples(self, filename: str, max_examples: int = 0) -> list[InputExample]:
        examples: list[InputExample] = []
        with open(os.path.join(self.dataset_folder, filename), encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter=self.delimiter, quoting=self.quoting)
            if self.has_header:
                next(rows, None)
            for row in rows:
                examples.append(InputExample(texts=[row[i] for i in self.columns]))
                if _enough(examples, max_examples):
                    break
        return examples
