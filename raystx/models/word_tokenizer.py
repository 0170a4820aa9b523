"""WhitespaceTokenizer: the word-level tokenizer of the legacy WordEmbeddings/BoW models.

A text is split on whitespace (lower-cased first with ``do_lower_case``); each word maps to its vocab index, tried
as is, then stripped of surrounding punctuation, then lower-cased; stop words and unknown words are dropped.
Saved as ``whitespacetokenizer_config.json`` (``vocab``, ``stop_words``, ``do_lower_case``).
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable
from pathlib import Path

from raystx.models._io import read_json, write_json

CONFIG_NAME = "whitespacetokenizer_config.json"
ST_CLASS_REF = "sentence_transformers.sentence_transformer.modules.tokenizer.whitespace.WhitespaceTokenizer"


class WhitespaceTokenizer:
    """Words -> vocab indices. ``stop_words`` defaults to none (pass a list to drop words)."""

    def __init__(
        self, vocab: Iterable[str] = (), stop_words: Iterable[str] = (), do_lower_case: bool = False
    ) -> None:
        self.stop_words = set(stop_words)
        self.do_lower_case = do_lower_case
        self.set_vocab(vocab)

    def set_vocab(self, vocab: Iterable[str]) -> None:
        self.vocab = list(vocab)
        self.word2idx = {word: idx for idx, word in enumerate(self.vocab)}

    def get_vocab(self) -> list[str]:
        return self.vocab

    def tokenize(self, text: str, **kwargs: object) -> list[int]:
        """The vocab indices of the words of ``text``, in order."""
        if self.do_lower_case:
            text = text.lower()
        ids = []
        for word in text.split():
            for candidate in (word, word.strip(string.punctuation), word.strip(string.punctuation).lower()):
                if candidate in self.stop_words:
                    break
                if candidate and candidate in self.word2idx:
                    ids.append(self.word2idx[candidate])
                    break
        return ids

    def save(self, output_path: str | os.PathLike) -> None:
        config = {
            "vocab": self.vocab,
            "stop_words": sorted(self.stop_words),
            "do_lower_case": self.do_lower_case,
        }
        write_json(Path(output_path) / CONFIG_NAME, config)

    @classmethod
    def load(cls, input_path: str | os.PathLike) -> WhitespaceTokenizer:
        config = read_json(Path(input_path) / CONFIG_NAME)
        if not isinstance(config, dict):
            raise FileNotFoundError(f"No {CONFIG_NAME} in {str(input_path)!r}")
        return cls(**config)
