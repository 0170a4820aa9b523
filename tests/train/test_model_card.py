"""The model card of a real (single-process) training run holds every section's facts and no secrets."""

from __future__ import annotations

import platform
import re

import datasets
import pytest
import torch
import transformers
import yaml
from conftest import make_sentences

import raystx
from raystx.data.sources import prepare_sources
from raystx.evaluation import EmbeddingSimilarityEvaluator
from raystx.losses import CoSENTLoss, MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.models.card_data import SentenceTransformerModelCardData
from raystx.models.model_card import generate_model_card
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.model_card import attach_model_card, collect_trainer_info
from raystx.train.runtime import LocalRuntime
from raystx.train.worker import WorkerPayload, train_worker

FAKE_SECRET = "hf_FAKEcardSECRET_9876543210"


def _front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, flags=re.S)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    """A 4-step run on two datasets (MNRL pairs, CoSENT scored pairs) with an evaluator every 2 steps."""
    tmp = tmp_path_factory.mktemp("card-run")
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_TOKEN", FAKE_SECRET)
    model = SentenceTransformer(
        str(tiny_bert_dir),
        model_card_data={
            "language": "en",
            "license": "apache-2.0",
            "model_name": "Tiny raystx test model",
            "base_model": "org/tiny-bert",
            "train_datasets": [{"name": "pairs", "id": "org/pairs-dataset"}],
        },
    )
    pairs = datasets.Dataset.from_dict(
        {
            "anchor": [f"a secret {FAKE_SECRET} here"] + make_sentences(23, 1),
            "positive": make_sentences(24, 2),
        }
    )
    scored = datasets.Dataset.from_dict(
        {
            "sentence1": make_sentences(16, 3),
            "sentence2": make_sentences(16, 4),
            "score": [i / 15 for i in range(16)],
        }
    )
    losses = {"pairs": MultipleNegativesRankingLoss(model, scale=10.0), "scored": CoSENTLoss(model)}
    evaluator = EmbeddingSimilarityEvaluator(
        make_sentences(8, 5), make_sentences(8, 6), [i / 7 for i in range(8)], name="dev", write_csv=False
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp / "run"),
        run_name=f"run-{FAKE_SECRET}",
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        multi_dataset_batch_sampler="round_robin",
        seed=2,
    )
    sources = prepare_sources({"pairs": pairs, "scored": scored}, staging_dir=str(tmp / "stage"))
    payload = WorkerPayload(
        model=model,
        losses=losses,
        args=args,
        sources=sources,
        label_kinds={n: loss.contract.label for n, loss in losses.items()},
        evaluator=evaluator,
    )
    result = train_worker(payload, LocalRuntime(tmp / "run", device="cpu"))
    info = collect_trainer_info(
        sources=sources,
        losses=losses,
        args=args,
        log_history=result["log_history"],
        evaluator=evaluator,
        world_size=1,
        training_time_s=12.5,
    )
    yield {"model": model, "info": info, "history": result["log_history"], "evaluator": evaluator, "tmp": tmp}
    mp.undo()


def test_card_front_matter_has_metadata_and_final_evaluator_metrics(trained, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_SECRET)
    card = generate_model_card(trained["model"], trainer_info=trained["info"])
    meta = _front_matter(card)
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert meta["base_model"] == "org/tiny-bert"
    assert meta["language"] == "en" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["org/pairs-dataset"]
    for tag in (
        "sentence-transformers",
        "sentence-similarity",
        "feature-extraction",
        "raystx",
        "dataset_size:40",
    ):
        assert tag in meta["tags"]
    assert "loss:MultipleNegativesRankingLoss" in meta["tags"] and "loss:CoSENTLoss" in meta["tags"]

    final = trained["history"][-1]
    expected = {k[len("eval_dev_") :]: v for k, v in final.items() if k.startswith("eval_dev_")}
    assert set(expected) == {"pearson_cosine", "spearman_cosine"}
    assert meta["metrics"] == list(expected)
    (index,) = meta["model-index"]
    assert index["name"] == "Tiny raystx test model"
    (result,) = index["results"]
    assert result["task"] == {"type": "semantic-similarity", "name": "Semantic Similarity"}
    assert result["dataset"]["type"] == "dev"
    assert {m["type"]: m["value"] for m in result["metrics"]} == expected  # exact: YAML keeps float repr


def test_card_body_sections(trained, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_SECRET)
    model, info = trained["model"], trained["info"]
    card = generate_model_card(model, trainer_info=info)
    # model description
    assert "# Tiny raystx test model" in card
    assert "- **Maximum Sequence Length:** 128 tokens" in card
    assert "- **Output Dimensionality:** 32 dimensions" in card
    assert "- **Similarity Function:** Cosine Similarity" in card
    assert "(0): Transformer(max_seq_length=128" in card and "(1): Pooling(" in card
    # usage: both libraries, with the model's real similarity matrix for the sample sentences
    assert "from sentence_transformers import SentenceTransformer" in card
    assert "from raystx import SentenceTransformer" in card
    assert "# [3, 32]" in card
    # training datasets: names, sizes, columns, sample rows, losses and their arguments
    assert "#### pairs" in card and "#### scored" in card
    assert "[pairs](https://huggingface.co/datasets/org/pairs-dataset)" in card
    assert "* Size: 24 training samples" in card and "* Size: 16 training samples" in card
    assert "* Columns: <code>anchor</code> and <code>positive</code>" in card
    assert "* Columns: <code>sentence1</code>, <code>sentence2</code> and <code>score</code>" in card
    for sentence in make_sentences(23, 1)[:2] + make_sentences(16, 3)[:3]:
        assert f"| {sentence} |" in card
    assert "<code>raystx.losses.MultipleNegativesRankingLoss</code> with these parameters:" in card
    assert '"scale": 10.0' in card and '"similarity_fct": "cos_sim"' in card
    assert "<code>raystx.losses.CoSENTLoss</code>" in card and '"scale": 20.0' in card
    # hyperparameters (non-default ones, from args)
    assert "#### Non-Default Hyperparameters" in card
    assert "- `max_steps`: 4" in card and "- `multi_dataset_batch_sampler`: round_robin" in card
    assert "- `learning_rate`: 0.001" in card
    # evaluation table with the primary metric bold
    final = trained["history"][-1]
    assert f"| **spearman_cosine** | **{round(final['eval_dev_spearman_cosine'], 4)}** |" in card
    # training log: one row per log entry, the loss and the primary metric at the logged steps
    assert "| Epoch | Step | Training Loss | dev_spearman_cosine |" in card
    for h in trained["history"]:
        assert (
            f"| {round(h['epoch'], 4)} | {h['step']} | {round(h['loss'], 4)} | {round(h['eval_dev_spearman_cosine'], 4)} |"
            in card
        )
    assert "- **Training**: 12.5 seconds" in card
    # framework versions
    assert f"- Python: {platform.python_version()}" in card
    assert f"- raystx: {raystx.__version__}" in card
    assert f"- Transformers: {transformers.__version__}" in card
    assert f"- PyTorch: {torch.__version__}" in card
    import ray
    import tokenizers

    assert f"- Ray: {ray.__version__}" in card and f"- Tokenizers: {tokenizers.__version__}" in card
    # citations of the losses
    assert "#### MultipleNegativesRankingLoss" in card and "```bibtex" in card


def test_card_never_contains_secrets(trained, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_SECRET)
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "pw-" + FAKE_SECRET[::-1])
    card = generate_model_card(trained["model"], trainer_info=trained["info"])
    assert FAKE_SECRET not in card and FAKE_SECRET[::-1] not in card
    assert "a secret <redacted> here" in card  # the sample row is kept, its secret masked
    assert "- `run_name`" not in card or f"run-{FAKE_SECRET}" not in card
    assert "run-<redacted>" in card  # all hyperparameters list the masked run name


def test_card_data_dict_access_and_driver_side_evaluation(trained, monkeypatch, tmp_path):
    data = SentenceTransformerModelCardData.from_any({"model_id": "org/model", "train_datasets": ["pairs"]})
    assert data.get("model_id") == "org/model" and data["train_datasets"] == [{"name": "pairs"}]
    assert data.setdefault("model_name", "X") == "X" and data.setdefault("model_name", "Y") == "X"
    assert dict(data)["license"] is None
    with pytest.raises(KeyError):
        data["not_a_field"] = 1

    model, evaluator = trained["model"], trained["evaluator"]
    attach_model_card(model, trained["info"])
    assert isinstance(model.model_card_data, SentenceTransformerModelCardData)
    assert model.model_card_data.model_name == "Tiny raystx test model"  # user values kept
    # An evaluator run on the driver after training records its metrics in the card (as in ST).
    fresh = evaluator(model)
    card = generate_model_card(model)
    (result,) = _front_matter(card)["model-index"][0]["results"]
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        k[len("dev_") :]: v for k, v in fresh.items()
    }


def test_save_pretrained_writes_the_full_card(trained, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_SECRET)
    untrained = SentenceTransformer(str(tiny_bert_dir), model_card_data={"model_name": "Untrained"})
    untrained.save_pretrained(str(tmp_path / "untrained-card"))  # no run attached: the model part only
    plain = (tmp_path / "untrained-card" / "README.md").read_text(encoding="utf-8")
    assert _front_matter(plain)["library_name"] == "sentence-transformers"
    assert "# Untrained" in plain and "- **Output Dimensionality:** 32 dimensions" in plain
    assert "## Training Details" not in plain and "## Evaluation" not in plain

    model = trained["model"]

    attach_model_card(model, trained["info"])
    assert model.model_card_data.trainer_info is not None
    model.save_pretrained(str(tmp_path / "saved"))
    readme = (tmp_path / "saved" / "README.md").read_text(encoding="utf-8")
    assert readme == generate_model_card(model)
    assert readme == generate_model_card(model, trainer_info=trained["info"])
    assert "## Training Details" in readme and "### Training Logs" in readme
    assert "- **Training**: 12.5 seconds" in readme
    assert FAKE_SECRET not in readme


def test_model_card_data_refuses_unknown_keys(tiny_bert_dir):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['licence'\]"):
        SentenceTransformer(str(tiny_bert_dir), model_card_data={"licence": "mit"})
