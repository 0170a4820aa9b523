"""No temporary folder outlives the run that made it: a 2-worker run on a real local Ray, successful or failing,
leaves nothing in the temp dir of the driver or of the workers (checkpoint copies, worker scratch, the pending
watchdog's marker); the old ``fit()`` API removes the output folder it made up.

The temp dir is redirected for the whole run: on the driver through ``tempfile.tempdir``, on the workers through
``TMPDIR`` in the run's ``worker_runtime_env`` (new worker processes, so their ``tempfile`` reads it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import datasets
import pytest
import ray.cloudpickle
from conftest import make_sentences

from raystx.losses import MultipleNegativesRankingLoss
from raystx.models import SentenceTransformer
from raystx.train.args import SentenceTransformerTrainingArguments
from raystx.train.trainer import SentenceTransformerTrainer

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


class FailingLoss(MultipleNegativesRankingLoss):
    """MNRL that raises on rank ``fail_rank``'s ``fail_call``-th forward. The other rank then waits in the
    gather of that step until Ray kills it: it never reaches its own clean-up."""

    def __init__(self, model, fail_rank: int, fail_call: int) -> None:
        super().__init__(model)
        self.fail_rank, self.fail_call, self.calls = fail_rank, fail_call, 0

    def forward(self, features, labels):
        from raystx.distributed import get_rank

        self.calls += 1
        if get_rank() == self.fail_rank and self.calls == self.fail_call:
            raise RuntimeError("loss failed on purpose")
        return super().forward(features, labels)


def _pairs() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"anchor": make_sentences(32, 1), "positive": make_sentences(32, 2)})


def _leftovers(temp: Path) -> list[str]:
    """raystx's entries in ``temp`` and Ray's checkpoint downloads (torch's own caches are not ours)."""
    return sorted(p.name for p in temp.iterdir() if p.name.startswith(("raystx-", "checkpoint_tmp_")))


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    """A fresh temp dir for the driver (``tempfile.tempdir``) and, through ``TMPDIR``, for the workers."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def _run(tiny_bert_dir: Path, tmp_path: Path, temp: Path, loss_factory, **args) -> SentenceTransformerTrainer:
    from ray.train import RunConfig, ScalingConfig

    model = SentenceTransformer(str(tiny_bert_dir))
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        save_steps=1,
        logging_steps=1,
        disable_tqdm=True,
    )
    defaults.update(args)
    return SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(**defaults),
        train_dataset=_pairs(),
        loss=loss_factory(model),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(
            storage_path=str(tmp_path / "storage"),
            name="run",
            worker_runtime_env={"env_vars": {"TMPDIR": str(temp)}},
        ),
    )


@pytest.mark.slow  # CI budget: the failing-rank run below checks the same temp dirs in CI
def test_a_run_with_checkpoints_leaves_nothing_in_the_temp_dir(
    ray_session, tiny_bert_dir, tmp_path, temp_dir
):
    trainer = _run(tiny_bert_dir, tmp_path, temp_dir, MultipleNegativesRankingLoss)
    trainer.train()
    assert (tmp_path / "storage" / "run" / "checkpoint-3").is_dir()
    assert _leftovers(temp_dir) == []


def test_a_run_failing_on_one_rank_leaves_nothing_in_the_temp_dir(
    ray_session, tiny_bert_dir, tmp_path, temp_dir
):
    trainer = _run(
        tiny_bert_dir, tmp_path, temp_dir, lambda model: FailingLoss(model, fail_rank=1, fail_call=2)
    )
    with pytest.raises(RuntimeError, match="loss failed on purpose"):
        trainer.train()
    assert (tmp_path / "storage" / "run" / "checkpoint-1").is_dir()  # step 1 saved before the failure
    assert _leftovers(temp_dir) == []


@pytest.mark.slow  # CI budget: fit()'s own folder is unit-tested in test_temp_cleanup.py; the Ray runs above stay
def test_old_fit_api_removes_the_output_folder_it_made_up(ray_session, tiny_bert_dir, tmp_path, temp_dir):
    """``fit()`` without ``checkpoint_path`` trains into a folder of the driver's temp dir; it is gone after."""
    from ray.train import ScalingConfig
    from torch.utils.data import DataLoader

    from raystx.data.input_example import InputExample
    from raystx.train.fit import fit

    model = SentenceTransformer(str(tiny_bert_dir))
    examples = [InputExample(texts=[a, p]) for a, p in zip(make_sentences(16, 1), make_sentences(16, 2))]
    fit(
        model,
        [(DataLoader(examples, batch_size=4), MultipleNegativesRankingLoss(model))],
        epochs=1,
        steps_per_epoch=2,
        warmup_steps=0,
        show_progress_bar=False,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    )
    assert _leftovers(temp_dir) == []
