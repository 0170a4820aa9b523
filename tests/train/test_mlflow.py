"""``report_to="mlflow"`` with a local file store: a real MLflow run directory whose params and metrics, read back with
MLflow's own client, are the training arguments and the values the run logged."""

from __future__ import annotations

import datasets
import pytest
from conftest import make_sentences

from raystx.data.sources import prepare_sources
from raystx.evaluation import EmbeddingSimilarityEvaluator
from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, train_worker

mlflow = pytest.importorskip("mlflow")

FAKE_SECRET = "hf_FAKEsecretVALUE_mlflow_0123456789"


def test_training_run_writes_an_mlflow_run_read_back_by_mlflow(monkeypatch, tiny_bert_dir, tmp_path):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "raystx-test")
    monkeypatch.setenv("HF_TOKEN", FAKE_SECRET)
    model = SentenceTransformer(str(tiny_bert_dir))
    model.max_seq_length = 16
    loss = MultipleNegativesRankingLoss(model)
    data = datasets.Dataset.from_dict({"anchor": make_sentences(32, 1), "positive": make_sentences(32, 2)})
    evaluator = EmbeddingSimilarityEvaluator(
        make_sentences(8, 3), make_sentences(8, 4), [i / 7 for i in range(8)], name="dev", write_csv=False
    )
    out = tmp_path / "run"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out),
        run_name="mlflow-e2e",
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        report_to="mlflow",
        seed=5,
    )
    payload = WorkerPayload(
        model=model,
        losses={"train": loss},
        args=args,
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        evaluator=evaluator,
    )
    history = train_worker(payload, LocalRuntime(out, device="cpu"))["log_history"]
    losses = {h["step"]: h["loss"] for h in history if "loss" in h}
    evals = {h["step"]: h["eval_dev_spearman_cosine"] for h in history if "eval_dev_spearman_cosine" in h}
    assert sorted(losses) == [1, 2, 3, 4] and sorted(evals) == [2, 4]
    assert mlflow.active_run() is None  # the callback ended the run it started

    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("raystx-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert (
        store / experiment.experiment_id / run.info.run_id / "meta.yaml"
    ).is_file()  # a real run directory
    assert run.info.run_name == "mlflow-e2e" and run.info.status == "FINISHED"
    params = run.data.params
    assert (
        params["max_steps"] == "4"
        and params["learning_rate"] == "0.001"
        and params["report_to"] == '["mlflow"]'
    )
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [
        (step, pytest.approx(value, rel=1e-12)) for step, value in sorted(losses.items())
    ]
    dev = client.get_metric_history(run.info.run_id, "eval_dev_spearman_cosine")
    assert [(m.step, m.value) for m in dev] == [
        (s, pytest.approx(v, rel=1e-12)) for s, v in sorted(evals.items())
    ]
    for path in store.rglob("*"):
        if path.is_file():
            assert FAKE_SECRET.encode() not in path.read_bytes(), path
