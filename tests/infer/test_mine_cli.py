"""``raystx mine CONFIG.yaml`` and ``jobs/mine.py`` end to end on a tiny local model and TSV files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from datasets import Dataset

from raystx.config import ConfigError
from raystx.infer.config import load_mine_config
from raystx.models import SentenceTransformer
from raystx.testing import unique_sentences
from raystx.util import mine_hard_negatives

REPO = Path(__file__).resolve().parents[2]


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def mine_setup(tmp_path: Path, tiny_bert_dir: Path) -> tuple[Path, Dataset, list[str]]:
    anchors, positives = unique_sentences(20, seed=11), unique_sentences(20, seed=12)
    passages = unique_sentences(40, seed=13)
    write_tsv(
        tmp_path / "pairs.tsv",
        ["source", "anchor", "positive"],
        [["x", a, p] for a, p in zip(anchors, positives)],
    )
    write_tsv(tmp_path / "passages.tsv", ["text"], [[p] for p in passages])
    config = tmp_path / "mine.yaml"
    config.write_text(
        f"""
model: {{name_or_path: {tiny_bert_dir}}}
data: {{path: pairs.tsv, columns: [anchor, positive]}}
corpus: {{path: passages.tsv, column: text}}
mine: {{num_negatives: 2, output_format: n-tuple, output_scores: true, verbose: false}}
scaling: {{num_workers: 2}}
output_path: ${{OUT_DIR}}/mined.parquet
""",
        encoding="utf-8",
    )
    return config, Dataset.from_dict({"anchor": anchors, "positive": positives}), passages


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_cli_mine_writes_what_the_function_returns(
    request, mine_setup, tiny_bert_dir, tmp_path, monkeypatch, workers
):
    """``raystx mine`` in this process (CI) and on 2 Ray workers (slow) writes the function's result."""
    from typer.testing import CliRunner

    from raystx.cli import app

    config, pairs, passages = mine_setup
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "out"))
    if workers:
        request.getfixturevalue("ray_session")
    result = CliRunner().invoke(app, ["mine", str(config), "--set", f"scaling.num_workers={workers}"])
    assert result.exit_code == 0, result.output
    mined = Dataset.from_parquet(str(tmp_path / "out" / "mined.parquet"))
    expected = mine_hard_negatives(
        pairs,
        SentenceTransformer(str(tiny_bert_dir), device="cpu"),
        corpus=passages,
        num_negatives=2,
        output_format="n-tuple",
        output_scores=True,
        num_workers=0,
        verbose=False,
    )
    assert mined.column_names == ["anchor", "positive", "negative_1", "negative_2", "scores"]
    assert len(mined) == 20
    for column in ("anchor", "positive", "negative_1", "negative_2"):
        assert mined[column] == expected[column]


def test_job_entry_point_runs_raystx_mine(mine_setup, tmp_path, monkeypatch):
    from jobs.launch import main

    config, _, _ = mine_setup
    monkeypatch.setenv("OUT_DIR", str(tmp_path / "job"))
    status = main(
        "mine", ["--config", str(config), "--set", "scaling.num_workers=0", "--set", "data.limit=5"]
    )
    assert status == 0
    assert len(Dataset.from_parquet(str(tmp_path / "job" / "mined.parquet"))) == 5


def test_mine_config_errors_name_the_key(mine_setup, tmp_path, monkeypatch):
    config, _, _ = mine_setup
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"mine\.num_negatvies: unknown key"):
        load_mine_config(config, ["mine.num_negatvies=3"])
    with pytest.raises(ConfigError, match=r"scaling\.num_workers"):
        load_mine_config(config, ["scaling.num_workers=-1"])


def test_shipped_mine_config_validates(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYSTX_DATA_DIR", str(tmp_path))
    config = load_mine_config(REPO / "jobs" / "configs" / "mine.yaml")
    assert config.data.path == f"{tmp_path}/nli/nli_entailment_pairs.tsv"
    assert config.scaling.num_workers == 2
    assert config.mine.output_format == "n-tuple"
