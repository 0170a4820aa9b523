"""The config path with fsdp builds the driver's model without its weights (``build_trainer`` ->
``build_model(empty=True)`` -> ``raystx.models.transformer.empty_weights``): parameters on the meta device, no
weights file read, buffers real. It ships to FSDP workers as is when they can read the directory, gets its
weights from the directory when it must ship in full, takes the trained weights at the end, and the resume
check compares a checkpoint against its directory. A 2-worker Ray run through ``build_trainer`` ends with the
driver's model holding the same weights as the same run from a fully loaded model (1e-5)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray.cloudpickle
import torch
from conftest import make_sentences

from raystx.config import load_config
from raystx.models import SentenceTransformer

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory, tiny_bert_dir):
    out = tmp_path_factory.mktemp("empty") / "model"
    SentenceTransformer(str(tiny_bert_dir), device="cpu").save(str(out))
    return out


def _config(tmp_path: Path, model_dir: Path, fsdp: bool = True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "pairs.csv"
    rows = zip(make_sentences(32, 1), make_sentences(32, 2))
    data.write_text("anchor,positive\n" + "\n".join(f"{a},{b}" for a, b in rows))
    path = tmp_path / "config.yaml"
    path.write_text(
        f"model:\n  name_or_path: {model_dir}\n"
        f"train_data:\n  pairs:\n    path: {data}\n"
        "loss:\n  type: MultipleNegativesRankingLoss\n"
        f"args:\n  output_dir: {tmp_path / 'out'}\n  fsdp: {str(fsdp).lower()}\n  max_steps: 3\n"
        "  per_device_train_batch_size: 4\n  learning_rate: 0.001\n  logging_steps: 1\n  seed: 5\n"
        "  save_strategy: 'no'\n"
        "scaling:\n  num_workers: 2\n  resources_per_worker: {CPU: 1}\n"
    )
    return load_config(path)


def _no_weight_reads(monkeypatch) -> list[str]:
    import safetensors

    reads: list[str] = []
    original = safetensors.safe_open
    monkeypatch.setattr(
        safetensors, "safe_open", lambda path, *a, **k: reads.append(str(path)) or original(path, *a, **k)
    )
    import transformers.modeling_utils as mu

    monkeypatch.setattr(mu, "safe_open", safetensors.safe_open)
    return reads


def test_with_fsdp_the_config_model_is_built_without_reading_its_weights(tmp_path, st_dir, monkeypatch):
    from raystx.train.build import build_model

    reads = _no_weight_reads(monkeypatch)
    model = build_model(_config(tmp_path, st_dir), empty=True)
    assert reads == []
    assert all(p.is_meta for p in model.parameters())
    assert not any(b.is_meta for b in model.buffers())  # position_ids etc. are in no weights file
    assert model.tokenize(["a b"])["input_ids"].shape[0] == 1
    # without fsdp, or without empty=True (a sweep's driver evaluates a baseline), the weights are loaded
    assert not any(
        p.is_meta for p in build_model(_config(tmp_path, st_dir, fsdp=False), empty=True).parameters()
    )
    assert not any(p.is_meta for p in build_model(_config(tmp_path, st_dir)).parameters())


def test_an_empty_model_ships_as_is_or_reads_its_weights_when_it_must_ship_in_full(
    tmp_path, st_dir, monkeypatch
):
    from raystx.train import fsdp_ship
    from raystx.train.build import build_model

    loaded = SentenceTransformer(str(st_dir), device="cpu")
    args = SimpleNamespace(fsdp=True)
    model = build_model(_config(tmp_path, st_dir), empty=True)
    monkeypatch.setattr(fsdp_ship, "unreadable_reason", lambda *a: None)
    shipped = fsdp_ship.ship_model(model, {}, args)
    assert shipped.initial_weights == str(st_dir.absolute())
    assert all(p.is_meta for p in model.parameters())  # nothing was read on the driver

    monkeypatch.setattr(fsdp_ship, "unreadable_reason", lambda *a: "node x has no such directory")
    shipped = fsdp_ship.ship_model(model, {}, args)
    assert shipped.initial_weights is None and shipped.model is model
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    texts = make_sentences(4, 3)
    torch.testing.assert_close(model.encode(texts), loaded.encode(texts), rtol=0, atol=0)


def test_the_resume_check_compares_an_empty_model_through_its_directory(tmp_path, st_dir):
    from raystx.train.build import build_model
    from raystx.train.resume_check import IncompatibleCheckpointError, check_resume_compatible

    model = build_model(_config(tmp_path, st_dir), empty=True)
    checkpoint = tmp_path / "checkpoint-2"
    SentenceTransformer(str(st_dir), device="cpu").save(str(checkpoint / "model"), max_shard_size=20_000)
    check_resume_compatible(checkpoint, model, None)  # sharded files count as model.safetensors

    other = tmp_path / "other-bert"
    from raystx.testing import build_tiny_bert

    SentenceTransformer(str(build_tiny_bert(other, hidden=48)), device="cpu").save(
        str(tmp_path / "c3" / "model")
    )
    with pytest.raises(IncompatibleCheckpointError, match="differ in shape"):
        check_resume_compatible(tmp_path / "c3", model, None)


@pytest.mark.ray
@pytest.mark.slow  # CI keeps one 2-worker run of the weightless FSDP payload (test_fsdp_ship_ray.py)
def test_a_config_run_with_fsdp_trains_from_an_empty_driver_model(ray_session, tmp_path, st_dir, monkeypatch):
    from raystx.train import trainer as trainer_module
    from raystx.train.build import build_model, build_trainer

    shipped = []
    original = trainer_module.launch
    monkeypatch.setattr(
        trainer_module, "launch", lambda p, *a, **k: shipped.append(p) or original(p, *a, **k)
    )
    empty = build_trainer(_config(tmp_path / "a", st_dir))
    assert all(p.is_meta for p in empty.model.parameters())
    empty.train()
    assert shipped[-1].initial_weights == str(st_dir.absolute())

    config = _config(tmp_path / "b", st_dir)
    full = build_trainer(config, model=copy.deepcopy(build_model(config)))  # a copy: today's full payload
    full.train()
    assert shipped[-1].initial_weights is None
    assert not any(p.is_meta for p in empty.model.parameters())
    untrained = SentenceTransformer(str(st_dir), device="cpu").state_dict()
    assert max(float((empty.model.state_dict()[k] - v).abs().max()) for k, v in untrained.items()) > 1e-3
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(empty.model.state_dict()[key], value, rtol=0, atol=1e-5)
