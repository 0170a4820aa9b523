"""StaticEmbedding.from_model2vec (against the sentence-transformers oracle) and from_distillation (a formula)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_sentences

import raystx.models as rm

st = pytest.importorskip("sentence_transformers")
model2vec = pytest.importorskip("model2vec")

SENTENCES = make_sentences(10, seed=4, min_len=1, max_len=10)


@pytest.fixture
def m2v_dir(tiny_bert_dir, tmp_path):
    """A tiny model2vec model with a token mapping and per-token weights (the vocabulary-quantized layout)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json"))
    size = tokenizer.get_vocab_size()
    rng = np.random.default_rng(0)
    static = model2vec.StaticModel(
        vectors=rng.normal(size=(7, 6)).astype(np.float32),
        tokenizer=tokenizer,
        token_mapping=rng.integers(0, 7, size=size),
        weights=rng.uniform(0.5, 2.0, size=size).astype(np.float32),
    )
    static.save_pretrained(tmp_path / "m2v")
    return tmp_path / "m2v"


def test_from_model2vec_matches_st_both_ways(m2v_dir, tmp_path):
    ours = rm.SentenceTransformer(modules=[rm.StaticEmbedding.from_model2vec(str(m2v_dir))], device="cpu")
    SStatic = st.sentence_transformer.modules.StaticEmbedding
    ref = st.SentenceTransformer(modules=[SStatic.from_model2vec(str(m2v_dir))], device="cpu")
    expected = ref.encode(SENTENCES)
    assert expected.shape == (len(SENTENCES), 6)
    np.testing.assert_allclose(ours.encode(SENTENCES), expected, rtol=0, atol=1e-6)
    ours.save(tmp_path / "ours")
    np.testing.assert_allclose(
        st.SentenceTransformer(str(tmp_path / "ours"), device="cpu").encode(SENTENCES),
        expected,
        rtol=0,
        atol=1e-6,
    )
    ref.save(str(tmp_path / "ref"))
    np.testing.assert_allclose(
        rm.SentenceTransformer(tmp_path / "ref", device="cpu").encode(SENTENCES), expected, rtol=0, atol=1e-6
    )


def test_from_distillation_rows_are_the_encoder_on_each_token(tiny_bert_dir, tmp_path):
    static = rm.StaticEmbedding.from_distillation(str(tiny_bert_dir), pca_dims=None, sif_coefficient=None)
    encoder = rm.SentenceTransformer(str(tiny_bert_dir), device="cpu")  # Transformer + mean pooling
    tok = encoder.tokenizer
    for token in ("cat", "sky", "##s", "[UNK]"):
        token_id = tok.convert_tokens_to_ids(token)
        ids = torch.tensor([[tok.cls_token_id, token_id, tok.sep_token_id]])
        features = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }
        with torch.no_grad():
            expected = encoder(features)["sentence_embedding"][0]
        torch.testing.assert_close(static.embedding.weight[token_id], expected, rtol=0, atol=1e-6)

    model = rm.SentenceTransformer(modules=[static], device="cpu")
    model.save(
        tmp_path / "d"
    )  # a distilled model is an ordinary StaticEmbedding model: sentence-transformers loads it
    np.testing.assert_allclose(
        st.SentenceTransformer(str(tmp_path / "d"), device="cpu").encode(SENTENCES),
        model.encode(SENTENCES),
        rtol=0,
        atol=1e-6,
    )


def test_from_distillation_pca_and_sif(tiny_bert_dir):
    plain = rm.StaticEmbedding.from_distillation(str(tiny_bert_dir), pca_dims=None, sif_coefficient=None)
    reduced = rm.StaticEmbedding.from_distillation(str(tiny_bert_dir), pca_dims=8, sif_coefficient=1e-3)
    assert reduced.embedding_dim == 8
    raw = plain.embedding.weight.detach().double().numpy()
    centred = raw - raw.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    prior = 1.0 / (np.arange(raw.shape[0]) + 2)
    prior /= prior.sum()
    expected = (centred @ vt[:8].T) * (1e-3 / (1e-3 + prior))[:, None]
    got = reduced.embedding.weight.detach().double().numpy()
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=0, atol=1e-4)  # PCA axes are sign-free
    with pytest.raises(ValueError, match="vocabulary=... and use_subword=False are not supported"):
        rm.StaticEmbedding.from_distillation(str(tiny_bert_dir), vocabulary=["cat"])
