"""Loading directories written by sentence-transformers 6.x (Dense, Normalize, prompts) and legacy layouts."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import make_sentences

import raystx.models as rm

st = pytest.importorskip("sentence_transformers")
stm = st.sentence_transformer.modules

SENTENCES = make_sentences(16, seed=5, min_len=1, max_len=25)
TOL = 1e-5


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.fixture(scope="module")
def st6_dir(tiny_bert_dir, tmp_path_factory):
    """A sentence-transformers 6.x model: Transformer, cls+mean Pooling, two Dense, Normalize, prompts, dot."""
    torch.manual_seed(1)
    transformer = stm.Transformer(str(tiny_bert_dir), max_seq_length=20)
    pooling = stm.Pooling(32, pooling_mode=("cls", "mean"), include_prompt=False)
    dense1 = stm.Dense(64, 16, activation_function=torch.nn.Tanh())
    dense2 = stm.Dense(16, 8, bias=False, activation_function=None)
    model = st.SentenceTransformer(
        modules=[transformer, pooling, dense1, dense2, stm.Normalize()],
        prompts={"query": "query: ", "document": ""},
        default_prompt_name="query",
        similarity_fn_name="dot",
        device="cpu",
    )
    path = tmp_path_factory.mktemp("st6") / "model"
    model.save_pretrained(str(path))
    return path


def test_st6_dir_with_dense_and_normalize(st6_dir, tmp_path):
    ref = st.SentenceTransformer(str(st6_dir), device="cpu")
    ours = rm.SentenceTransformer(st6_dir, device="cpu")
    assert [type(m).__name__ for m in ours] == ["Transformer", "Pooling", "Dense", "Dense", "Normalize"]
    assert ours.similarity_fn_name == "dot" and ours.default_prompt_name == "query"
    assert ours.prompts["query"] == "query: "
    assert ours.max_seq_length == 20 and ours.get_sentence_embedding_dimension() == 8
    assert isinstance(ours[3].activation_function, torch.nn.Identity) and ours[3].linear.bias is None
    # the default prompt (query) applies to both, and an explicit empty prompt switches it off
    assert _max_diff(ours.encode(SENTENCES), ref.encode(SENTENCES)) < TOL
    assert _max_diff(ours.encode(SENTENCES, prompt=""), ref.encode(SENTENCES, prompt="")) < TOL
    assert _max_diff(ours.encode(SENTENCES, prompt=""), ours.encode(SENTENCES)) > 1e-4

    # raystx writes it back; sentence-transformers reads the same model
    ours.save_pretrained(tmp_path / "again")
    ref2 = st.SentenceTransformer(str(tmp_path / "again"), device="cpu")
    assert ref2.similarity_fn_name == "dot" and ref2.default_prompt_name == "query"
    assert _max_diff(ref2.encode(SENTENCES), ours.encode(SENTENCES)) < TOL
    config = json.loads((tmp_path / "again" / "2_Dense" / "config.json").read_text())
    assert config["activation_function"] == "torch.nn.modules.activation.Tanh"


def _write_legacy_dir(tiny_bert_dir, root):
    """A sentence-transformers v2-style directory: legacy class paths, pooling_mode_* keys, a .bin Dense."""
    shutil.copytree(tiny_bert_dir, root)
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16, "do_lower_case": True}))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": True,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        )
    )
    (root / "2_Dense").mkdir()
    (root / "2_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 64,
                "out_features": 12,
                "bias": True,
                "activation_function": "torch.nn.modules.activation.Tanh",
            }
        )
    )
    g = torch.Generator().manual_seed(7)
    torch.save(
        {
            "linear.weight": torch.randn(12, 64, generator=g) * 0.1,
            "linear.bias": torch.randn(12, generator=g),
        },
        root / "2_Dense" / "pytorch_model.bin",
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "config_sentence_transformers.json").write_text(
        json.dumps({"__version__": {"sentence_transformers": "2.2.2"}})
    )
    return root


def test_legacy_paths_and_keys(tiny_bert_dir, tmp_path):
    root = _write_legacy_dir(tiny_bert_dir, tmp_path / "legacy")
    ours = rm.SentenceTransformer(root, device="cpu")
    assert ours[1].modes == ("cls", "mean") and ours.max_seq_length == 16 and ours[0].do_lower_case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st.SentenceTransformer(str(root), device="cpu")
    texts = [s.upper() for s in SENTENCES]
    assert _max_diff(ours.encode(texts), ref.encode(texts)) < TOL
    np.testing.assert_allclose(np.linalg.norm(ours.encode(texts), axis=1), 1.0, atol=1e-6)

    # re-saved by raystx: safetensors only, modern layout, still equal in sentence-transformers
    ours.save_pretrained(tmp_path / "modern")
    assert (tmp_path / "modern" / "2_Dense" / "model.safetensors").is_file()
    assert not (tmp_path / "modern" / "2_Dense" / "pytorch_model.bin").exists()
    ref2 = st.SentenceTransformer(str(tmp_path / "modern"), device="cpu")
    assert _max_diff(ref2.encode(texts), ours.encode(texts)) < TOL


def test_raystx_class_paths_in_modules_json(tiny_bert_dir, tmp_path):
    ours = rm.SentenceTransformer(tiny_bert_dir, device="cpu")
    ours.save_pretrained(tmp_path / "m")
    entries = json.loads((tmp_path / "m" / "modules.json").read_text())
    entries[0]["type"], entries[1]["type"] = "raystx.models.Transformer", "raystx.models.pooling.Pooling"
    (tmp_path / "m" / "modules.json").write_text(json.dumps(entries))
    back = rm.SentenceTransformer(tmp_path / "m", device="cpu")
    assert _max_diff(back.encode(SENTENCES), ours.encode(SENTENCES)) < TOL


def test_unknown_module_type_and_path_escape_rejected(tiny_bert_dir, tmp_path):
    ours = rm.SentenceTransformer(tiny_bert_dir, device="cpu")
    ours.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "modules.json"
    entries = json.loads(path.read_text())
    entries[1]["type"] = "evil_package.Pooling"
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="custom module 'evil_package.Pooling'.*trust_remote_code=True"):
        rm.SentenceTransformer(tmp_path / "m")
    entries[1]["type"], entries[1]["path"] = "sentence_transformers.models.Pooling", "../outside"
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="inside the model directory"):
        rm.SentenceTransformer(tmp_path / "m")


def test_untrusted_activation_falls_back(tmp_path):
    dense = rm.Dense(4, 3, activation_function=torch.nn.ReLU())
    dense.save(tmp_path)
    assert isinstance(rm.Dense.load(tmp_path).activation_function, torch.nn.ReLU)
    config = json.loads((tmp_path / "config.json").read_text())
    config["activation_function"] = "os.system"
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert isinstance(rm.Dense.load(tmp_path).activation_function, torch.nn.Tanh)


def test_hub_name_offline_error_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="not a local directory and could not be downloaded"):
        rm.SentenceTransformer("no-such-org/no-such-model-raystx")
