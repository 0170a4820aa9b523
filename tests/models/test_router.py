"""Router / Asym: query and document towers, round-tripped both ways with the sentence-transformers oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import build_tiny_bert, make_sentences

import raystx.models as rm

st = pytest.importorskip("sentence_transformers")

SENTENCES = make_sentences(12, seed=5, min_len=1, max_len=14)
TOL = 1e-6


def _diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.fixture(scope="module")
def two_berts(tmp_path_factory):
    root = tmp_path_factory.mktemp("router-berts")
    return build_tiny_bert(root / "q", seed=1), build_tiny_bert(root / "d", seed=2)


def _ours(two_berts, normalize: bool = True) -> rm.SentenceTransformer:
    q_dir, d_dir = two_berts
    q, d = rm.Transformer(str(q_dir)), rm.Transformer(str(d_dir))
    router = rm.Router.for_query_document(
        [q, rm.Pooling(q.get_word_embedding_dimension(), "mean")],
        [d, rm.Pooling(d.get_word_embedding_dimension(), "cls"), rm.Dense(32, 16)],
    )
    modules = [router, rm.Normalize()] if normalize else [router]
    return rm.SentenceTransformer(modules=modules, device="cpu")


def test_routes_pick_the_tower(two_berts):
    model = _ours(two_berts, normalize=False)
    q = model.encode_query(SENTENCES)
    d = model.encode_document(SENTENCES)
    assert q.shape == (len(SENTENCES), 32) and d.shape == (len(SENTENCES), 16)
    assert _diff(model.encode(SENTENCES), d) == 0  # default route of for_query_document is "document"
    assert _diff(model.encode(SENTENCES, task="query"), q) == 0
    asym_style = model.encode([{"query": s} for s in SENTENCES])
    assert _diff(asym_style, q) == 0
    with pytest.raises(ValueError, match="no route for task='passage'"):
        model.encode(SENTENCES, task="passage")


def test_raystx_save_loads_in_st(two_berts, tmp_path):
    ours = _ours(two_berts)
    ours.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "0_Router" / "router_config.json").read_text())
    assert config["structure"] == {
        "query": ["query_0_Transformer", "query_1_Pooling"],
        "document": ["document_0_Transformer", "document_1_Pooling", "document_2_Dense"],
    }
    ref = st.SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert type(ref[0]).__name__ == "Router"
    assert _diff(ref.encode_query(SENTENCES), ours.encode_query(SENTENCES)) < TOL
    assert _diff(ref.encode_document(SENTENCES), ours.encode_document(SENTENCES)) < TOL
    back = rm.SentenceTransformer(tmp_path / "m", device="cpu")
    assert _diff(back.encode_query(SENTENCES), ours.encode_query(SENTENCES)) < TOL
    assert _diff(back.encode_document(SENTENCES), ours.encode_document(SENTENCES)) < TOL


def test_st_save_loads_in_raystx(two_berts, tmp_path):
    q_dir, d_dir = two_berts
    import sentence_transformers.sentence_transformer.modules as smods

    q, d = smods.Transformer(str(q_dir)), smods.Transformer(str(d_dir))
    router = smods.Router(
        {"query": [q, smods.Pooling(32, "mean")], "document": [d, smods.Pooling(32, "max")]},
        default_route="document",
        route_mappings={("query", None): "query"},
    )
    ref = st.SentenceTransformer(modules=[router, smods.Normalize()], device="cpu")
    ref.save(str(tmp_path / "st"))
    ours = rm.SentenceTransformer(tmp_path / "st", device="cpu")
    assert isinstance(ours[0], rm.Router) and ours[0].route_mappings == {("query", None): "query"}
    assert _diff(ours.encode_query(SENTENCES), ref.encode_query(SENTENCES)) < TOL
    assert _diff(ours.encode_document(SENTENCES), ref.encode_document(SENTENCES)) < TOL
    assert _diff(ours.encode(SENTENCES), ref.encode(SENTENCES)) < TOL


def test_old_asym_config_json_loads(two_berts, tmp_path):
    """An ``Asym`` directory of sentence-transformers 2.x: ``config.json`` with types/structure/parameters."""
    ours = _ours(two_berts, normalize=False)
    ours.save(tmp_path / "m")
    sub = tmp_path / "m" / "0_Router"
    config = json.loads((sub / "router_config.json").read_text())
    config["types"] = {
        k: "sentence_transformers.models." + v.rsplit(".", 1)[-1] for k, v in config["types"].items()
    }
    config["parameters"] = {"allow_empty_key": True}
    (sub / "router_config.json").unlink()
    (sub / "config.json").write_text(json.dumps(config))
    modules = json.loads((tmp_path / "m" / "modules.json").read_text())
    modules[0]["type"] = "sentence_transformers.models.Asym"
    (tmp_path / "m" / "modules.json").write_text(json.dumps(modules))
    back = rm.SentenceTransformer(tmp_path / "m", device="cpu")
    assert _diff(back.encode_query(SENTENCES), ours.encode_query(SENTENCES)) < TOL
    ref = st.SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert _diff(ref.encode_document(SENTENCES), ours.encode_document(SENTENCES)) < TOL


def test_shared_module_saved_once(two_berts, tmp_path):
    q_dir, _ = two_berts
    shared = rm.Transformer(str(q_dir))
    router = rm.Router.for_query_document([shared, rm.Pooling(32, "mean")], [shared, rm.Pooling(32, "max")])
    model = rm.SentenceTransformer(modules=[router], device="cpu")
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "0_Router" / "router_config.json").read_text())
    assert config["structure"]["document"][0] == "query_0_Transformer"
    back = rm.SentenceTransformer(tmp_path / "m", device="cpu")
    assert back[0].sub_modules["query"][0] is back[0].sub_modules["document"][0]
    ref = st.SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert _diff(ref.encode_document(SENTENCES), model.encode_document(SENTENCES)) < TOL
    assert torch.equal(
        back[0].sub_modules["query"][0].auto_model.embeddings.word_embeddings.weight,
        shared.auto_model.embeddings.word_embeddings.weight,
    )
