"""Training a Router query/document model with ``router_mapping`` (one process, LocalRuntime)."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import build_tiny_bert, make_sentences

import raystx.models as rm
from raystx.data.collate import BatchCollator, resolve_route, thread_private_tokenize
from raystx.data.sources import prepare_sources
from raystx.losses import MultipleNegativesRankingLoss
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, train_worker

st = pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def berts(tmp_path_factory):
    root = tmp_path_factory.mktemp("router-train")
    return build_tiny_bert(root / "q", seed=3), build_tiny_bert(root / "d", seed=4)


def _model(berts) -> rm.SentenceTransformer:
    q, d = rm.Transformer(str(berts[0])), rm.Transformer(str(berts[1]))
    router = rm.Router.for_query_document([q, rm.Pooling(32, "mean")], [d, rm.Pooling(32, "mean")])
    return rm.SentenceTransformer(modules=[router], device="cpu")


def _tower(model, route: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model[0].sub_modules[route].state_dict().items()}


def _changed(before: dict[str, torch.Tensor], model, route: str) -> bool:
    after = _tower(model, route)
    return any(not torch.equal(before[k], after[k]) for k in before)


def _payload(tmp_path: Path, model, **args) -> WorkerPayload:
    data = datasets.Dataset.from_dict({"question": make_sentences(32, 1), "answer": make_sentences(32, 2)})
    defaults = dict(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, save_steps=3, learning_rate=1e-2
    )
    defaults.update(args)
    return WorkerPayload(
        model=model,
        losses={"train": MultipleNegativesRankingLoss(model)},
        args=SentenceTransformerTrainingArguments(**defaults),
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        run_dir=str(tmp_path),
    )


def test_router_mapping_trains_both_towers_and_st_loads_the_result(tmp_path, berts):
    model = _model(berts)
    q_before, d_before = _tower(model, "query"), _tower(model, "document")
    runtime = LocalRuntime(tmp_path)
    train_worker(
        _payload(tmp_path, model, router_mapping={"question": "query", "answer": "document"}), runtime
    )
    assert _changed(q_before, model, "query") and _changed(d_before, model, "document")

    saved = runtime.checkpoints[-1] / "model"
    ref = st.SentenceTransformer(str(saved), device="cpu")
    texts = make_sentences(6, 9)
    ours = rm.SentenceTransformer(saved, device="cpu")
    assert np.abs(ref.encode_query(texts) - ours.encode_query(texts)).max() < 1e-6
    assert np.abs(ref.encode_document(texts) - model.encode_document(texts)).max() < 1e-6


def test_without_router_mapping_only_the_default_route_trains(tmp_path, berts):
    """What ``router_mapping`` changes: without it every column goes to the default (document) tower."""
    model = _model(berts)
    q_before, d_before = _tower(model, "query"), _tower(model, "document")
    train_worker(_payload(tmp_path, model), LocalRuntime(tmp_path))
    assert not _changed(q_before, model, "query") and _changed(d_before, model, "document")


def test_collator_tokenizes_each_column_with_its_route(berts):
    model = _model(berts)
    collate = BatchCollator(
        thread_private_tokenize(model),
        {"ds": ["question", "answer"]},
        {"ds": None},
        {},
        router_mapping={"ds": {"question": "query", "answer": "document"}},
    )
    (q, d), labels = collate("ds", {"question": ["a b"], "answer": ["c d"]})
    assert (q["task"], d["task"], labels) == ("query", "document", None)
    # the tokenizing thread's Router owns its tokenizers but shares the weights
    private = model[0].with_private_tokenizer()
    assert private.sub_modules["query"][0].tokenizer is not model[0].sub_modules["query"][0].tokenizer
    assert private.sub_modules["query"][0].auto_model is model[0].sub_modules["query"][0].auto_model


def test_resolve_route_forms():
    assert resolve_route({"q": "query"}, "train", "q") == "query"
    assert resolve_route({"train": {"q": "query"}}, "train", "q") == "query"
    assert resolve_route({"train": {"q": "query"}}, "other", "q") is None
    assert resolve_route({}, "train", "q") is None


def test_check_router_mapping(berts):
    from raystx.models.router import check_router_mapping

    model = _model(berts)
    with pytest.raises(ValueError, match="no router_mapping"):
        check_router_mapping(model, {})
    with pytest.raises(ValueError, match="column 'answer' to 'passage'.*routes: \\['query', 'document'\\]"):
        check_router_mapping(model, {"question": "query", "answer": "passage"})
    with pytest.raises(ValueError, match="column 'train.answer' to 'doc'"):
        check_router_mapping(model, {"train": {"answer": "doc"}})
    check_router_mapping(model, {"question": "query", "answer": "document"})
    check_router_mapping(
        rm.SentenceTransformer(modules=[rm.Normalize()]), None
    )  # no Router: nothing to check
