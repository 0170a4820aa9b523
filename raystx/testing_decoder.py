"""Tiny random decoder embedders (Qwen3, Qwen2, Llama, Mistral, Gemma) and ModernBERT for tests (no downloads).

``build_tiny_decoder(dir, family)`` writes a Hugging Face model directory: a random base model from a small
config and a fast tokenizer that follows the family's real tokenizer conventions:

* ``qwen3`` / ``qwen2``: Qwen3-Embedding's tokenizer: ``pad_token`` ``<|endoftext|>``, ``eos_token``
  ``<|im_end|>``, the post-processor appends ``<|endoftext|>`` to every text, left padding;
* ``llama`` / ``mistral``: ``<s>`` ... ``</s>`` (``add_bos_token`` and ``add_eos_token``, as e5-mistral sets them),
  ``pad_token`` ``</s>``, right padding;
* ``gemma``: ``<bos>`` ... ``<eos>``, ``pad_token`` ``<pad>``, right padding;
* ``modernbert``: ``[CLS]`` ... ``[SEP]``, ``pad_token`` ``[PAD]``, right padding.

``make_st_decoder(dir, family)`` wraps one in a raystx SentenceTransformer (Transformer, last-token Pooling,
Normalize) with Qwen3-Embedding-style query-only instruction prompts.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from raystx.testing import WORDS

DECODER_FAMILIES = ("qwen3", "qwen2", "llama", "mistral", "gemma")
FAMILIES = DECODER_FAMILIES + ("modernbert",)
# Qwen3-Embedding's query instruction (its documents get no prompt)
QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
_PROMPT_WORDS = "instruct given web search query retrieve relevant passages that answer".split()

_SPECIALS: dict[str, dict[str, str]] = {
    "qwen": {"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<unk>"},
    "llama": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"},
    "gemma": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "bert": {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
}
_STYLE = {"qwen3": "qwen", "qwen2": "qwen", "llama": "llama", "mistral": "llama", "gemma": "gemma"}
_STYLE["modernbert"] = "bert"


def _vocab(specials: list[str]) -> dict[str, int]:
    chars = list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
    words = sorted(set(WORDS) | set(_PROMPT_WORDS))
    tokens = list(dict.fromkeys(specials + words + chars + list(".,:!?")))
    return {t: i for i, t in enumerate(tokens)}


def build_decoder_tokenizer(family: str) -> Any:
    """A fast tokenizer over a small WordPiece vocabulary with ``family``'s special tokens and EOS convention."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    style = _STYLE[family]
    special = _SPECIALS[style]
    extra = ["<|endoftext|>", "<|im_end|>"] if style == "qwen" else []
    vocab = _vocab(list(dict.fromkeys(list(special.values()) + extra)))
    tok = Tokenizer(models.WordPiece(vocab, unk_token=special["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    kwargs: dict[str, Any] = dict(special)
    if style == "qwen":  # Qwen3-Embedding: the post-processor appends <|endoftext|>, the tokenizer pads left
        end = "<|endoftext|>"
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {end}", pair=f"$A {end} $B:1 {end}:1", special_tokens=[(end, vocab[end])]
        )
        kwargs["padding_side"] = "left"
    elif style == "bert":
        cls, sep = special["cls_token"], special["sep_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
    else:  # Llama/Mistral/Gemma: transformers builds the template from add_bos_token / add_eos_token
        kwargs["add_bos_token"] = True
        kwargs["add_eos_token"] = style == "llama"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def _config(family: str, tokenizer: Any, hidden: int, layers: int) -> Any:
    import transformers

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    decoder = dict(common, num_key_value_heads=2, bos_token_id=tokenizer.bos_token_id)
    decoder["eos_token_id"] = tokenizer.eos_token_id
    head_dim = hidden // 4
    if family == "qwen3":
        return transformers.Qwen3Config(**decoder, head_dim=head_dim)
    if family == "qwen2":
        return transformers.Qwen2Config(**decoder)
    if family == "llama":
        return transformers.LlamaConfig(**decoder)
    if family == "mistral":
        return transformers.MistralConfig(**decoder, sliding_window=6)
    if family == "gemma":
        return transformers.GemmaConfig(**decoder, head_dim=head_dim)
    if family == "modernbert":
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        return transformers.ModernBertConfig(
            **common,
            bos_token_id=cls,
            eos_token_id=sep,
            cls_token_id=cls,
            sep_token_id=sep,
            local_attention=6,
            global_attn_every_n_layers=2,
        )
    raise ValueError(f"Unknown family {family!r}; one of {FAMILIES}")


def build_tiny_decoder(
    directory: Path, family: str = "qwen3", seed: int = 0, hidden: int = 32, layers: int = 2
) -> Path:
    """Write a random ``family`` base model (hidden 32, 2 layers, dropout off) and its tokenizer to ``directory``."""
    import torch
    from transformers import AutoModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_decoder_tokenizer(family)
    config = _config(family, tokenizer, hidden, layers)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def make_st_decoder(directory: Path, family: str = "qwen3", padding_side: str | None = None) -> Any:
    """A raystx SentenceTransformer over a tiny ``family`` model: last-token pooling (mean for ModernBERT),
    normalized, with Qwen3-Embedding's query-only prompts (``{"query": QUERY_PROMPT, "document": ""}``)."""
    from raystx.models import Normalize, Pooling, SentenceTransformer, Transformer

    path = build_tiny_decoder(Path(directory), family)
    kwargs = {"padding_side": padding_side} if padding_side else {}
    transformer = Transformer(str(path), tokenizer_kwargs=kwargs)
    mode = "mean" if family == "modernbert" else "lasttoken"  # an encoder's last token is always [SEP]
    pooling = Pooling(transformer.get_word_embedding_dimension(), mode)
    return SentenceTransformer(
        modules=[transformer, pooling, Normalize()], prompts={"query": QUERY_PROMPT, "document": ""}
    )
