"""The workers' pre-import hook: which modules it names, that it keeps a user's hook, that it imports them."""

from __future__ import annotations

import sys

import pytest

from raystx.train import preimport


def test_payload_modules_name_the_classes_unpickling_the_model_needs(tmp_path):
    from raystx import SentenceTransformer
    from raystx.losses import CoSENTLoss
    from raystx.testing import build_tiny_bert

    model = SentenceTransformer(str(build_tiny_bert(tmp_path / "bert")), device="cpu")
    names = preimport.payload_modules(model, CoSENTLoss(model))
    assert "transformers.models.bert.modeling_bert" in names  # the HF backbone's classes
    assert "raystx.models.pooling" in names and "raystx.losses.cosent" in names
    assert names[: len(preimport.BASE)] == list(preimport.BASE)
    assert len(names) == len(set(names))


def test_worker_runtime_env_adds_the_hook_and_keeps_the_users_settings():
    env = preimport.worker_runtime_env(["json"], {"env_vars": {"A": "1"}, "pip": ["x"]})
    assert env == {
        "env_vars": {"A": "1", preimport.ENV: "json", preimport.RAY_HOOK_ENV: preimport.HOOK},
        "pip": ["x"],
    }
    assert preimport.worker_runtime_env(["json", "os"], None)["env_vars"] == {
        preimport.ENV: "json,os",
        preimport.RAY_HOOK_ENV: preimport.HOOK,
    }


@pytest.mark.parametrize("value", ["1", "true"])
def test_the_driver_can_turn_the_hook_off(monkeypatch, value):
    monkeypatch.setenv(preimport.DISABLE_ENV, value)
    assert preimport.worker_runtime_env(["json"], {"env_vars": {"A": "1"}}) == {"env_vars": {"A": "1"}}
    monkeypatch.setenv(preimport.DISABLE_ENV, "0")
    assert preimport.ENV in preimport.worker_runtime_env(["json"], None)["env_vars"]


def test_the_name_of_rays_reserved_hook_variable_is_rays():
    from ray._private import ray_constants

    assert preimport.RAY_HOOK_ENV == ray_constants.WORKER_PROCESS_SETUP_HOOK_ENV_VAR


@pytest.mark.parametrize(
    "user, job",
    [
        ({"worker_process_setup_hook": "mine.setup", "env_vars": {"A": "1"}}, None),
        ({"env_vars": {"A": "1"}}, {"worker_process_setup_hook": "mine.setup"}),
        ({"env_vars": {"A": "1"}}, {"env_vars": {preimport.RAY_HOOK_ENV: "mine.setup"}}),
    ],
)
def test_a_users_own_setup_hook_is_left_alone(user, job):
    assert preimport.worker_runtime_env(["json"], user, job) == user


def test_start_imports_the_named_modules_in_the_background(monkeypatch):
    for name in ("colorsys", "this_module_does_not_exist_xyz"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setenv(preimport.ENV, "this_module_does_not_exist_xyz,colorsys")
    worker = preimport.start()
    worker.join(timeout=30)
    assert "colorsys" in sys.modules  # a missing module is skipped, the next still imported


@pytest.mark.parametrize("value", ["", ","])
def test_start_without_modules_starts_no_thread(monkeypatch, value):
    monkeypatch.setenv(preimport.ENV, value)
    assert preimport.start() is None


@pytest.mark.ray
@pytest.mark.slow  # every Ray run in CI goes through the hook; this one asserts it ran
def test_ray_workers_run_the_hook_with_the_models_modules(ray_session, tiny_bert_dir, tmp_path):
    import json

    import datasets
    from conftest import make_sentences
    from ray.train import ScalingConfig

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.losses import MultipleNegativesRankingLoss
    from raystx.train.callbacks import TrainerCallback

    report = tmp_path / "hook.json"

    class HookProbe(TrainerCallback):  # runs on the rank-0 worker
        def on_train_begin(self, args, state, control, **kwargs):
            import torch

            from raystx.train import preimport as worker_side

            report.write_text(
                json.dumps({"modules": worker_side.started, "threads": torch.get_num_threads()})
            )

    model = SentenceTransformer(str(tiny_bert_dir))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=4, save_strategy="no"
        ),
        train_dataset=datasets.Dataset.from_dict(
            {"anchor": make_sentences(8, 0), "positive": make_sentences(8, 1)}
        ),
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[HookProbe()],
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    )
    trainer.train()
    probe = json.loads(report.read_text())
    started = probe["modules"]
    # torch was imported by the hook before Ray exported OMP_NUM_THREADS: the worker still runs on its CPU share
    assert probe["threads"] == 1
    assert (
        "transformers.models.bert.modeling_bert" in started
        and "raystx.losses.multiple_negatives_ranking" in started
    )
