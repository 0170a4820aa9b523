"""``WeightsOrigin`` (``raystx.models.weights_origin``): a model loaded from a directory is recognised as holding
that directory's weights until anything about its tensors or the directory's files changes; and
``fsdp_ship.full_model_reason`` ships the full model whenever that is not proven (no Ray needed: the node probe
is the last check and these cases stop before it)."""

from __future__ import annotations

import copy
import os
from types import SimpleNamespace

import pytest
import torch

from raystx.models import Dense, SentenceTransformer
from raystx.models.weights_origin import origin_of
from raystx.train.fsdp_ship import full_model_reason


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory, tiny_bert_dir):
    out = tmp_path_factory.mktemp("st") / "model"
    SentenceTransformer(str(tiny_bert_dir), device="cpu").save(str(out))
    return out


def _loaded(st_dir):
    model = SentenceTransformer(str(st_dir), device="cpu")
    origin = origin_of(model)
    assert origin is not None and origin.directory == str(st_dir.absolute())
    return model, origin


def test_a_freshly_loaded_model_holds_its_directorys_weights(st_dir):
    model, origin = _loaded(st_dir)
    assert origin.unchanged_reason(model) is None
    model.encode(["a text"])  # inference changes nothing
    assert origin.unchanged_reason(model) is None
    assert origin.loader_kwargs["trust_remote_code"] is False


def _bump_in_place(model):
    with torch.no_grad():
        next(iter(model.parameters())).mul_(1.0)  # same values, but an in-place write


def _replace_parameter(model):
    layer = model[0].auto_model.pooler.dense
    layer.weight = torch.nn.Parameter(layer.weight.detach().clone())


def _set_data(model):
    p = next(iter(model.parameters()))
    p.data = p.data.clone()


def _add_module(model):
    model.append(Dense(model.get_sentence_embedding_dimension(), 4))


def _half(model):
    model.half()


@pytest.mark.parametrize("change", [_bump_in_place, _replace_parameter, _set_data, _add_module, _half])
def test_any_change_to_the_tensors_after_loading_is_noticed(st_dir, change):
    model, origin = _loaded(st_dir)
    change(model)
    assert "changed, replaced, moved or added" in origin.unchanged_reason(model)


def test_a_copy_and_a_model_built_from_modules_are_not_taken_for_the_directory(st_dir):
    model, origin = _loaded(st_dir)
    copied = copy.deepcopy(model)
    assert origin_of(copied).unchanged_reason(copied) is not None
    built = SentenceTransformer(modules=list(model), device="cpu")
    assert origin_of(built) is None
    args = SimpleNamespace(fsdp=True)
    assert "not loaded from a saved directory" in full_model_reason(built, args)
    assert "fsdp is off" in full_model_reason(model, SimpleNamespace(fsdp=False))


def test_files_changed_on_disk_after_loading_are_noticed(tmp_path, st_dir):
    import shutil

    own = tmp_path / "model"
    shutil.copytree(st_dir, own)
    model, origin = _loaded(own)
    weights = own / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # saved over, say
    assert "files in" in origin.unchanged_reason(model)
    assert "files in" in full_model_reason(model, SimpleNamespace(fsdp=True))
    shutil.rmtree(own)
    assert "no longer exists" in origin.unchanged_reason(model)
