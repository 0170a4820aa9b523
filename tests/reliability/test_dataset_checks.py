"""Whole-dataset checks on the driver: bad rows anywhere in a dataset (not only in the 256-row sample) fail
fast, naming the dataset, column and row; out-of-range scores warn; the collator refuses non-strings."""

from __future__ import annotations

import math

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_sentences

from raystx.data.collate import BatchCollator
from raystx.data.errors import DatasetReadError, DatasetValidationError, DatasetWarning
from raystx.data.scan import scan_source
from raystx.data.sources import prepare_sources, validate_sources
from raystx.losses import AnglELoss, CoSENTLoss, CosineSimilarityLoss, SoftmaxLoss
from raystx.losses.base import ColumnContract, RaystxLoss
from raystx.losses.cosent import cosent_ranking_loss

pytest_plugins = ["bad_input_catalogue"]  # the `catalogue` fixture
AREA = "Datasets (checked on the driver over every row)"
N = 300
BAD_ROW = 194  # past the 192 head rows of the 256-row sample, and not in its random picks (asserted below)


class TeacherLoss(RaystxLoss):
    contract = ColumnContract(1, None, "vector")


def _pairs(n: int = N, **changes) -> dict:
    data = {"s1": make_sentences(n, 1), "s2": make_sentences(n, 2), "score": [0.5] * n}
    data.update(changes)
    return data


def _sources(data: dict, name: str = "sts"):
    return prepare_sources({name: datasets.Dataset.from_dict(data)}, staging_dir="/nonexistent")


def _validate(sources, loss, batch: int = 4):
    return lambda: validate_sources(sources, loss, global_batch_size=batch)


def _names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_the_bad_row_is_outside_the_validation_sample():
    from raystx.data.sources import sample_indices

    assert BAD_ROW not in sample_indices(N, 256, seed=0)


def test_none_text_outside_the_sample_fails_naming_the_row(catalogue):
    s1 = make_sentences(N, 1)
    s1[BAD_ROW] = None
    message = catalogue.raises(
        DatasetValidationError,
        _validate(_sources(_pairs(s1=s1)), CoSENTLoss),
        input=f"A None text at row {BAD_ROW} of {N} (outside the 256-row sample), CoSENTLoss",
    )
    _names(message, "'sts'", "'s1'", "None", f"row {BAD_ROW}", "1 row of 300", "CoSENTLoss", "filter")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_score_outside_the_sample_fails_naming_the_row(catalogue, bad):
    scores = [0.5] * N
    scores[BAD_ROW] = bad
    scores[250] = bad
    message = catalogue.raises(
        DatasetValidationError,
        _validate(_sources(_pairs(score=scores)), CoSENTLoss),
        input=f"A score of {bad} at rows {BAD_ROW} and 250 of {N}, CoSENTLoss",
    )
    _names(message, "'sts'", "'score'", f"row {BAD_ROW}", "2 rows of 300", "NaN or inf", "finite")


def test_none_score_outside_the_sample_fails(catalogue):
    scores: list = [0.5] * N
    scores[BAD_ROW] = None
    message = catalogue.raises(
        DatasetValidationError,
        _validate(_sources(_pairs(score=scores)), CosineSimilarityLoss),
        input=f"A None score at row {BAD_ROW} of {N}, CosineSimilarityLoss",
    )
    _names(message, "'sts'", "'score'", "None", f"row {BAD_ROW}", "CosineSimilarityLoss")


def test_fractional_class_id_outside_the_sample_fails(catalogue):
    labels = [float(i % 3) for i in range(N)]
    labels[BAD_ROW] = 1.5
    message = catalogue.raises(
        DatasetValidationError,
        _validate(
            _sources({"s1": make_sentences(N, 1), "s2": make_sentences(N, 2), "label": labels}), SoftmaxLoss
        ),
        input=f"A class id 1.5 at row {BAD_ROW} in a float label column, SoftmaxLoss",
    )
    _names(message, "'label'", "1.5", f"row {BAD_ROW}", "integer class id", "SoftmaxLoss")


def test_vector_labels_of_another_length_outside_the_sample_fail(catalogue):
    vectors = [[0.1, 0.2, 0.3]] * N
    vectors[BAD_ROW] = [0.1, 0.2]
    data = {"text": make_sentences(N), "label": vectors}
    message = catalogue.raises(
        DatasetValidationError,
        _validate(_sources(data, "distill"), TeacherLoss),
        input=f"A teacher vector of length 2 at row {BAD_ROW} among vectors of length 3",
    )
    _names(message, "'distill'", "'label'", f"row {BAD_ROW}", "different lengths", "3 and 2")


def test_nan_inside_a_vector_label_fails(catalogue):
    vectors = [[0.1, 0.2, 0.3] for _ in range(N)]
    vectors[BAD_ROW][1] = math.nan
    data = {"text": make_sentences(N), "label": vectors}
    message = catalogue.raises(
        DatasetValidationError,
        _validate(_sources(data, "distill"), TeacherLoss),
        input=f"A NaN inside the teacher vector at row {BAD_ROW}",
    )
    _names(message, "'label'", f"row {BAD_ROW}", "nan", "finite")


def test_cosine_similarity_loss_warns_for_0_to_5_scores(catalogue):
    scores = [i % 6 for i in range(N)]
    sources = _sources(_pairs(score=[float(s) for s in scores]))
    message = catalogue.warns(
        DatasetWarning,
        _validate(sources, CosineSimilarityLoss),
        input="STS scores 0-5 with CosineSimilarityLoss (it fits cosine similarities in [-1, 1])",
    )
    _names(message, "'sts'", "'score'", "[0, 5]", "CosineSimilarityLoss", "[-1, 1]", "divide the scores by 5")


def test_cosine_similarity_loss_warns_with_a_rescale_hint_for_other_ranges(catalogue):
    sources = _sources(_pairs(score=[float(i) for i in range(N)]))
    message = catalogue.warns(
        DatasetWarning,
        _validate(sources, CosineSimilarityLoss),
        input="Scores 0-299 with CosineSimilarityLoss",
    )
    _names(message, "[0, 299]", "rescale the scores into [-1, 1]", "divide by 299")


def test_scores_in_range_and_ranking_losses_do_not_warn(recwarn):
    in_range = _sources(_pairs(score=[(i % 21) / 10 - 1 for i in range(N)]))
    validate_sources(in_range, CosineSimilarityLoss, global_batch_size=4)
    zero_to_five = _sources(_pairs(score=[float(i % 6) for i in range(N)]))
    for loss in (CoSENTLoss, AnglELoss):
        validate_sources(zero_to_five, loss, global_batch_size=4)
    # A transformation may map cosines anywhere: no range is assumed then.
    custom = CosineSimilarityLoss(torch.nn.Identity(), cos_score_transformation=torch.nn.ReLU())
    validate_sources(zero_to_five, custom, global_batch_size=4)
    assert not [w for w in recwarn if issubclass(w.category, DatasetWarning)]


def test_cosent_only_uses_the_order_of_the_scores_so_0_to_5_needs_no_warning():
    scores = torch.randn(32, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 6, (32,), generator=torch.Generator().manual_seed(1)).float()
    assert torch.equal(cosent_ranking_loss(scores, labels), cosent_ranking_loss(scores, labels / 5))


def test_empty_strings_anywhere_warn_with_the_count(catalogue):
    s2 = make_sentences(N, 2)
    s2[BAD_ROW] = ""
    s2[299] = ""
    message = catalogue.warns(
        DatasetWarning,
        _validate(_sources(_pairs(s2=s2)), CoSENTLoss),
        input=f"Empty strings at rows {BAD_ROW} and 299",
    )
    _names(message, "'s2'", "empty strings", "2 of 300 rows", f"[{BAD_ROW}, 299]")


def test_scan_reads_every_row_of_staged_parquet_and_a_reordered_dataset(tmp_path):
    """The scan walks staged Parquet row group by row group and follows a Dataset's index mapping."""
    scores = [0.5] * 1000
    scores[777] = math.nan
    ds = datasets.Dataset.from_dict(_pairs(1000, score=scores))
    shuffled = ds.select(list(reversed(range(1000))))
    (source,) = _sources(shuffled.to_dict()).values()
    (reordered,) = prepare_sources({"r": shuffled}, staging_dir="/nonexistent").values()
    assert scan_source(reordered)["score"].first_nonfinite == 999 - 777
    assert scan_source(source)["score"].first_nonfinite == 999 - 777
    files = []
    for k in range(4):
        path = tmp_path / f"part-{k}.parquet"
        pq.write_table(pa.Table.from_pydict(ds[k * 250 : (k + 1) * 250]), path, row_group_size=100)
        files.append(str(path))
    staged = type(reordered)(
        name="p",
        input_columns=["s1", "s2"],
        label_column="score",
        num_rows=1000,
        staged_files=files,
        schema=pq.read_schema(files[0]),
    )
    stats = scan_source(staged)
    assert stats["score"].first_nonfinite == 777 and stats["score"].nonfinite == 1
    assert stats["s1"].rows == 1000 and stats["s1"].nulls == 0 and stats["s2"].empty_strings == 0
    # Text chunks are read only where their statistics show a null or an empty string; rows still count.
    texts = make_sentences(250, 9)
    texts[123], texts[200] = None, ""
    pq.write_table(pa.Table.from_pydict({**ds[750:1000], "s2": texts}), files[3], row_group_size=100)
    stats = scan_source(staged)
    assert (stats["s2"].first_null, stats["s2"].nulls) == (750 + 123, 1)
    assert (stats["s2"].empty_strings, stats["s2"].empty_rows) == (1, [950])
    assert stats["s1"].rows == stats["s2"].rows == 1000


def test_collator_refuses_none_instead_of_training_on_the_text_none(catalogue):
    collate = BatchCollator(
        tokenize=lambda texts: {"n": torch.tensor([len(t) for t in texts])},
        input_columns={"sts": ["s1", "s2"]},
        label_columns={"sts": "score"},
        label_kinds={"sts": "float"},
    )
    features, labels = collate("sts", {"s1": ["a", "b"], "s2": ["c", "d"], "score": [0.1, 0.2]})
    assert labels.tolist() == pytest.approx([0.1, 0.2])
    message = catalogue.raises(
        DatasetValidationError,
        lambda: collate("sts", {"s1": ["a", "b"], "s2": ["c", None], "score": [0.1, 0.2]}),
        input="A None text reaching the collator (a worker-side batch)",
    )
    _names(message, "'sts'", "'s2'", "None", "position 1", "string")
    message = catalogue.raises(
        DatasetValidationError,
        lambda: collate("sts", {"s1": [3, "b"], "s2": ["c", "d"], "score": [0.1, 0.2]}),
        input="An int text reaching the collator",
    )
    _names(message, "'s1'", "int 3", "position 0")


@pytest.mark.ray
def test_duplicate_parquet_column_names_name_the_file(catalogue, ray_session, tmp_path):
    table = pa.Table.from_arrays(
        [pa.array(["a", "b"]), pa.array(["c", "d"]), pa.array([0.5, 0.5])], names=["s1", "s1", "score"]
    )
    path = tmp_path / "dup.parquet"
    pq.write_table(table, path)
    catalogue.replace(str(tmp_path), "<tmp>")
    message = catalogue.raises(
        DatasetReadError,
        lambda: prepare_sources({"sts": str(path)}, staging_dir=str(tmp_path / "staged")),
        input="A Parquet file with the column name 's1' twice",
    )
    _names(message, "'sts'", str(path), "repeats column names ['s1']")
    assert not (tmp_path / "staged").exists()
