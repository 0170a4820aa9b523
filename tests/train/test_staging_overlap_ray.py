"""A large CSV is staged while the 2 workers start (``raystx.data.background``, ``raystx.train.staged_wait``).

* The overlapped run trains on exactly the data plan of the sequential one (``RAYSTX_STAGE_BEFORE_START=1``):
  same staged files and row groups, same weights (1e-6), same history.
* A bad row after the driver's sample (the first rows) fails the run with the error the up-front path raises,
  naming the file and line (a malformed row) or the column and row (a NaN score found by the every-row
  check on the workers), and leaves nothing behind: no staged data, no checkpoint, no run folder.

"Large" is made small here: the size threshold and the sample are patched on the driver (the test process),
the only place they are read.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import make_sentences

pytestmark = pytest.mark.ray

ROWS = 1200
SAMPLE = 64
# The driver parses the first block of a CSV (pyarrow's 1 MiB, as Ray Data does) for its sample: a bad row
# inside it fails on the driver at once. These rows put the bad one well past it (~60 bytes a row).
LONG_ROWS = 30_000
BAD_LINE = 25_000


def _write_csv(path: Path, rows: int = ROWS, bad_line: int | None = None, bad: str = "") -> Path:
    """``anchor,positive,score`` rows; line ``bad_line`` (1-based, the header is line 1) replaced by ``bad``."""
    anchors, positives = make_sentences(rows, 11), make_sentences(rows, 12)
    lines = ["anchor,positive,score"]
    lines += [f"{a},{p},{(i % 10) / 10:.1f}" for i, (a, p) in enumerate(zip(anchors, positives))]
    if bad_line is not None:
        lines[bad_line - 1] = bad
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def overlap_small(monkeypatch):
    """Every CSV counts as large and the driver checks its first SAMPLE rows only."""
    import raystx.data.background as background

    monkeypatch.setattr(background, "OVERLAP_MIN_BYTES", 0)
    monkeypatch.setattr(background, "SAMPLE_ROWS", SAMPLE)
    monkeypatch.delenv(background.STAGE_BEFORE_START_ENV, raising=False)


def _trainer(model, data: Path, out: Path, **args):
    from ray.train import ScalingConfig

    from raystx.losses import CoSENTLoss
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.trainer import SentenceTransformerTrainer

    defaults = dict(
        output_dir=str(out),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        seed=3,
        shuffle_window=2,  # the plan depends on the staged row groups: they must match too
        disable_tqdm=True,
        keep_staged_data=True,
    )
    defaults.update(args)
    return SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(**defaults),
        train_dataset=str(data),
        loss=CoSENTLoss(model),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    )


def _staged_layout(out: Path) -> list[list[int]]:
    """Rows of every row group of each staged file, in the order the source lists them (names carry a uuid)."""
    import pyarrow.parquet as pq

    from raystx.data.readers import list_parquet_files

    files = list_parquet_files(str(out / ".raystx-data" / "train"))
    return [
        [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        for meta in (pq.ParquetFile(f).metadata for f in files)
    ]


def test_overlapped_staging_trains_exactly_like_staging_first(
    ray_session, tiny_bert_dir, tmp_path, monkeypatch, overlap_small
):
    from raystx.data.background import STAGE_BEFORE_START_ENV
    from raystx.models import SentenceTransformer

    data = _write_csv(tmp_path / "pairs.csv")
    base = SentenceTransformer(str(tiny_bert_dir))

    monkeypatch.setenv(STAGE_BEFORE_START_ENV, "1")
    first = copy.deepcopy(base)
    sequential = _trainer(first, data, tmp_path / "sequential")
    seq_out = sequential.train()
    assert not sequential._staging.refs  # staged on the driver before the workers started

    monkeypatch.delenv(STAGE_BEFORE_START_ENV)
    second = copy.deepcopy(base)
    overlapped = _trainer(second, data, tmp_path / "overlapped")
    lap_out = overlapped.train()
    assert list(overlapped._staging.refs) == ["train"]  # staged by a Ray task while the workers started

    assert _staged_layout(tmp_path / "overlapped") == _staged_layout(tmp_path / "sequential")
    assert len(_staged_layout(tmp_path / "overlapped")) >= 1
    state_a, state_b = first.state_dict(), second.state_dict()
    assert max((state_a[k] - state_b[k]).abs().max().item() for k in state_a) < 1e-6
    assert max((state_a[k] - base.state_dict()[k]).abs().max().item() for k in state_a) > 1e-4  # it trained
    assert lap_out.global_step == seq_out.global_step == 4
    losses = [h["loss"] for h in lap_out.log_history if "loss" in h]
    assert losses == pytest.approx([h["loss"] for h in seq_out.log_history if "loss" in h], abs=1e-6)
    # the driver's sources are the full ones again after the run: the model card counts every row
    (dataset,) = second.model_card_data.trainer_info.datasets
    assert dataset.size == ROWS
    torch.testing.assert_close(
        torch.as_tensor(first.encode(["a b c"])), torch.as_tensor(second.encode(["a b c"])), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize(
    "bad, error, expected",
    [
        # a malformed row (4 fields, not 3) far past the sample: found by the staging pass (pyarrow + diagnosis)
        ("x,y,0.5,extra", "DatasetReadError", ["pairs.csv", f"line {BAD_LINE}", "expected 3 fields"]),
        # an infinite score past the sample: found by the every-row check on the workers
        pytest.param(  # CI budget: the malformed row above runs the same failure path in CI
            "x,y,inf",
            "DatasetValidationError",
            ["'score'", f"row {BAD_LINE - 2}", "NaN or inf", "CoSENTLoss"],
            marks=pytest.mark.slow,
        ),
    ],
    ids=["malformed-row", "infinite-score"],
)
def test_a_bad_row_after_the_sample_fails_the_run_and_leaves_nothing(
    ray_session, tiny_bert_dir, tmp_path, overlap_small, bad, error, expected
):
    from raystx.data.errors import DatasetValidationError
    from raystx.models import SentenceTransformer

    data = _write_csv(tmp_path / "pairs.csv", LONG_ROWS, bad_line=BAD_LINE, bad=bad)
    assert data.stat().st_size > 1.2 * 2**20
    out = tmp_path / "run"
    trainer = _trainer(
        SentenceTransformer(str(tiny_bert_dir)), data, out, save_strategy="steps", save_steps=1
    )
    with pytest.raises(DatasetValidationError) as info:
        trainer.train()
    assert type(info.value).__name__ == error
    message = str(info.value)
    for part in expected:
        assert part in message, message
    assert "dataset 'train'" in message
    assert list(trainer._staging.refs) == ["train"]  # the bad row really was past the driver's check
    assert not out.exists(), f"left behind: {sorted(p.name for p in out.rglob('*'))}"
