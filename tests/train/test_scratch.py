"""Temporary folders owned by a process (``raystx.train.scratch``): those of processes that no longer run are
removed, those of live processes never, and a runtime's checkpoint copies go with ``close()``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from raystx.train import scratch
from raystx.train.runtime import LocalRuntime


def _folder_of_an_exited_process(temp: Path, run: str | None = None) -> Path:
    """A folder made by ``owned_temp_dir`` in a child process that has exited since."""
    code = (
        "import sys; from raystx.train.scratch import owned_temp_dir; "
        "print(owned_temp_dir('worker', run=sys.argv[2] or None, temp_dir=sys.argv[1]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(temp), run or ""], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def _fake_owner(temp: Path, pid: int, **owner) -> Path:
    folder = temp / f"raystx-worker-{pid}-fake{len(list(temp.iterdir()))}"
    folder.mkdir()
    owner = {"host": socket.gethostname(), "pid": pid, "started": scratch._process_start(pid), **owner}
    (folder / scratch.OWNER_FILE).write_text(json.dumps(owner))
    return folder


def test_owned_temp_dir_names_its_process_and_records_the_owner(tmp_path):
    folder = scratch.owned_temp_dir("worker", run="r1", temp_dir=tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith(f"raystx-worker-{os.getpid()}-")
    owner = json.loads((folder / scratch.OWNER_FILE).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner["run"] == "r1"
    assert owner["started"]  # this process's start time (Linux /proc)
    with pytest.raises(ValueError, match="lowercase letters"):
        scratch.owned_temp_dir("Worker-1", temp_dir=tmp_path)


def test_the_folder_of_a_process_that_exited_is_removed_and_a_live_ones_kept(tmp_path):
    dead = _folder_of_an_exited_process(tmp_path)
    (dead / "checkpoint-0-x").mkdir()
    (dead / "checkpoint-0-x" / "model.safetensors").write_bytes(b"0" * 1000)
    mine = scratch.owned_temp_dir("worker", temp_dir=tmp_path)
    assert scratch.remove_abandoned(tmp_path) == [dead]
    assert not dead.exists() and mine.is_dir()


def test_live_other_hosts_ownerless_and_foreign_folders_are_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _fake_owner(tmp_path, sleeper.pid)
        reused = _fake_owner(tmp_path, sleeper.pid, started="1")  # the pid now names a later process
        other_host = _fake_owner(tmp_path, 2**22 + 7, host="another-machine")  # pid that cannot run here
        ownerless = tmp_path / "raystx-worker-999999-abc"
        ownerless.mkdir()
        foreign = tmp_path / "raystx-worker-notapid"
        foreign.mkdir()
        assert scratch.remove_abandoned(tmp_path) == [reused]
        assert live.is_dir() and other_host.is_dir() and ownerless.is_dir() and foreign.is_dir()
        sleeper.kill()
        deadline = time.monotonic() + 10  # killed, not reaped yet (a zombie): that counts as gone
        while scratch._process_start(sleeper.pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scratch.remove_abandoned(tmp_path) == [live]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_remove_run_folders_takes_only_the_runs_folders(tmp_path):
    ours = _folder_of_an_exited_process(tmp_path, run="run-a")
    theirs = _folder_of_an_exited_process(tmp_path, run="run-b")
    mine = scratch.owned_temp_dir("worker", run="run-a", temp_dir=tmp_path)  # still running: waited for
    assert set(scratch.run_folders("run-a", tmp_path)) == {ours, mine}
    assert scratch.remove_run_folders("run-a", wait_s=0.3, temp_dir=tmp_path) == 1  # mine is left
    assert not ours.exists() and theirs.is_dir() and mine.is_dir()


class _FailingReport(LocalRuntime):
    """Fails in the report of the first checkpoint, before persisting it (a storage error, say)."""

    def report(self, metrics, checkpoint_dir, checkpoint_name):
        if checkpoint_dir is not None:
            raise OSError("storage unavailable")
        super().report(metrics, checkpoint_dir, checkpoint_name)


def _payload(tmp_path: Path, model_dir: Path):
    import datasets
    from conftest import make_sentences

    from raystx.data.sources import prepare_sources
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.worker import WorkerPayload

    model = SentenceTransformer(str(model_dir))
    data = datasets.Dataset.from_dict({"anchor": make_sentences(16, 1), "positive": make_sentences(16, 2)})
    return WorkerPayload(
        model=model,
        losses={"train": MultipleNegativesRankingLoss(model)},
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, save_steps=1
        ),
        sources=prepare_sources(data, staging_dir=str(tmp_path / "stage")),
        label_kinds={"train": "none"},
        run_dir=str(tmp_path / "out"),
    )


def test_a_checkpoint_copy_is_removed_when_the_run_fails_before_persisting_it(
    tmp_path, tiny_bert_dir, monkeypatch
):
    from raystx.train.worker import train_worker

    temp = tmp_path / "tmp"
    temp.mkdir()
    payload = _payload(tmp_path, tiny_bert_dir)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(OSError, match="storage unavailable"):
        train_worker(payload, _FailingReport(tmp_path / "out"))
    assert list(temp.iterdir()) == []  # the step-1 checkpoint copy went with the runtime's scratch


def test_a_loop_run_without_close_leaves_no_empty_scratch(tmp_path, tiny_bert_dir, monkeypatch):
    from raystx.train.worker import build_loop

    temp = tmp_path / "tmp"
    temp.mkdir()
    payload = _payload(tmp_path, tiny_bert_dir)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    runtime = LocalRuntime(tmp_path / "out")
    assert build_loop(payload, runtime).run()["global_step"] == 2
    assert [p.name for p in runtime.checkpoints] == ["checkpoint-1", "checkpoint-2"]
    assert list(temp.iterdir()) == []


def test_runtime_checkpoint_dirs_live_under_its_scratch_and_go_with_close(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    runtime = LocalRuntime(tmp_path / "out")
    first, second = runtime.checkpoint_dir(), runtime.checkpoint_dir()
    assert first != second and first.parent == second.parent == runtime.scratch_root()
    assert runtime.scratch_root().parent == tmp_path
    runtime.close()
    assert list(tmp_path.iterdir()) == []
    runtime.close()  # twice is fine
