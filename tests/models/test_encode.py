"""encode(): order restoration, output types, quantization, prompts, normalisation, modes; similarity; pickling."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from conftest import make_sentences

import raystx.models as rm
from raystx.models.quantize import quantize_embeddings

st = pytest.importorskip("sentence_transformers")

SENTENCES = make_sentences(30, seed=11, min_len=1, max_len=30)


@pytest.fixture(scope="module")
def model(tiny_bert_dir):
    return rm.SentenceTransformer(
        tiny_bert_dir, device="cpu", prompts={"query": "query: ", "passage": "passage: "}
    )


def test_order_restored_after_length_sorting(model, monkeypatch):
    batches: list[list[str]] = []
    original = model.tokenize

    def spy(texts, prompt=None, **kw):
        batches.append(list(texts))
        return original(texts, prompt=prompt, **kw)

    monkeypatch.setattr(model, "tokenize", spy)
    batched = model.encode(SENTENCES, batch_size=7)
    monkeypatch.undo()
    one_by_one = np.stack([model.encode(s) for s in SENTENCES])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5, rtol=0)
    lengths = [len(t) for batch in batches for t in batch]
    assert lengths == sorted(lengths, reverse=True)  # longest first
    assert len(batches) == 5


def test_output_types(model):
    single = model.encode("the cat sits")
    assert isinstance(single, np.ndarray) and single.shape == (32,)
    as_tensor = model.encode(SENTENCES[:3], convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (3, 32)
    as_list = model.encode(SENTENCES[:3], convert_to_numpy=False)
    assert isinstance(as_list, list) and all(isinstance(r, torch.Tensor) for r in as_list)
    np.testing.assert_array_equal(torch.stack(as_list).numpy(), as_tensor.numpy())
    empty = model.encode([])
    assert len(empty) == 0
    tokens = model.encode(SENTENCES[:4], output_value="token_embeddings")
    ids = model.tokenize(SENTENCES[:4])["attention_mask"].sum(dim=1)
    assert [t.shape[0] for t in tokens] == ids.tolist()


def test_matches_st_on_the_same_directory(model, tiny_bert_dir):
    ref = st.SentenceTransformer(str(tiny_bert_dir), device="cpu", prompts={"query": "query: "})
    pairs = list(zip(SENTENCES[:8], SENTENCES[8:16]))  # text pairs are tokenized as one sequence pair
    np.testing.assert_allclose(model.encode(pairs), ref.encode(pairs), atol=1e-5, rtol=0)
    for kwargs in ({}, {"normalize_embeddings": True}, {"prompt_name": "query"}, {"truncate_dim": 5}):
        np.testing.assert_allclose(
            model.encode(SENTENCES, **kwargs), ref.encode(SENTENCES, **kwargs), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precision_equals_st_quantization(model, precision):
    floats = model.encode(SENTENCES)
    ours = model.encode(SENTENCES, precision=precision)
    ref = st.quantize_embeddings(floats, precision=precision)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)
    as_tensor = model.encode(SENTENCES, precision=precision, convert_to_tensor=True)
    np.testing.assert_array_equal(as_tensor.numpy(), ref)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_quantize_with_ranges_and_calibration(precision):
    rng = np.random.default_rng(0)
    emb, calib = rng.normal(size=(10, 13)).astype(np.float32), rng.normal(size=(50, 13)).astype(np.float32)
    ranges = np.stack([emb.min(0) - 0.5, emb.max(0) + 0.1])
    ranges[:, 3] = 0.2  # a zero-width range
    for kwargs in ({"ranges": ranges}, {"calibration_embeddings": calib}):
        np.testing.assert_array_equal(
            quantize_embeddings(emb, precision, **kwargs), st.quantize_embeddings(emb, precision, **kwargs)
        )
    with pytest.raises(ValueError):
        quantize_embeddings(emb[:1], precision)


def test_binary_packing_layout():
    emb = np.array([[1.0, -1, 1, 1, -1, -1, -1, 1, 0.5, -2]], dtype=np.float32)  # 10 dims -> 2 bytes
    ub = quantize_embeddings(emb, "ubinary")
    assert ub.dtype == np.uint8 and ub.tolist() == [[0b10110001, 0b10000000]]
    assert quantize_embeddings(emb, "binary").tolist() == [[0b10110001 - 128, 0b10000000 - 128]]


def test_prompts(model):
    texts = SENTENCES[:6]
    with_name = model.encode(texts, prompt_name="query")
    by_hand = model.encode(["query: " + t for t in texts])
    np.testing.assert_allclose(with_name, by_hand, atol=1e-6, rtol=0)
    np.testing.assert_allclose(model.encode(texts, prompt="query: "), by_hand, atol=1e-6, rtol=0)
    assert np.abs(with_name - model.encode(texts)).max() > 1e-4
    with pytest.raises(ValueError, match="not found"):
        model.encode(texts, prompt_name="nope")
    model.default_prompt_name = "passage"
    try:
        np.testing.assert_allclose(
            model.encode(texts), model.encode(["passage: " + t for t in texts], prompt=""), atol=1e-6
        )
        np.testing.assert_allclose(model.encode(texts, prompt_name="query"), by_hand, atol=1e-6)
    finally:
        model.default_prompt_name = None


def test_train_mode_restored_and_no_grad(model):
    model.train()
    out = model.encode(SENTENCES[:3], convert_to_tensor=True)
    assert model.training and not out.requires_grad
    model.eval()
    model.encode(SENTENCES[:3])
    assert not model.training


def test_similarity_matches_st(model, tiny_bert_dir):
    a, b = model.encode(SENTENCES[:5]), model.encode(SENTENCES[5:9])
    for name in ("cosine", "dot", "euclidean", "manhattan"):
        model.similarity_fn_name = name
        ref = st.SentenceTransformer(str(tiny_bert_dir), device="cpu", similarity_fn_name=name)
        torch.testing.assert_close(model.similarity(a, b), ref.similarity(a, b), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            model.similarity_pairwise(a[:4], b), ref.similarity_pairwise(a[:4], b), atol=1e-5, rtol=1e-5
        )
    model.similarity_fn_name = None
    assert model.similarity_fn_name == "cosine"
    with pytest.raises(ValueError):
        model.similarity_fn_name = "jaccard"


def test_pickle_and_deepcopy_give_identical_encodings(model):
    expected = model.encode(SENTENCES, prompt_name="query")
    for clone in (cloudpickle.loads(cloudpickle.dumps(model)), copy.deepcopy(model)):
        np.testing.assert_array_equal(clone.encode(SENTENCES, prompt_name="query"), expected)
        assert clone.prompts == model.prompts and clone.max_seq_length == model.max_seq_length


def test_static_model_pickles(tiny_bert_dir):
    from tokenizers import Tokenizer

    static = rm.SentenceTransformer(
        modules=[
            rm.StaticEmbedding(Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json")), embedding_dim=8)
        ],
        device="cpu",
    )
    expected = static.encode(SENTENCES)
    np.testing.assert_array_equal(copy.deepcopy(static).encode(SENTENCES), expected)
    np.testing.assert_array_equal(cloudpickle.loads(cloudpickle.dumps(static)).encode(SENTENCES), expected)


def test_save_refuses_foreign_directory(model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="Refusing"):
        model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    target = tmp_path / "model"
    model.save(target)
    model.save(target)  # overwriting a previous model directory is fine
    assert (target / "modules.json").is_file() and (target / "README.md").is_file()


def test_dimension_truncation_and_max_seq_length(tiny_bert_dir):
    m = rm.SentenceTransformer(tiny_bert_dir, device="cpu", truncate_dim=7)
    assert m.get_sentence_embedding_dimension() == 7 and m.encode(SENTENCES[:2]).shape == (2, 7)
    m.max_seq_length = 5
    assert m.tokenize([SENTENCES[0] * 3])["input_ids"].shape[1] == 5


def test_gradient_checkpointing_still_trains(tiny_bert_dir):
    m = rm.SentenceTransformer(tiny_bert_dir, device="cpu")
    m.gradient_checkpointing_enable()
    auto = m[0].auto_model
    assert getattr(auto, "is_activation_checkpointing", None) or auto.is_gradient_checkpointing
    m.train()
    out = m(m.tokenize(SENTENCES[:4]))["sentence_embedding"]
    out.pow(2).sum().backward()
    assert m[0].auto_model.embeddings.word_embeddings.weight.grad is not None


def test_import_is_light():
    code = "import sys, raystx.models; print([m for m in ('ray', 'pydantic', 'datasets', 'scipy') if m in sys.modules])"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
