"""The packed (padding-free) forward of decoder embedders and ModernBERT equals transformers' padded forward on
every real token (values bit-identical, hidden states, gradients), for each family and both padding sides; tokens
never attend across sequences; unsupported models fall back to the padded forward; per-layer activation
checkpointing composes with it (same gradients)."""

from __future__ import annotations

import pytest
import torch

from raystx.models.packed_hf import hf_packed_forward, hf_packed_supported
from raystx.testing_decoder import FAMILIES, build_tiny_decoder


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: build_tiny_decoder(root / family, family, layers=3) for family in FAMILIES}


def _model(path) -> torch.nn.Module:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(path))
    assert model.config._attn_implementation == "sdpa"
    return model.train()  # dropout is 0 in these configs, so train mode is deterministic


def _batch(vocab: int, lengths: list[int], side: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    length = max(lengths)
    ids = torch.zeros(len(lengths), length, dtype=torch.long)
    mask = torch.zeros(len(lengths), length, dtype=torch.long)
    for i, n in enumerate(lengths):
        cols = slice(0, n) if side == "right" else slice(length - n, length)
        ids[i, cols] = torch.randint(5, vocab, (n,), generator=g)
        mask[i, cols] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _padded(model, inputs):
    kwargs = {"use_cache": False} if model.config.model_type != "modernbert" else {}
    return model(**inputs, output_hidden_states=True, **kwargs)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", FAMILIES)
def test_packed_equals_padded_on_real_tokens(family_dirs, family, side):
    model = _model(family_dirs[family])
    assert hf_packed_supported(model)
    # lengths beyond the sliding windows of the Mistral (6) and ModernBERT (local 6) configs
    inputs = _batch(model.config.vocab_size, [9, 3, 14, 1, 6], side, seed=len(family))
    real = inputs["attention_mask"].bool()
    params = [p for p in model.parameters() if p.requires_grad]

    ref = _padded(model, inputs)
    ref_grads = torch.autograd.grad((ref.last_hidden_state[real] ** 2).sum(), params, allow_unused=True)
    last, states = hf_packed_forward(model, inputs, output_hidden_states=True)
    grads = torch.autograd.grad((last[real] ** 2).sum(), params, allow_unused=True)

    assert torch.equal(last[real], ref.last_hidden_state[real])  # bit-identical on real tokens
    assert last[~real].abs().max() == 0  # padding is not computed
    assert len(states) == len(ref.hidden_states)
    for mine, theirs in zip(states, ref.hidden_states):
        torch.testing.assert_close(mine[real], theirs[real], atol=1e-6, rtol=0)
    for mine, theirs in zip(grads, ref_grads):
        if theirs is None:
            assert mine is None or mine.abs().max() == 0
            continue
        torch.testing.assert_close(mine, theirs, atol=1e-6 * theirs.abs().max().item(), rtol=1e-5)


@pytest.mark.parametrize("family", ["qwen3", "modernbert"])
def test_no_attention_across_sequences(family_dirs, family):
    """A row's output does not change when the other rows of the batch change."""
    model = _model(family_dirs[family]).eval()
    vocab = model.config.vocab_size
    a = _batch(vocab, [7, 4, 9], "right", seed=1)
    b = _batch(vocab, [7, 12, 3], "right", seed=2)
    b["input_ids"][0, :7] = a["input_ids"][0, :7]
    with torch.no_grad():
        out_a, _ = hf_packed_forward(model, a)
        out_b, _ = hf_packed_forward(model, b)
        alone, _ = hf_packed_forward(model, {k: v[:1, :7] for k, v in a.items()})
    torch.testing.assert_close(out_a[0, :7], out_b[0, :7], atol=1e-6, rtol=0)
    torch.testing.assert_close(out_a[0, :7], alone[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["qwen3", "llama", "modernbert"])
def test_activation_checkpointing_composes_with_the_packed_forward(family_dirs, family):
    """Per-layer checkpointing re-runs each layer in backward with the same packing: identical gradients."""
    model = _model(family_dirs[family])
    inputs = _batch(model.config.vocab_size, [8, 2, 11], "left", seed=3)
    real = inputs["attention_mask"].bool()
    params = [p for p in model.parameters() if p.requires_grad]

    last, _ = hf_packed_forward(model, inputs)
    plain = torch.autograd.grad((last[real] ** 2).sum(), params, allow_unused=True)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.is_activation_checkpointing
    last_ckpt, _ = hf_packed_forward(model, inputs)
    ckpt = torch.autograd.grad((last_ckpt[real] ** 2).sum(), params, allow_unused=True)
    assert torch.equal(last, last_ckpt)
    for mine, theirs in zip(ckpt, plain):
        if theirs is not None:
            torch.testing.assert_close(mine, theirs, atol=1e-6 * theirs.abs().max().item(), rtol=1e-6)


def test_the_sdpa_dispatcher_is_transparent_for_padded_calls(family_dirs):
    """Installing the dispatcher leaves every ordinary (unpacked) sdpa call as it was."""
    from raystx.models.packed_hf import _ORIGINAL, install_dispatcher

    model = _model(family_dirs["qwen3"]).eval()
    inputs = _batch(model.config.vocab_size, [5, 9], "left", seed=4)
    install_dispatcher()
    with torch.no_grad():
        routed = model(**inputs, use_cache=False).last_hidden_state
    from transformers import AttentionInterface

    AttentionInterface.register("sdpa", _ORIGINAL["sdpa"])
    try:
        with torch.no_grad():
            plain = model(**inputs, use_cache=False).last_hidden_state
    finally:
        _ORIGINAL.clear()
        install_dispatcher()
    assert torch.equal(routed, plain)


def test_unsupported_models_fall_back_to_the_padded_forward(family_dirs, tmp_path):
    from transformers import AutoModel, Gemma2Config, Gemma2Model

    from raystx.models import Transformer

    eager = AutoModel.from_pretrained(str(family_dirs["llama"]), attn_implementation="eager")
    assert not hf_packed_supported(eager)  # only sdpa attention is redirected
    gemma2 = Gemma2Model(
        Gemma2Config(
            vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
        )
    )
    assert not hf_packed_supported(gemma2)  # not a tested family (soft-capped attention)

    module = Transformer(str(family_dirs["qwen3"]))
    inputs = dict(module.tokenize(["a b c", "a"]))
    assert module._use_packed(inputs)
    module.packed = False
    assert not module._use_packed(inputs)
