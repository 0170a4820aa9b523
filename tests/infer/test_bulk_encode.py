"""``raystx encode`` / ``encode_to_parquet``: files or a Ray dataset in, Parquet embeddings out, on 2 actors.

Reference: the same model's ``encode`` in this process (1e-6). The output, read back as a directory, has the
input's rows in input order, ``id`` = row position.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from raystx.infer.bulk import encode_to_parquet
from raystx.models import SentenceTransformer
from raystx.testing import make_sentences


@pytest.fixture(scope="module")
def model(tiny_bert_dir) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_bert_dir), device="cpu")


def read_output(path: Path) -> pa.Table:
    return pq.read_table(str(path))  # the directory's files in sorted order


def test_cli_encodes_csv_files_on_two_workers_in_input_order(ray_session, model, tiny_bert_dir, tmp_path):
    from typer.testing import CliRunner

    from raystx.cli import app

    texts = make_sentences(150, seed=21)
    for i, part in enumerate((texts[:70], texts[70:])):  # two files: ids run across them in sorted order
        table = pa.table({"pid": [f"p{i}-{j}" for j in range(len(part))], "sentence": part})
        pacsv.write_csv(table, tmp_path / f"part-{i}.csv")
    out = tmp_path / "emb"
    result = CliRunner().invoke(
        app,
        [
            "encode", str(tiny_bert_dir), str(tmp_path / "part-*.csv"), "--output", str(out),
            "--text-column", "sentence", "--id-column", "pid", "--num-workers", "2", "--batch-size", "8",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary == {"rows": 150, "dim": 32, "output_path": str(out)}
    table = read_output(out)
    assert table.column_names == ["id", "pid", "embedding"]
    assert table.column("id").to_pylist() == list(range(150))
    assert table.column("pid").to_pylist() == [f"p0-{j}" for j in range(70)] + [f"p1-{j}" for j in range(80)]
    embeddings = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(embeddings, model.encode(texts, batch_size=8), rtol=0, atol=1e-6)


@pytest.mark.slow  # CI keeps the CLI run on two workers
def test_ray_dataset_in_with_query_role_and_normalization(ray_session, model, tmp_path):
    import ray.data

    model.prompts = {"query": "query: "}
    texts = make_sentences(90, seed=22)
    source = ray.data.from_items([{"body": t, "n": i} for i, t in enumerate(texts)], override_num_blocks=5)
    summary = encode_to_parquet(
        source, model, tmp_path / "q", text_column="body", role="query", normalize_embeddings=True,
        num_workers=2, rows_per_block=16,
    )  # fmt: skip
    assert summary["rows"] == 90
    table = read_output(tmp_path / "q")
    assert table.column_names == ["id", "embedding"]
    assert table.column("id").to_pylist() == list(range(90))
    expected = model.encode_query(texts, normalize_embeddings=True)
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()), expected, rtol=0, atol=1e-6)


def test_bad_input_fails_on_the_driver_naming_the_column(tmp_path, model):
    pacsv.write_csv(pa.table({"sentence": ["a b", "c d"]}), tmp_path / "in.csv")
    with pytest.raises(ValueError, match=r"no column\(s\) \['text'\]; its columns are \['sentence'\]"):
        encode_to_parquet(tmp_path / "in.csv", model, tmp_path / "out", num_workers=1)
    with pytest.raises(ValueError, match="role must be"):
        encode_to_parquet(tmp_path / "in.csv", model, tmp_path / "out", role="passage")
