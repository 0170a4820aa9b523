"""Round trips between raystx and sentence-transformers (the oracle): save in one, load in the other, same encode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_sentences

import raystx.models as rm

st = pytest.importorskip("sentence_transformers")

SENTENCES = make_sentences(24, seed=3, min_len=1, max_len=20)
TOL = 1e-5


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return rm.SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def st_minilm(minilm_dir):
    return st.SentenceTransformer(str(minilm_dir), device="cpu")


def test_minilm_legacy_dir_matches_st(minilm, st_minilm):
    ours = minilm.encode(SENTENCES, batch_size=8)
    ref = st_minilm.encode(SENTENCES, batch_size=8)
    assert ours.shape == (len(SENTENCES), 384)
    assert _max_diff(ours, ref) < TOL
    assert minilm.max_seq_length == st_minilm.max_seq_length == 256


def test_minilm_raystx_save_loads_in_st(minilm, tmp_path):
    out = tmp_path / "saved"
    minilm.save_pretrained(out)
    assert (out / "model.safetensors").is_file() and not (out / "pytorch_model.bin").exists()
    ref = st.SentenceTransformer(str(out), device="cpu")
    assert ref.max_seq_length == minilm.max_seq_length
    assert _max_diff(ref.encode(SENTENCES), minilm.encode(SENTENCES)) < TOL
    again = rm.SentenceTransformer(out, device="cpu")
    assert _max_diff(again.encode(SENTENCES), minilm.encode(SENTENCES)) < TOL


def test_tiny_bert_both_directions(tiny_bert_dir, tmp_path):
    ours = rm.SentenceTransformer(tiny_bert_dir, device="cpu")  # plain HF dir -> Transformer + mean pooling
    assert [type(m).__name__ for m in ours] == ["Transformer", "Pooling"]
    ref_plain = st.SentenceTransformer(str(tiny_bert_dir), device="cpu")
    assert _max_diff(ours.encode(SENTENCES), ref_plain.encode(SENTENCES)) < TOL

    ours.max_seq_length = 12  # truncation must survive the trip
    ours.save_pretrained(tmp_path / "r")
    ref = st.SentenceTransformer(str(tmp_path / "r"), device="cpu")
    assert ref.max_seq_length == 12
    assert _max_diff(ref.encode(SENTENCES), ours.encode(SENTENCES)) < TOL

    ref.save_pretrained(str(tmp_path / "s"))
    back = rm.SentenceTransformer(tmp_path / "s", device="cpu")
    assert back.max_seq_length == 12
    assert _max_diff(back.encode(SENTENCES), ref.encode(SENTENCES)) < TOL


def test_static_embedding_both_directions(tiny_bert_dir, tmp_path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json"))
    torch.manual_seed(0)
    ours = rm.SentenceTransformer(modules=[rm.StaticEmbedding(tokenizer, embedding_dim=16)], device="cpu")
    ours.save_pretrained(tmp_path / "r")
    ref = st.SentenceTransformer(str(tmp_path / "r"), device="cpu")
    assert _max_diff(ref.encode(SENTENCES), ours.encode(SENTENCES)) < TOL

    weights = torch.randn(tokenizer.get_vocab_size(), 8)
    st_static = st.sentence_transformer.modules.StaticEmbedding(tokenizer, embedding_weights=weights)
    ref2 = st.SentenceTransformer(modules=[st_static], device="cpu")
    ref2.save_pretrained(str(tmp_path / "s"))
    back = rm.SentenceTransformer(tmp_path / "s", device="cpu")
    assert isinstance(back[0], rm.StaticEmbedding)
    assert _max_diff(back.encode(SENTENCES), ref2.encode(SENTENCES)) < TOL
