"""The YAML experiment config and the `raystx` CLI over it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import make_sentences
from typer.testing import CliRunner

from raystx.cli import app
from raystx.config import ConfigError, load_config


def _write_pairs(path: Path, n: int = 48) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive"])
        for a, p in zip(make_sentences(n, 1), make_sentences(n, 2)):
            writer.writerow([a, p])
    return path


def _write_scored(path: Path, n: int = 24) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write("sentence1\tsentence2\tscore\n")
        for i, (a, b) in enumerate(zip(make_sentences(n, 3), make_sentences(n, 4))):
            handle.write(f"{a}\t{b}\t{(i % 6) * 1.0}\n")
    return path


def _config(tmp_path: Path, model_dir: Path, **extra) -> Path:
    raw = {
        "model": {"name_or_path": str(model_dir), "max_seq_length": 32},
        "train_data": {"pairs": {"path": str(_write_pairs(tmp_path / "pairs.csv"))}},
        "loss": {"type": "MultipleNegativesRankingLoss", "kwargs": {"scale": 20.0}},
        "evaluator": {
            "type": "EmbeddingSimilarityEvaluator",
            "path": str(_write_scored(tmp_path / "dev.tsv")),
            "columns": {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"},
            "score_scale": 5.0,
            "kwargs": {"name": "dev"},
        },
        "args": {
            "output_dir": str(tmp_path / "out"),
            "max_steps": 4,
            "per_device_train_batch_size": 8,
            "logging_steps": 2,
            "save_steps": 2,
            "eval_strategy": "steps",
            "eval_steps": 2,
            "learning_rate": 1e-3,
        },
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}},
        "save_model_to": str(tmp_path / "final"),
    }
    raw.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("args.learnin_rate=1", "learnin_rate"),
        ("model.nme=x", "model.nme"),
        ("scaling.num_wrkers=2", "scaling.num_wrkers"),
        ("typo_section=1", "typo_section"),
    ],
)
def test_unknown_keys_fail_naming_the_key(tmp_path, tiny_bert_dir, override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(_config(tmp_path, tiny_bert_dir), [override])


def test_set_overrides_are_typed_and_nested(tmp_path, tiny_bert_dir):
    cfg = load_config(_config(tmp_path, tiny_bert_dir), ["args.learning_rate=3e-5", "scaling.num_workers=3"])
    assert cfg.args["learning_rate"] == pytest.approx(3e-5)
    assert cfg.scaling.num_workers == 3


def test_environment_references_expand_with_yaml_meaning_and_name_missing_variables(
    tmp_path, tiny_bert_dir, monkeypatch
):
    monkeypatch.setenv("RAYSTX_TEST_WORKERS", "3")
    monkeypatch.delenv("RAYSTX_TEST_UNSET", raising=False)
    path = _config(
        tmp_path,
        tiny_bert_dir,
        run={"storage_path": "${RAYSTX_TEST_UNSET:-}", "name": "n-${RAYSTX_TEST_WORKERS}"},
    )
    cfg = load_config(path, ["scaling.num_workers=${RAYSTX_TEST_WORKERS}"])
    assert cfg.scaling.num_workers == 3 and cfg.run.storage_path is None and cfg.run.name == "n-3"
    with pytest.raises(ConfigError, match=r"args\.output_dir.*RAYSTX_TEST_UNSET"):
        load_config(path, ["args.output_dir=${RAYSTX_TEST_UNSET}/out"])


def test_loss_and_losses_must_pair_with_the_datasets(tmp_path, tiny_bert_dir):
    path = _config(tmp_path, tiny_bert_dir, loss=None, losses={"other": {"type": "CoSENTLoss"}})
    with pytest.raises(ConfigError, match="other"):
        load_config(path)


def test_cli_validate_reports_a_dataset_that_does_not_fit_its_loss(ray_session, tmp_path, tiny_bert_dir):
    path = _config(tmp_path, tiny_bert_dir, loss={"type": "CoSENTLoss"})  # pairs have no score column
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert "pairs" in result.output and "CoSENTLoss" in result.output
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_cli_train_runs_two_workers_and_saves_a_sentence_transformers_model(
    ray_session, tmp_path, tiny_bert_dir
):
    st = pytest.importorskip("sentence_transformers")
    path = _config(tmp_path, tiny_bert_dir)
    result = CliRunner().invoke(app, ["train", str(path), "--set", "args.seed=7"])
    assert result.exit_code == 0, result.output
    # raw_decode: Ray may print a log line after the summary (its driver log forwarding shares stdout)
    summary, _ = json.JSONDecoder().raw_decode(result.output, result.output.rindex('{\n  "global_step"'))
    assert summary["global_step"] == 4
    assert "dev_spearman_cosine" in summary["eval"]
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    model = st.SentenceTransformer(str(tmp_path / "final"), device="cpu")
    assert model.encode(["the cat sits"]).shape == (1, 32)
