"""The driver's temporary folders, without Ray: the pending watchdog's marker, the old ``fit()`` output folder,
an evaluation's storage and the download of a remote checkpoint are all gone when their step ends."""

from __future__ import annotations

import shutil
import tempfile
import types
from pathlib import Path

import datasets
import pytest
from conftest import make_sentences


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_the_pending_watchdog_marker_exists_only_while_watched(temp_dir):
    from raystx.train.pending import PendingWatchdog

    unbounded = PendingWatchdog(None, scaling=None)
    assert unbounded.marker is None and list(temp_dir.iterdir()) == []
    unbounded.callback.after_worker_group_start(None)  # nothing to mark
    unbounded.stop()

    bounded = PendingWatchdog(30.0, scaling=None)
    marker = Path(bounded.marker)
    assert marker.parent.parent == temp_dir
    bounded.callback.after_worker_group_start(None)
    assert marker.is_file()
    bounded.stop()
    assert list(temp_dir.iterdir()) == []


def test_prepare_fit_creates_no_folder(tiny_bert_dir, temp_dir):
    from torch.utils.data import DataLoader

    from raystx.data.input_example import InputExample
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.fit import prepare_fit

    model = SentenceTransformer(str(tiny_bert_dir))
    examples = [InputExample(texts=[a, p]) for a, p in zip(make_sentences(8, 1), make_sentences(8, 2))]
    plan = prepare_fit(model, [(DataLoader(examples, batch_size=4), MultipleNegativesRankingLoss(model))])
    assert plan.temporary_output_dir == plan.args.output_dir
    assert Path(plan.args.output_dir).parent == temp_dir and Path(plan.args.output_dir).name.startswith(
        "raystx-fit-"
    )
    assert list(temp_dir.iterdir()) == []  # made by fit() for its run only


@pytest.mark.parametrize("fails", [False, True])
def test_an_evaluation_removes_the_storage_it_made_up(temp_dir, monkeypatch, fails):
    import raystx.ray_init
    from raystx.evaljob import run

    seen: list[Path] = []

    def fake_fit(config, model, evaluators, storage):
        seen.append(Path(storage))
        (Path(storage) / "evaluate-1").mkdir()
        if fails:
            raise RuntimeError("worker failed")
        return [{"name": "dev"}], 1.0

    monkeypatch.setattr(raystx.ray_init, "ensure_ray", lambda *a, **k: None)
    monkeypatch.setattr(run, "_fit_on_ray", fake_fit)
    config = types.SimpleNamespace(storage_path=None)
    if fails:
        with pytest.raises(RuntimeError, match="worker failed"):
            run._on_ray(config, None, [])
    else:
        assert run._on_ray(config, None, []) == ([{"name": "dev"}], 1.0)
    assert seen and seen[0].parent == temp_dir and list(temp_dir.iterdir()) == []

    kept = temp_dir.parent / "user-storage"
    kept.mkdir()
    monkeypatch.setattr(run, "_fit_on_ray", lambda c, m, e, storage: ([], 0.0))
    run._on_ray(types.SimpleNamespace(storage_path=str(kept)), None, [])
    assert kept.is_dir()  # the user's own storage stays


class _RemoteCheckpoint:
    """A checkpoint on object storage (as Ray describes one): only ``to_directory`` reaches its files."""

    def __init__(self, local: Path, path: str) -> None:
        self.filesystem = types.SimpleNamespace(type_name="s3")
        self.path, self._local = path, local

    def to_directory(self, path: str | None = None) -> str:
        target = path or tempfile.mkdtemp(prefix="checkpoint_tmp_")
        shutil.copytree(self._local, target, dirs_exist_ok=True)
        return target


def test_collecting_a_remote_checkpoint_leaves_no_download(tmp_path, tiny_bert_dir, temp_dir, monkeypatch):
    from raystx.data.sources import prepare_sources
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.driver import BestCheckpoint, collect
    from raystx.train.runtime import LocalRuntime
    from raystx.train.worker import WorkerPayload, train_worker

    model = SentenceTransformer(str(tiny_bert_dir))
    data = datasets.Dataset.from_dict({"anchor": make_sentences(8, 1), "positive": make_sentences(8, 2)})
    out = tmp_path / "out"
    payload = WorkerPayload(
        model=model,
        losses={"train": MultipleNegativesRankingLoss(model)},
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out), max_steps=1, per_device_train_batch_size=4
        ),
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        run_dir=str(out),
    )
    train_worker(payload, LocalRuntime(out))
    checkpoint = _RemoteCheckpoint(out / "checkpoint-1", "bucket/runs/out/checkpoint-1")
    result = types.SimpleNamespace(checkpoint=checkpoint, metrics={"step": 1})
    fresh = SentenceTransformer(str(tiny_bert_dir))
    output = collect(result, fresh, {"train": MultipleNegativesRankingLoss(fresh)}, BestCheckpoint())
    assert output.global_step == 1 and output.world_size == 1
    assert output.checkpoint_path == "s3://bucket/runs/out/checkpoint-1"  # where it is, not a deleted copy
    for key, value in model.state_dict().items():
        assert fresh.state_dict()[key].equal(value)
    assert list(temp_dir.iterdir()) == []
