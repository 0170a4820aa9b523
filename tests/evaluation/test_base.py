"""The evaluator base class, the metric prefix helper, primary-metric bookkeeping and import hygiene."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import make_sentences
from eval_helpers import make_ir_data, st_model  # noqa: F401

from raystx.evaluation import (
    InformationRetrievalEvaluator,
    MSEEvaluator,
    SentenceEvaluator,
    prefix_name_to_metrics,
)
from raystx.evaluation._quantize import quantize


def test_prefix_name_to_metrics():
    metrics = {"a": np.float32(0.5), "b@10": 1, "c": "text"}
    assert prefix_name_to_metrics(metrics, "dev") == {"dev_a": 0.5, "dev_b@10": 1.0, "dev_c": "text"}
    assert prefix_name_to_metrics(metrics, "") == {"a": 0.5, "b@10": 1.0, "c": "text"}
    assert type(prefix_name_to_metrics(metrics, "")["a"]) is float


def test_custom_evaluator_primary_metric_prefixed_once():
    class Custom(SentenceEvaluator):
        def __call__(self, model, output_path=None, epoch=-1, steps=-1):
            self.primary_metric = self.primary_metric or "score"
            return self.prefix_name_to_metrics({"score": 1.0}, "my")

    ev = Custom()
    assert ev.primary_metric_and_direction() == (None, True)
    for _ in range(2):
        assert ev(None) == {"my_score": 1.0}
        assert ev.primary_metric == "my_score"
    assert ev.description == "Custom"


def test_ir_primary_metric_stable_across_calls(st_model):  # noqa: F811
    ev = InformationRetrievalEvaluator(*make_ir_data(), name="dev")
    first = ev(st_model)
    assert ev.primary_metric == "dev_cosine_ndcg@10"
    assert ev(st_model) == first and ev.primary_metric == "dev_cosine_ndcg@10"
    assert ev.primary_metric_and_direction() == ("dev_cosine_ndcg@10", True)


def test_mse_direction_is_negative_mse(st_model):  # noqa: F811
    texts = make_sentences(10, 1)
    ev = MSEEvaluator(texts, texts, teacher_model=st_model, name="d")
    assert ev(st_model) == {"d_negative_mse": pytest.approx(0.0, abs=1e-9)}
    assert ev.primary_metric == "d_negative_mse" and ev.greater_is_better


def test_quantize_matches_sentence_transformers():
    from sentence_transformers.util.quantization import quantize_embeddings

    emb = np.random.default_rng(0).normal(size=(20, 19)).astype(np.float32)
    for precision in ("float32", "int8", "uint8", "binary", "ubinary"):
        ours, theirs = quantize(emb, precision), quantize_embeddings(emb, precision)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), precision


def test_import_does_not_pull_ray_or_pydantic():
    code = "import sys, raystx.evaluation; print(sorted(m for m in ('ray', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
