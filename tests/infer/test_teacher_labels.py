"""Teacher labels on 2 Ray actors equal the sentence-transformers loss-doc recipe computed here (1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from raystx.infer.teacher import teacher_embeddings, teacher_margins, teacher_scores
from raystx.models import SentenceTransformer
from raystx.testing import make_sentences


@pytest.fixture(scope="module")
def teacher(tiny_bert_dir) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_bert_dir), device="cpu")


@pytest.fixture(scope="module")
def triplets() -> Dataset:
    return Dataset.from_dict(
        {
            "query": make_sentences(45, seed=31),
            "positive": make_sentences(45, seed=32),
            "negative1": make_sentences(45, seed=33),
            "negative2": make_sentences(45, seed=34),
        }
    )


def pairwise(teacher: SentenceTransformer, a: list[str], b: list[str]) -> np.ndarray:
    return teacher.similarity_pairwise(teacher.encode(a), teacher.encode(b)).numpy()


@pytest.mark.slow  # CI runs the distillation example, which checks its labels to 1e-6
def test_labels_equal_the_in_process_recipe(ray_session, teacher, triplets, tmp_path):
    data = triplets.select(range(44, -1, -1))  # an indices mapping: labels follow the selected rows
    q, p, n1, n2 = (data[c] for c in ("query", "positive", "negative1", "negative2"))
    kw = {"num_workers": 2, "rows_per_block": 10, "batch_size": 4}

    mse = teacher_embeddings(data, teacher, "query", output_path=tmp_path / "mse.parquet", **kw)
    assert mse.column_names == [*data.column_names, "label"] and mse["query"] == q
    np.testing.assert_allclose(np.array(mse["label"]), teacher.encode(q), rtol=0, atol=1e-6)
    assert Dataset.from_parquet(str(tmp_path / "mse.parquet"))["label"] == mse["label"]

    margin = teacher_margins(data, teacher, "query", "positive", "negative1", **kw)
    expected = pairwise(teacher, q, p) - pairwise(teacher, q, n1)
    np.testing.assert_allclose(np.array(margin["label"]), expected, rtol=0, atol=1e-6)

    margins = teacher_margins(data, teacher, "query", "positive", ["negative1", "negative2"], **kw)
    expected = np.stack([pairwise(teacher, q, p) - pairwise(teacher, q, n) for n in (n1, n2)], axis=1)
    np.testing.assert_allclose(np.array(margins["label"]), expected, rtol=0, atol=1e-6)

    kl = teacher_scores(data, teacher, "query", ["positive", "negative1", "negative2"], **kw)
    expected = np.stack([pairwise(teacher, q, d) for d in (p, n1, n2)], axis=1)
    np.testing.assert_allclose(np.array(kl["label"]), expected, rtol=0, atol=1e-6)


def test_bad_columns_fail_before_ray_starts(teacher, triplets):
    with pytest.raises(ValueError, match=r"no column\(s\) \['passage'\].*its columns are"):
        teacher_margins(triplets, teacher, "query", "passage", "negative1")
    with pytest.raises(ValueError, match="already has a column 'query'"):
        teacher_embeddings(triplets, teacher, "positive", label_column="query")
    with pytest.raises(ValueError, match="at least one document column"):
        teacher_scores(triplets, teacher, "query", [])
