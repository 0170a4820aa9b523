"""The unpadded (packed) encoder forward equals the Hugging Face padded forward on every real token, for values,
gradients and per-layer hidden states; unsupported architectures and settings fall back to the HF forward."""

from __future__ import annotations

import pytest
import torch
from conftest import make_sentences

from raystx.models import Pooling, SentenceTransformer, Transformer
from raystx.models.packed import packed_forward, packed_supported


def _batch(vocab: int, lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    length = max(lengths)
    ids = torch.zeros(len(lengths), length, dtype=torch.long)
    mask = torch.zeros(len(lengths), length, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=g)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _models() -> list[torch.nn.Module]:
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    common = dict(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    bert = BertModel(BertConfig(**common))
    roberta = RobertaModel(RobertaConfig(**common, pad_token_id=1))
    return [bert, roberta]


@pytest.mark.parametrize("index", [0, 1], ids=["bert", "roberta"])
def test_packed_forward_matches_hf_on_real_tokens_values_and_gradients(index):
    model = _models()[index].train()  # dropout probabilities are 0, so train mode is deterministic
    assert packed_supported(model)
    inputs = _batch(120, [9, 3, 14, 1, 6], seed=index)
    real = inputs["attention_mask"].bool()

    ref = model(**inputs, output_hidden_states=True)
    ref_loss = (ref.last_hidden_state[real] ** 2).sum()
    ref_grads = torch.autograd.grad(ref_loss, list(model.encoder.parameters()))

    last, states = packed_forward(model, inputs, output_hidden_states=True)
    loss = (last[real] ** 2).sum()
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))

    torch.testing.assert_close(last[real], ref.last_hidden_state[real], atol=1e-5, rtol=1e-5)
    assert last[~real].abs().max() == 0  # padding is not computed
    assert len(states) == len(ref.hidden_states)
    for mine, theirs in zip(states, ref.hidden_states):
        torch.testing.assert_close(mine[real], theirs[real], atol=1e-5, rtol=1e-5)
    for mine, theirs in zip(grads, ref_grads):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)


def test_sentence_transformer_takes_the_packed_path_and_matches_the_padded_one(tiny_bert_dir, monkeypatch):
    import raystx.models.packed as packed

    model = SentenceTransformer(modules=[Transformer(str(tiny_bert_dir)), Pooling(32, "mean")])
    texts = make_sentences(12, seed=3, min_len=1, max_len=15)
    calls = []
    real = packed.packed_forward
    monkeypatch.setattr(packed, "packed_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = model.encode(texts, batch_size=5, convert_to_tensor=True)
    assert calls, "the supported tiny BERT must use the packed forward"
    model[0].packed = False
    calls.clear()
    slow = model.encode(texts, batch_size=5, convert_to_tensor=True)
    assert not calls
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)


def test_unsupported_models_and_settings_fall_back(tiny_bert_dir, monkeypatch):
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    assert not packed_supported(
        DistilBertModel(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    )
    relative = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    relative.position_embedding_type = "relative_key"
    assert not packed_supported(BertModel(relative))

    module = Transformer(str(tiny_bert_dir))
    inputs = module.tokenize(["a b c", "a"])
    assert module._use_packed(dict(inputs))
    module.gradient_checkpointing_enable()
    assert module._use_packed(dict(inputs))  # the packed layers run under transformers' checkpoint function
    module.packed = False
    assert not module._use_packed(dict(inputs))

    monkeypatch.setenv("RAYSTX_PACKED", "0")
    assert not packed_supported(Transformer(str(tiny_bert_dir)).auto_model)


def test_packed_training_with_dropout_is_reproducible_and_finite(tiny_bert_dir):
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(str(tiny_bert_dir))
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.3
    model = BertModel(config).train()
    inputs = _batch(config.vocab_size, [7, 2, 11], seed=5)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        last, _ = packed_forward(model, inputs)
        outs.append(last)
    assert torch.isfinite(outs[0]).all()
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    model.eval()
    with torch.no_grad():
        ref = model(**inputs).last_hidden_state
        mine, _ = packed_forward(model, inputs)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(mine[real], ref[real], atol=1e-5, rtol=1e-5)


def test_inference_reuses_fused_qkv_until_the_weights_change():
    model = _models()[0].eval()
    inputs = _batch(120, [5, 5, 5], seed=2)  # no padding at all: the view-only path
    with torch.inference_mode():
        first, _ = packed_forward(model, inputs)
    attn = model.encoder.layer[0].attention.self
    from raystx.models.packed import _FUSED_QKV

    cached = _FUSED_QKV[attn]
    with torch.inference_mode():
        packed_forward(model, inputs)
    assert _FUSED_QKV[attn] is cached  # reused, not rebuilt
    with torch.no_grad():
        attn.value.weight.add_(torch.randn_like(attn.value.weight))  # a step between two evaluations
        dense = model.encoder.layer[1].intermediate.dense.weight  # (prepacked for oneDNN where available)
        dense.add_(torch.randn_like(dense))
    with torch.inference_mode():
        after, _ = packed_forward(model, inputs)
        ref = model(**inputs).last_hidden_state
    assert _FUSED_QKV[attn] is not cached
    assert (after - first).abs().max() > 1e-3
    torch.testing.assert_close(after, ref, atol=1e-5, rtol=1e-5)
    assert not [k for k in model.state_dict() if "raystx" in k]
    assert "_raystx" not in str(vars(attn))  # the caches live outside the module: pickling never carries them


def test_fast_inference_is_opt_in_close_to_hf_and_repacks_after_updates(monkeypatch):
    from raystx.models.packed import _PREPACKED, _mkldnn_ok, fast_inference

    model = _models()[0].eval()
    inputs = _batch(120, [9, 3, 14, 6], seed=4)
    real = inputs["attention_mask"].bool()
    dense = model.encoder.layer[1].intermediate.dense
    with torch.inference_mode():
        assert not fast_inference()  # off unless asked for
    monkeypatch.setenv("RAYSTX_FAST_INFERENCE", "1")
    with torch.no_grad():  # a no_grad pass (GradCache's first one) never takes the fast path
        assert not fast_inference()
        packed_forward(model, inputs)
    assert dense not in _PREPACKED
    for _ in range(2):
        with torch.inference_mode():
            assert fast_inference()
            fast, _ = packed_forward(model, inputs)
            ref = model(**inputs).last_hidden_state
        torch.testing.assert_close(fast[real], ref[real], atol=1e-5, rtol=1e-5)
        if _mkldnn_ok():
            assert dense in _PREPACKED
        with torch.no_grad():
            dense.weight.add_(torch.randn_like(dense.weight))  # the second round must re-pack this weight


def test_packed_bert_with_activation_checkpointing_gives_the_same_gradients():
    """``gradient_checkpointing_enable`` checkpoints each packed layer (its input kept, re-run in backward)."""
    from torch.utils.checkpoint import checkpoint

    model = _models()[0].train()
    inputs = _batch(120, [9, 3, 14, 1, 6], seed=7)
    real = inputs["attention_mask"].bool()
    params = list(model.encoder.parameters())
    last, _ = packed_forward(model, inputs)
    plain = torch.autograd.grad((last[real] ** 2).sum(), params)

    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    calls = []
    for layer in model.encoder.layer:
        assert layer.gradient_checkpointing
        layer._gradient_checkpointing_func = lambda *a, **k: (
            calls.append(1) or checkpoint(*a, use_reentrant=False)
        )
    last_ckpt, _ = packed_forward(model, inputs)
    ckpt = torch.autograd.grad((last_ckpt[real] ** 2).sum(), params)
    assert len(calls) == len(model.encoder.layer)
    assert torch.equal(last, last_ckpt)
    for mine, theirs in zip(ckpt, plain):
        torch.testing.assert_close(mine, theirs, atol=1e-6 * theirs.abs().max().item(), rtol=1e-6)
