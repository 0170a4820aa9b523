"""Decoder embedders against the sentence-transformers oracle: a tiny Qwen3 with last-token pooling tokenizes,
appends EOS, pads (both sides) and encodes exactly like sentence-transformers, with Qwen3-Embedding's query-only
instruction prompts; ``padding_side`` and EOS appending are saved in the sentence-transformers format and come back
in both libraries; ``processing_kwargs`` from a sentence-transformers 6 config are honoured."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_sentences

from raystx.models import SentenceTransformer, Transformer
from raystx.testing_decoder import QUERY_PROMPT, build_tiny_decoder, make_st_decoder

TEXTS = make_sentences(9, seed=4, min_len=1, max_len=14)


def _st(path):
    import sentence_transformers

    return sentence_transformers.SentenceTransformer(str(path), device="cpu")


@pytest.mark.parametrize("side", ["left", "right"])
def test_qwen3_last_token_encode_matches_sentence_transformers(tmp_path, side):
    model = make_st_decoder(tmp_path / "hf", "qwen3", padding_side=side)
    model.save(str(tmp_path / "st"))
    assert json.loads((tmp_path / "st" / "tokenizer_config.json").read_text())["padding_side"] == side
    oracle = _st(tmp_path / "st")
    assert oracle[0].tokenizer.padding_side == side
    assert oracle.prompts["query"] == QUERY_PROMPT

    # same token ids and mask, padded on the requested side, every text ending in <|endoftext|>
    ours = model.tokenize(TEXTS)
    theirs = oracle.preprocess(TEXTS)
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    mask = ours["attention_mask"]
    assert not mask.all()
    padded_side = mask[:, 0] if side == "left" else mask[:, -1]
    assert not padded_side.all()  # some row is padded, on that side
    end = model[0].tokenizer.convert_tokens_to_ids("<|endoftext|>")
    last = mask.shape[1] - 1 - mask.flip(1).argmax(1) if side == "right" else torch.full_like(mask[:, 0], -1)
    assert (ours["input_ids"][torch.arange(len(TEXTS)), last] == end).all()

    for kwargs in ({}, {"prompt_name": "query"}, {"prompt": "Instruct: find it\nQuery:"}):
        mine = model.encode(TEXTS, batch_size=4, convert_to_tensor=True, **kwargs)
        ref = oracle.encode(TEXTS, batch_size=4, convert_to_tensor=True, **kwargs)
        torch.testing.assert_close(mine, ref, atol=1e-6, rtol=0)
    # query-only instructions: queries get the instruction, documents none (Qwen3-Embedding)
    queries = model.encode_query(TEXTS, convert_to_tensor=True)
    documents = model.encode_document(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(queries, oracle.encode_query(TEXTS, convert_to_tensor=True), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        documents, oracle.encode_document(TEXTS, convert_to_tensor=True), atol=1e-6, rtol=0
    )
    assert (queries - documents).abs().max() > 1e-3
    torch.testing.assert_close(documents, model.encode(TEXTS, convert_to_tensor=True), atol=1e-6, rtol=0)


def test_eos_survives_truncation(tmp_path):
    transformer = Transformer(str(build_tiny_decoder(tmp_path / "q", "qwen3")), max_seq_length=5)
    features = transformer.tokenize(["the cat sits on the red road near the big house", "a dog"])
    end = transformer.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert features["input_ids"].shape[1] == 5
    assert (
        features["input_ids"][:, -1] == end
    ).all()  # left padded: the last column is each row's last token


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_side_is_saved_and_restored(tmp_path, side):
    model = make_st_decoder(tmp_path / "hf", "llama")  # Llama-style tokenizers pad right by default
    model[0].padding_side = side
    model.save(str(tmp_path / "st"))
    assert json.loads((tmp_path / "st" / "tokenizer_config.json").read_text())["padding_side"] == side
    reloaded = SentenceTransformer(str(tmp_path / "st"))
    assert reloaded[0].padding_side == side
    oracle = _st(tmp_path / "st")
    assert oracle[0].tokenizer.padding_side == side
    torch.testing.assert_close(
        reloaded.encode(TEXTS, convert_to_tensor=True),
        oracle.encode(TEXTS, convert_to_tensor=True),
        atol=1e-6,
        rtol=0,
    )
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right'"):
        model[0].padding_side = "middle"


def test_add_eos_token_round_trips_to_sentence_transformers(tmp_path):
    """A Gemma-style tokenizer appends no EOS; ``add_eos_token`` turns it on and the saved tokenizer keeps it."""
    path = build_tiny_decoder(tmp_path / "g", "gemma")
    plain = Transformer(str(path))
    assert plain.tokenizer.convert_ids_to_tokens(plain.tokenize(["a dog"])["input_ids"][0])[-1] == "dog"
    kwargs = {"add_eos_token": True, "add_bos_token": True}
    model = make_st_decoder(tmp_path / "g2", "gemma")
    model[0] = Transformer(str(path), tokenizer_kwargs=kwargs)
    tokens = model[0].tokenizer.convert_ids_to_tokens(model.tokenize(["a dog"])["input_ids"][0])
    assert tokens == ["<bos>", "a", "dog", "<eos>"]
    model.save(str(tmp_path / "st"))
    oracle = _st(tmp_path / "st")
    assert oracle[0].tokenizer.convert_ids_to_tokens(oracle.preprocess(["a dog"])["input_ids"][0]) == tokens
    reloaded = SentenceTransformer(str(tmp_path / "st"))
    assert reloaded[0].tokenizer.convert_ids_to_tokens(reloaded.tokenize(["a dog"])["input_ids"][0]) == tokens
    torch.testing.assert_close(
        reloaded.encode_query(TEXTS, convert_to_tensor=True),
        oracle.encode_query(TEXTS, convert_to_tensor=True),
        atol=1e-6,
        rtol=0,
    )


def test_processing_kwargs_padding_side_from_a_sentence_transformers_6_config(tmp_path):
    model = make_st_decoder(tmp_path / "hf", "mistral")
    model.save(str(tmp_path / "st"))
    config_path = tmp_path / "st" / "sentence_bert_config.json"
    config = json.loads(config_path.read_text())
    config["processing_kwargs"] = {"text": {"padding_side": "left"}}
    config_path.write_text(json.dumps(config))

    ours = SentenceTransformer(str(tmp_path / "st"))
    assert ours[0].tokenizer.padding_side == "right" and ours[0].padding_side == "left"
    features = ours.tokenize(TEXTS)
    assert features["attention_mask"][:, -1].all() and not features["attention_mask"][:, 0].all()
    oracle = _st(tmp_path / "st")
    assert torch.equal(features["input_ids"], oracle.preprocess(TEXTS)["input_ids"])
    torch.testing.assert_close(
        ours.encode(TEXTS, convert_to_tensor=True),
        oracle.encode(TEXTS, convert_to_tensor=True),
        atol=1e-6,
        rtol=0,
    )
    ours.save(str(tmp_path / "again"))
    saved = json.loads((tmp_path / "again" / "sentence_bert_config.json").read_text())
    assert saved["processing_kwargs"] == {"text": {"padding_side": "left"}}
    with pytest.raises(ValueError, match="processing_kwargs has unknown keys \\['txt'\\]"):
        Transformer(str(tmp_path / "st"), processing_kwargs={"txt": {"padding_side": "left"}})
