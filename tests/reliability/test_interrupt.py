"""Nothing hangs, and a stopped run can be resumed (issue 19): workers that cannot be placed stop the run after
``max_pending_s``; SIGTERM to ``raystx train`` stops the workers, keeps the checkpoints, exits 143 with a resume
hint, and ``--resume`` then finishes with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import make_sentences

pytest_plugins = ["bad_input_catalogue"]  # the `catalogue` fixture
AREA = "Runs that cannot start or are stopped"

ROOT = Path(__file__).resolve().parents[2]


RAY_HELPERS = ("PlacementGroupCleaner", "_AutoscalingCoordinatorActor")


def _alive_actors() -> set[str]:
    """Live actors, except Ray's own helpers: Ray Data's process-wide autoscaling coordinator (created by the
    first Ray Data job of the session, kept for the next) and Ray Train's PlacementGroupCleaner (it watches the
    controller through the state API, which fails on a machine running several Ray instances, as tests do)."""
    from ray._private.state import actors

    return {
        f"{a.get('ActorClassName', '?')}:{aid}"
        for aid, a in actors().items()
        if a["State"] != "DEAD" and not any(h in str(a.get("ActorClassName", "")) for h in RAY_HELPERS)
    }


def _live_groups() -> set[str]:
    import ray

    return {pid for pid, g in ray.util.placement_group_table().items() if g["state"] != "REMOVED"}


def _settled(probe, expected, timeout_s: float = 20.0):
    """``probe()`` once it equals ``expected`` (Ray frees actors and groups asynchronously), else its last value."""
    deadline = time.monotonic() + timeout_s
    value = probe()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        value = probe()
    return value


@pytest.mark.ray
def test_workers_that_cannot_be_placed_stop_the_run_after_max_pending_s(
    catalogue, ray_session, tiny_bert_dir, tmp_path
):
    import datasets
    import ray
    from ray.train import ScalingConfig

    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.models import SentenceTransformer
    from raystx.train.args import SentenceTransformerTrainingArguments
    from raystx.train.pending import WorkersPendingError
    from raystx.train.trainer import SentenceTransformerTrainer

    @ray.remote(num_cpus=1)
    class Holder:  # another job holding one of the cluster's 4 CPUs
        def ready(self) -> bool:
            return True

    groups, actors = _live_groups(), _alive_actors()
    holder = Holder.remote()
    ray.get(holder.ready.remote())
    model = SentenceTransformer(str(tiny_bert_dir))
    out = tmp_path / "run"
    data = datasets.Dataset.from_dict({"anchor": make_sentences(16, 1), "positive": make_sentences(16, 2)})
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(out),
            max_steps=2,
            per_device_train_batch_size=4,
            max_pending_s=5,
            disable_tqdm=True,
        ),
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        scaling_config=ScalingConfig(
            num_workers=2, resources_per_worker={"CPU": 2}
        ),  # 4 CPUs: fits, not free
    )
    try:
        message = catalogue.raises(
            WorkersPendingError,
            trainer.train,
            input="2 workers x 2 CPUs on a 4-CPU cluster while another actor holds 1 CPU, max_pending_s=5",
        )
    finally:
        ray.kill(holder)
    assert "max_pending_s=5 s" in message and "num_workers=2" in message and "CPU: 3" in message
    assert "raise max_pending_s" in message
    assert _settled(_live_groups, groups) == groups, "a placement group was left behind"
    assert _settled(_alive_actors, actors) == actors, "actors were left behind"
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"


# ------------------------------------------------------------------------------------------------ SIGTERM
def _config(tmp_path: Path, model_dir: Path, out: Path, max_steps: int) -> Path:
    pairs = tmp_path / "pairs.csv"
    rows = ["anchor,positive", *(f"{a},{p}" for a, p in zip(make_sentences(64, 1), make_sentences(64, 2)))]
    pairs.write_text("\n".join(rows) + "\n", encoding="utf-8")
    raw = {
        "model": {"name_or_path": str(model_dir), "max_seq_length": 16},
        "train_data": {"pairs": {"path": str(pairs)}},
        "loss": {"type": "MultipleNegativesRankingLoss"},
        "args": {
            "output_dir": str(out),
            "max_steps": max_steps,
            "per_device_train_batch_size": 4,
            "logging_steps": 1,
            "save_steps": 2,
            "learning_rate": 1e-3,
            "seed": 3,
            "disable_tqdm": True,
        },
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}},
        "save_model_to": str(out / "final"),
    }
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _raystx(*argv: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_ADDRESS="local")
    return subprocess.Popen(
        [sys.executable, "-c", "from raystx.cli import main; main()", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sigterm_after_first_checkpoint(config: Path, out: Path) -> tuple[int, str]:
    proc = _raystx("train", str(config))
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the driver did not exit within 120 s of SIGTERM") from None
    return proc.returncode, stderr


def test_sigterm_stops_the_run_with_exit_143_and_a_resume_hint(tiny_bert_dir, tmp_path):
    out = tmp_path / "stopped"
    code, stderr = _sigterm_after_first_checkpoint(_config(tmp_path, tiny_bert_dir, out, 400), out)
    assert code == 143, stderr[-3000:]
    assert "training stopped by SIGTERM" in stderr and "raystx train CONFIG --resume" in stderr
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()  # the checkpoints are kept
    assert not (out / ".raystx-run.lock").exists()  # the folder's lock was released


@pytest.mark.slow
def test_resume_after_sigterm_ends_with_the_weights_of_an_uninterrupted_run(tiny_bert_dir, tmp_path):
    from safetensors.torch import load_file

    steps = 24
    stopped = tmp_path / "stopped"
    config = _config(tmp_path, tiny_bert_dir, stopped, steps)
    code, stderr = _sigterm_after_first_checkpoint(config, stopped)
    assert code == 143, stderr[-3000:]
    resumed = _raystx("train", str(config), "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]

    straight = tmp_path / "straight"
    run = _raystx("train", str(_config(tmp_path, tiny_bert_dir, straight, steps)))
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]

    a = load_file(str(next((stopped / "final").rglob("model.safetensors"))))
    b = load_file(str(next((straight / "final").rglob("model.safetensors"))))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-6, key
