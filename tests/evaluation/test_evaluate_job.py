"""``raystx evaluate CONFIG`` / ``jobs/eval.py``: evaluators from a config on a saved model, in this process and
sharded on 2 Ray workers, give the metrics of the same evaluators called directly (1e-6); the report lands as
JSON and Markdown; bad configs fail before Ray starts, naming the evaluator and key."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_sentences, unique_sentences
from eval_helpers import make_ir_data, write_beir_dir
from typer.testing import CliRunner

from raystx.cli import app
from raystx.config import ConfigError
from raystx.evaljob import build_evaluators, load_eval_config
from raystx.evaluation import (
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    NanoBEIREvaluator,
)
from raystx.models import SentenceTransformer

REPO = Path(__file__).resolve().parents[2]


def _write_tsv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_bert_dir):
    """A config over a pairs file, a BEIR directory and a NanoBEIR-style folder; the expected metrics."""
    root = tmp_path_factory.mktemp("evaljob")
    n = 40
    s1, s2 = make_sentences(n, 31), make_sentences(n, 32)
    scores = [round((i * 7 % 11) / 2, 2) for i in range(n)]
    labels = [i % 2 for i in range(n)]
    _write_tsv(root / "pairs.tsv", ["a", "b", "score", "dup"], list(map(list, zip(s1, s2, scores, labels))))
    queries, corpus, relevant = make_ir_data(n_docs=60, n_queries=12, seed=3)
    write_beir_dir(root / "beir" / "mini", queries, corpus, relevant)
    q2, c2, r2 = make_ir_data(n_docs=30, n_queries=8, seed=5)
    write_beir_dir(root / "nano" / "NanoSciFact", q2, c2, r2)
    config = {
        "model": {"name_or_path": str(tiny_bert_dir), "max_seq_length": 16},
        "evaluators": [
            {
                "type": "EmbeddingSimilarityEvaluator",
                "path": "pairs.tsv",  # relative to the config's folder
                "columns": {"sentences1": "a", "sentences2": "b", "scores": "score"},
                "score_scale": 5.0,
                "kwargs": {"name": "sts"},
            },
            {
                "type": "BinaryClassificationEvaluator",
                "path": str(root / "pairs.tsv"),
                "columns": {"sentences1": "a", "sentences2": "b", "labels": "dup"},
                "limit": 30,
                "kwargs": {"name": "dup"},
            },
            {"type": "InformationRetrievalEvaluator", "beir": "beir/mini", "kwargs": {"name": "mini"}},
            {
                "type": "NanoBEIREvaluator",
                "kwargs": {"dataset_id": str(root / "nano"), "dataset_names": ["scifact"]},
            },
        ],
        "scaling": {"num_workers": 0},
        "output_dir": str(root / "out"),
    }
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    model.max_seq_length = 16
    direct = [
        EmbeddingSimilarityEvaluator(s1, s2, [s / 5.0 for s in scores], name="sts"),
        BinaryClassificationEvaluator(s1[:30], s2[:30], labels[:30], name="dup"),
        InformationRetrievalEvaluator(queries, corpus, relevant, name="mini"),
        NanoBEIREvaluator(dataset_names=["scifact"], dataset_id=str(root / "nano")),
    ]
    expected = [ev(model) for ev in direct]
    return path, expected


def _evaluate(path: Path, *overrides: str):
    args = ["evaluate", str(path)]
    for item in overrides:
        args += ["--set", item]
    return CliRunner().invoke(app, args)


def _check_report(out_dir: Path, expected: list[dict], workers: int) -> None:
    report = json.loads((out_dir / "metrics.json").read_text())
    assert report["num_workers"] == workers
    assert [e["type"] for e in report["evaluators"]] == [
        "EmbeddingSimilarityEvaluator",
        "BinaryClassificationEvaluator",
        "InformationRetrievalEvaluator",
        "NanoBEIREvaluator",
    ]
    for entry, want in zip(report["evaluators"], expected):
        assert entry["metrics"].keys() == want.keys()
        for key, value in want.items():
            assert entry["metrics"][key] == pytest.approx(float(value), abs=1e-6), key
        assert entry["primary_metric"] in entry["metrics"]
    table = (out_dir / "metrics.md").read_text()
    assert "## EmbeddingSimilarityEvaluator `sts`" in table
    assert f"| **sts_spearman_cosine** | **{expected[0]['sts_spearman_cosine']:.6f}** |" in table
    assert f"| mini_cosine_mrr@10 | {expected[2]['mini_cosine_mrr@10']:.6f} |" in table


def test_evaluate_in_process_writes_the_direct_metrics(job, tmp_path):
    path, expected = job
    result = _evaluate(path, f"output_dir={tmp_path / 'out'}")
    assert result.exit_code == 0, result.output
    _check_report(tmp_path / "out", expected, workers=0)
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed["evaluators"][0]["metrics"]["sts_spearman_cosine"] == pytest.approx(
        expected[0]["sts_spearman_cosine"], abs=1e-6
    )


@pytest.mark.ray
def test_evaluate_on_two_ray_workers_equals_direct(job, tmp_path, ray_session):
    path, expected = job
    result = _evaluate(path, f"output_dir={tmp_path / 'out'}", "scaling.num_workers=2")
    assert result.exit_code == 0, result.output
    _check_report(tmp_path / "out", expected, workers=2)


def test_job_entry_point_runs_raystx_evaluate(job, tmp_path, tiny_bert_dir):
    sys.path.insert(0, str(REPO))
    from jobs.launch import cli_args, main

    path, expected = job
    argv = ["--config", str(path), "--model", str(tiny_bert_dir), "--set", f"output_dir={tmp_path / 'o'}"]
    assert cli_args("evaluate", argv, {})[:4] == [
        "evaluate",
        str(path),
        "--set",
        f"model.name_or_path={tiny_bert_dir}",
    ]
    assert main("evaluate", argv) == 0
    _check_report(tmp_path / "o", expected, workers=0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluators.0.type=NoSuchEvaluator", "evaluators[0].type: unknown evaluator type 'NoSuchEvaluator'"),
        ("evaluators.1.kwargs.nme=x", "evaluators[1] (BinaryClassificationEvaluator)"),
        ("evaluators.0.columns.scores=missing_col", "evaluators[0].columns"),
        ("evaluators.1.path=/no/such/file.tsv", "evaluators[1].path: /no/such/file.tsv does not exist"),
        ("evaluators.2.beir=/no/such/dir", "evaluators[2].beir: /no/such/dir is not a BEIR directory"),
        ("evaluators.0.beir=/x", "give either `beir` (a BEIR directory) or `path` + `columns`, not both"),
        ("evaluators.3.beir=/x", "`beir` fills InformationRetrievalEvaluator"),
        ("scaling.num_wokers=2", "scaling.num_wokers"),
        ("model.name_or_path=/no/model", "model.name_or_path: /no/model is not a model directory"),
    ],
)
def test_bad_configs_fail_early_naming_the_key(job, tmp_path, override, message):
    path, _ = job
    result = _evaluate(path, override, f"output_dir={tmp_path / 'out'}")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_evaluators_list_must_not_be_empty(job):
    path, _ = job
    with pytest.raises(ConfigError, match="evaluators"):
        load_eval_config(path, ["evaluators=[]"])


def test_shipped_eval_config_builds(monkeypatch, tmp_path):
    """jobs/configs/eval.yaml validates and its evaluators build on files laid out like /work/shared/data."""
    words = unique_sentences(12, seed=1)
    _write_tsv(tmp_path / "stsb" / "validation.tsv", ["sentence1", "sentence2", "score"],
               [[words[i], words[i + 1], 2.5] for i in range(6)])  # fmt: skip
    _write_tsv(tmp_path / "quora" / "qqp_pairs.tsv",
               ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
               [[i, i, i + 1, words[i], words[i + 1], i % 2] for i in range(6)])  # fmt: skip
    _write_tsv(tmp_path / "nli" / "nli_triplets.tsv", ["source", "anchor", "positive", "negative"],
               [["snli", words[i], words[i + 1], words[i + 2]] for i in range(6)])  # fmt: skip
    monkeypatch.setenv("RAYSTX_DATA_DIR", str(tmp_path))
    config = load_eval_config(REPO / "jobs" / "configs" / "eval.yaml")
    assert config.scaling.num_workers == 2
    evaluators = build_evaluators(config)
    assert [type(e).__name__ for e in evaluators] == [
        "EmbeddingSimilarityEvaluator",
        "BinaryClassificationEvaluator",
        "TripletEvaluator",
    ]
    assert evaluators[0].scores[0] == pytest.approx(0.5)
