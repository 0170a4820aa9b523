"""Legacy module types (WordEmbeddings, WordWeights, BoW, CNN, LSTM, LayerNorm, WeightedLayerPooling, Dropout).

Each pipeline is built once in sentence-transformers (the oracle) and once in raystx; each side's saved directory
loads in the other with the same embeddings (1e-6), and the raystx model trains (gradients reach every trainable
module and the loss goes down).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import WORDS, build_tiny_bert, make_sentences

import raystx.models as rm
from raystx.losses import MultipleNegativesRankingLoss

st = pytest.importorskip("sentence_transformers")
import sentence_transformers.sentence_transformer.modules as sm  # noqa: E402
from sentence_transformers.sentence_transformer.modules.tokenizer import WhitespaceTokenizer  # noqa: E402

SENTENCES = make_sentences(16, seed=7, min_len=0, max_len=12) + ["The CAT, sits!", "unknown words only"]
VOCAB = ["PADDING_TOKEN", *sorted(set(WORDS))]
DIM = 8
TOL = 1e-6


def _close(a, b, tol: float = TOL) -> None:
    """Equal within ``tol``; -inf (max pooling over a text with no known word) must match exactly."""
    np.testing.assert_allclose(
        np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=0, atol=tol
    )


def _table(seed: int) -> np.ndarray:
    table = np.random.default_rng(seed).normal(size=(len(VOCAB), DIM)).astype(np.float32)
    table[0] = 0
    return table


def _weights() -> dict[str, float]:
    return {w: 1.0 + i / 10 for i, w in enumerate(VOCAB[1::2])}


def _st_modules(name: str, tmp_path) -> list:
    emb = sm.WordEmbeddings(
        WhitespaceTokenizer(VOCAB, stop_words=["a", "the"]), _table(1), update_embeddings=True
    )
    if name == "word_weights":
        return [emb, sm.WordWeights(VOCAB, _weights(), 0.5), sm.Pooling(DIM, "mean")]
    if name == "lstm":
        return [emb, sm.LSTM(DIM, 5), sm.Pooling(10, "max"), sm.Dropout(0.3)]
    if name == "cnn":
        return [emb, sm.CNN(DIM, 4, [1, 3]), sm.Pooling(8, "mean"), sm.LayerNorm(8)]
    if name == "bow":
        return [sm.BoW(VOCAB[1:], _weights(), 0.25), sm.Dense(len(VOCAB) - 1, 6)]
    bert = build_tiny_bert(tmp_path / "bert", seed=2)
    return [
        sm.Transformer(str(bert), config_kwargs={"output_hidden_states": True}),
        sm.WeightedLayerPooling(32, num_hidden_layers=2, layer_start=1),
        sm.Pooling(32, "mean"),
    ]


def _ours_modules(name: str, tmp_path) -> list:
    tok = rm.word_tokenizer.WhitespaceTokenizer(VOCAB, stop_words=["a", "the"])
    emb = rm.WordEmbeddings(tok, _table(2), update_embeddings=True)
    if name == "word_weights":
        return [emb, rm.WordWeights(VOCAB, _weights(), 0.5), rm.Pooling(DIM, "mean")]
    if name == "lstm":
        return [emb, rm.LSTM(DIM, 5), rm.Pooling(10, "max"), rm.Dropout(0.3)]
    if name == "cnn":
        return [emb, rm.CNN(DIM, 4, [1, 3]), rm.Pooling(8, "mean"), rm.LayerNorm(8)]
    if name == "bow":
        return [rm.BoW(VOCAB[1:], _weights(), 0.25), rm.Dense(len(VOCAB) - 1, 6)]
    bert = build_tiny_bert(tmp_path / "bert", seed=3)
    transformer = rm.Transformer(str(bert), config_kwargs={"output_hidden_states": True})
    return [
        transformer,
        rm.WeightedLayerPooling(32, num_hidden_layers=2, layer_start=1),
        rm.Pooling(32, "mean"),
    ]


PIPELINES = ["word_weights", "lstm", "cnn", "bow", "weighted_layer_pooling"]


@pytest.mark.parametrize("name", PIPELINES)
def test_st_saved_loads_in_raystx_and_back(name, tmp_path):
    torch.manual_seed(0)
    ref = st.SentenceTransformer(modules=_st_modules(name, tmp_path), device="cpu")
    ref.save(str(tmp_path / "st"))
    ours = rm.SentenceTransformer(tmp_path / "st", device="cpu")
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in ref]
    expected = ref.encode(SENTENCES)
    _close(ours.encode(SENTENCES), expected)
    ours.save(tmp_path / "again")  # same format: sentence-transformers reads raystx's copy
    _close(st.SentenceTransformer(str(tmp_path / "again"), device="cpu").encode(SENTENCES), expected)


@pytest.mark.parametrize("name", PIPELINES)
def test_raystx_built_loads_in_st_and_trains(name, tmp_path):
    torch.manual_seed(0)
    ours = rm.SentenceTransformer(modules=_ours_modules(name, tmp_path), device="cpu")
    ours.save(tmp_path / "ours")
    ref = st.SentenceTransformer(str(tmp_path / "ours"), device="cpu")
    _close(ref.encode(SENTENCES), ours.encode(SENTENCES))
    _close(rm.SentenceTransformer(tmp_path / "ours", device="cpu").encode(SENTENCES), ours.encode(SENTENCES))

    loss_fn = MultipleNegativesRankingLoss(ours)
    anchors, positives = make_sentences(8, 11, 3, 8), make_sentences(8, 12, 3, 8)

    def eval_loss() -> float:  # without dropout, so the comparison is not noise
        ours.eval()
        with torch.no_grad():
            return loss_fn([ours.tokenize(anchors), ours.tokenize(positives)], None).item()

    before = eval_loss()
    optimizer = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=2e-2)
    for step in range(6):
        ours.train()
        loss = loss_fn([ours.tokenize(anchors), ours.tokenize(positives)], None)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for module in ours:
                params = [p for p in module.parameters() if p.requires_grad]
                if params:  # every trainable module gets a gradient
                    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), type(module)
        optimizer.step()
    assert eval_loss() < before


def test_old_config_key_names_load(tmp_path):
    """Configs written by older sentence-transformers (``word_embedding_dimension``...) still load."""
    import json

    ours = rm.SentenceTransformer(modules=_ours_modules("lstm", tmp_path), device="cpu")
    ours.save(tmp_path / "m")
    path = tmp_path / "m" / "1_LSTM" / "lstm_config.json"
    config = json.loads(path.read_text())
    config["word_embedding_dimension"] = config.pop("embedding_dimension")
    path.write_text(json.dumps(config))
    _close(
        rm.SentenceTransformer(tmp_path / "m", device="cpu").encode(SENTENCES), ours.encode(SENTENCES), tol=0
    )


def test_word_embeddings_from_text_file(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("3 2\ncat 1.0 2.0\ndog 3.0 4.0\nsun 5.0 6.0\n")
    emb = rm.WordEmbeddings.from_text_file(path)
    model = rm.SentenceTransformer(modules=[emb, rm.Pooling(2, "mean")], device="cpu")
    np.testing.assert_allclose(
        model.encode(["cat dog", "Sun!", "none"]), [[2.0, 3.0], [5.0, 6.0], [0.0, 0.0]]
    )
    assert not emb.emb_layer.weight.requires_grad
