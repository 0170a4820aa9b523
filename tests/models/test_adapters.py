"""PEFT adapters on raystx's SentenceTransformer (no Ray): the sentence-transformers adapter API, the PEFT on-disk
layout checked with ``peft.PeftModel.from_pretrained`` over the base Hugging Face model, and the merged export
checked with ``sentence_transformers.SentenceTransformer``."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from conftest import make_sentences
from safetensors import safe_open

from raystx.models import SentenceTransformer
from raystx.models.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME

peft = pytest.importorskip("peft")

TEXTS = make_sentences(7, 11)
TARGETS = ["query", "value"]


def _lora(r: int = 4, **kwargs) -> object:
    # init_lora_weights=False: B is random too, so the adapter changes the outputs from the start
    return peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS, init_lora_weights=False, **kwargs)


def _encode(model) -> torch.Tensor:
    return model.encode(TEXTS, convert_to_tensor=True)


def _lora_size(hf_model, r: int) -> int:
    """Parameters LoRA of rank r adds: r * (in + out) per targeted linear layer (A: r x in, B: out x r)."""
    return sum(
        r * (m.in_features + m.out_features)
        for name, m in hf_model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in TARGETS
    )


@pytest.fixture
def model(tiny_bert_dir):
    return SentenceTransformer(str(tiny_bert_dir), device="cpu")


def test_add_adapter_trains_only_the_adapter_and_disable_gives_the_base_model(model):
    base_out = _encode(model)
    size = _lora_size(model[0].auto_model, 4)
    model.add_adapter(_lora())
    assert model.active_adapters() == ["default"] and model.active_adapter() == "default"
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert sum(p.numel() for _, p in trainable) == size == 1024
    assert all(".lora_A." in n or ".lora_B." in n for n, _ in trainable)
    with_adapter = _encode(model)
    assert (with_adapter - base_out).abs().max() > 1e-3
    model.disable_adapters()
    torch.testing.assert_close(_encode(model), base_out, rtol=0, atol=0)
    model.enable_adapters()
    torch.testing.assert_close(_encode(model), with_adapter, rtol=0, atol=0)
    state = model.get_adapter_state_dict()
    assert len(state) == 8 and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in state)


def test_two_adapters_switch_and_deleting_the_last_leaves_the_plain_base_model(model):
    base_keys = set(model.state_dict())
    base_out = _encode(model)
    rank_one_size = _lora_size(model[0].auto_model, 1)
    model.add_adapter(_lora(2), adapter_name="a")
    out_a = _encode(model)
    model.add_adapter(_lora(3), adapter_name="b")
    assert model.active_adapters() == ["b"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 3 * rank_one_size  # only the active adapter trains
    out_b = _encode(model)
    model.set_adapter("a")
    torch.testing.assert_close(_encode(model), out_a, rtol=0, atol=0)
    assert (out_b - out_a).abs().max() > 1e-3
    with pytest.raises(ValueError, match="already exists"):
        model.add_adapter(_lora(), adapter_name="a")
    with pytest.raises(ValueError, match=r"\['nope'\] not found"):
        model.set_adapter("nope")
    model.delete_adapter("b")
    assert model.active_adapters() == ["a"]
    model.delete_adapter("a")
    assert set(model.state_dict()) == base_keys  # no adapter layer left behind
    torch.testing.assert_close(_encode(model), base_out, rtol=0, atol=0)
    with pytest.raises(ValueError, match="No adapter loaded"):
        model.active_adapters()


def test_saved_adapter_uses_peft_layout_and_reloads_in_raystx_and_through_peft(
    model, tiny_bert_dir, tmp_path
):
    from transformers import AutoModel

    model.add_adapter(_lora())
    expected = _encode(model)
    model.save(str(tmp_path / "adapter-model"))
    root = tmp_path / "adapter-model"
    names = {p.name for p in root.iterdir()}
    assert {ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, "modules.json", "1_Pooling"} <= names
    assert "model.safetensors" not in names and "config.json" not in names  # the adapter only
    config = json.loads((root / ADAPTER_CONFIG_NAME).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert config["base_model_name_or_path"] == str(tiny_bert_dir)
    with safe_open(str(root / ADAPTER_WEIGHTS_NAME), "pt") as f:
        keys = set(f.keys())
    assert len(keys) == 8
    assert "base_model.model.encoder.layer.0.attention.self.query.lora_A.weight" in keys

    reloaded = SentenceTransformer(str(root), device="cpu")
    assert reloaded.active_adapters() == ["default"]
    assert not any(p.requires_grad for p in reloaded.parameters())  # a loaded adapter is for inference
    torch.testing.assert_close(_encode(reloaded), expected, rtol=0, atol=1e-6)

    # PEFT itself over the base Hugging Face model, mean-pooled here as the model's Pooling module does
    hf = peft.PeftModel.from_pretrained(AutoModel.from_pretrained(str(tiny_bert_dir)), str(root)).eval()
    features = model.tokenize(TEXTS)
    with torch.no_grad():
        hidden = hf(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"]
        ).last_hidden_state
    mask = features["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-5)

    # load_adapter onto a plain model, trainable
    plain = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    plain.load_adapter(str(root), adapter_name="mine", is_trainable=True)
    assert plain.active_adapters() == ["mine"]
    assert sum(p.numel() for p in plain.parameters() if p.requires_grad) == 1024
    torch.testing.assert_close(_encode(plain), expected, rtol=0, atol=1e-6)


def test_merged_export_loads_in_sentence_transformers_without_peft_and_keeps_the_model(model, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    model.add_adapter(_lora())
    expected = _encode(model)
    before = copy.deepcopy(model.state_dict())
    model.save(str(tmp_path / "merged"), merge_adapters=True)
    names = {p.name for p in (tmp_path / "merged").iterdir()}
    assert "model.safetensors" in names and ADAPTER_CONFIG_NAME not in names
    with safe_open(str(tmp_path / "merged" / "model.safetensors"), "pt") as f:
        assert not any("lora" in k or "base_layer" in k for k in f.keys())
    oracle = st.SentenceTransformer(str(tmp_path / "merged"), device="cpu")
    torch.testing.assert_close(torch.as_tensor(oracle.encode(TEXTS)), expected, rtol=0, atol=1e-5)
    # the model itself still has its (unmerged) adapter
    assert model.active_adapters() == ["default"]
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_missing_peft_names_the_extra(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install 'raystx\[peft\]'"):
        model.add_adapter(object())


def test_adapter_needs_a_transformer_module():
    from raystx.models import Normalize

    with pytest.raises(ValueError, match="need a Transformer module"):
        SentenceTransformer(modules=[Normalize()], device="cpu").add_adapter(_lora())


def test_a_frozen_loaded_adapter_fails_before_training_with_the_fix(model, tmp_path):
    from raystx.train.preflight import check_trainable_parameters

    model.add_adapter(_lora())
    check_trainable_parameters(model, None)
    model.save(str(tmp_path / "a"))
    frozen = SentenceTransformer(str(tmp_path / "a"), device="cpu")
    with pytest.raises(ValueError, match=r"set_adapter\(name\)"):
        check_trainable_parameters(frozen, None)
    frozen.set_adapter("default")
    check_trainable_parameters(frozen, None)


def test_restoring_weights_reads_only_the_adapter_and_refuses_a_model_without_one(
    model, tiny_bert_dir, tmp_path
):
    from raystx.train.checkpoint import CorruptCheckpointError, load_model_weights

    plain_dir = tmp_path / "plain"
    model.save(str(plain_dir))
    model.add_adapter(_lora())
    trained = copy.deepcopy(model)
    with torch.no_grad():
        for param in trained.parameters():
            if param.requires_grad:
                param.add_(0.5)
    trained.save(str(tmp_path / "trained"))
    load_model_weights(model, tmp_path / "trained")
    torch.testing.assert_close(_encode(model), _encode(trained), rtol=0, atol=0)
    with pytest.raises(CorruptCheckpointError, match="holds no PEFT adapter"):
        load_model_weights(model, plain_dir)
