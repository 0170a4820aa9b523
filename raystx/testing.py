"""Tiny random models and sentences for tests, examples' ``--smoke-test`` and job smoke runs (no downloads).

``build_tiny_bert(dir)`` writes a random BERT (hidden 32, 2 layers, dropout off) with a WordPiece tokenizer it
builds from a small vocabulary; ``make_sentences(n, seed)`` makes deterministic sentences over that vocabulary.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

WORDS = (
    "the a an cat dog bird fish car bus train plane red blue green small big fast slow runs sits flies "
    "swims eats sleeps on in under over near house tree road sky sea park city man woman child happy sad "
    "old new good bad hot cold day night sun moon star rain snow music book food water play read write"
).split()


def make_sentences(n: int, seed: int = 0, min_len: int = 3, max_len: int = 12) -> list[str]:
    """Deterministic random sentences over the tiny vocabulary."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_len, max_len))) for _ in range(n)]


def unique_sentences(n: int, seed: int = 0, min_len: int = 6, max_len: int = 12) -> list[str]:
    """``n`` distinct sentences (so rows can be told apart by their text, e.g. to count each row's uses)."""
    out: list[str] = []
    while len(out) < n:
        out += [s for s in make_sentences(n, seed + len(out), min_len, max_len) if s not in out]
    return out[:n]


def real_token_rows(features: dict) -> list[list[int]]:
    """Each row's token ids without padding (``input_ids`` where ``attention_mask`` is set): a row's identity."""
    ids, mask = features["input_ids"].tolist(), features["attention_mask"].tolist()
    return [[t for t, m in zip(row, keep) if m] for row, keep in zip(ids, mask)]


def write_wordpiece_vocab(path: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
    vocab = list(dict.fromkeys(specials + sorted(set(WORDS)) + chars + list(".,!?")))  # ids must be unique
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return path


def build_wordpiece_tokenizer(vocab_file: Path):
    """A BERT-style fast tokenizer over ``vocab_file`` (built with ``tokenizers``; no download)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {w: i for i, w in enumerate(vocab_file.read_text(encoding="utf-8").split())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        do_lower_case=True,
    )


def build_tiny_bert(directory: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write a random BERT (hidden 32, 2 layers, dropout off) and its WordPiece tokenizer to ``directory``."""
    import torch
    from transformers import BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_wordpiece_tokenizer(write_wordpiece_vocab(directory / "vocab.txt"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
