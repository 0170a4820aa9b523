"""Sharded safetensors export: ``model.save(max_shard_size=...)`` and the FSDP run's ``model/`` export, streamed
from the shards (``raystx.train.fsdp_export``) on 2 gloo processes without Ray. Both write the Hugging Face
sharded layout (the same files, index and tensors as transformers' ``save_pretrained`` with that shard size),
and the directory loads in ``sentence_transformers.SentenceTransformer`` (the oracle) and in raystx with the
model's embeddings (1e-6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_sentences
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))

from dist_harness import run_distributed  # noqa: E402

TEXTS = make_sentences(6, seed=9)
SHARD = 20_000  # bytes: the tiny BERT (~91 KB of weights, largest tensor 16 KB) takes several files
INDEX = "model.safetensors.index.json"


def _model(model_dir: str):
    from raystx.models import Dense, Pooling, SentenceTransformer, Transformer

    torch.manual_seed(0)
    word = Transformer(model_dir)
    dim = word.get_word_embedding_dimension()
    return SentenceTransformer(modules=[word, Pooling(dim, "mean"), Dense(dim, 16)], device="cpu")


def _layout(folder: Path) -> tuple[list[str], dict]:
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    index = json.loads((folder / INDEX).read_text()) if (folder / INDEX).is_file() else {}
    return files, index


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("model*.safetensors")):
        out.update(load_file(str(file)))
    return out


def _check_loads_and_encodes_like(directory: Path, model) -> None:
    from sentence_transformers import SentenceTransformer as Oracle

    from raystx.models import SentenceTransformer

    expected = model.encode(TEXTS, convert_to_tensor=True)
    oracle = Oracle(str(directory), device="cpu").encode(TEXTS, convert_to_tensor=True)
    ours = SentenceTransformer(str(directory), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(oracle, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_save_with_a_small_max_shard_size_writes_the_hugging_face_sharded_layout(tmp_path, tiny_bert_dir):
    model = _model(str(tiny_bert_dir))
    model.save(str(tmp_path / "sharded"), max_shard_size=SHARD)
    files, index = _layout(tmp_path / "sharded")
    assert len(files) >= 4 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert set(index["weight_map"].values()) == set(files)
    assert all((tmp_path / "sharded" / f).stat().st_size <= SHARD + 1024 for f in files[:-1])
    _check_loads_and_encodes_like(tmp_path / "sharded", model)

    model.save(str(tmp_path / "single"))  # transformers' default shard size: one file
    assert _layout(tmp_path / "single") == (["model.safetensors"], {})


def _export_rank(rank: int, world_size: int, model_dir: str, out: str, size: int) -> dict:
    from raystx.train.fsdp_options import FsdpOptions
    from raystx.train.strategy_fsdp import FsdpStrategy

    model = _model(model_dir)
    with torch.no_grad():  # weights no saved file has: the export can only get them from the shards
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    expected = model.encode(TEXTS, convert_to_tensor=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    strategy = FsdpStrategy(model, {}, FsdpOptions(max_shard_size=size), torch.device("cpu"), rank)
    strategy.full_state_dict = lambda: (_ for _ in ()).throw(AssertionError("the full state was gathered"))
    strategy.export(Path(out))
    return {"expected": expected, "state": state}


def test_the_fsdp_export_streams_the_same_sharded_layout_and_weights(tmp_path, tiny_bert_dir):
    from raystx.models import SentenceTransformer

    out = tmp_path / "export"
    results = run_distributed(
        _export_rank, world_size=2, args=(str(tiny_bert_dir), str(out), SHARD), timeout=300
    )
    state, expected = results[0]["state"], results[0]["expected"]

    # transformers' own sharded save of the same weights: the reference layout
    reference = _model(str(tiny_bert_dir))
    reference.load_state_dict(state)
    reference[0].auto_model.save_pretrained(str(tmp_path / "hf"), max_shard_size=SHARD)
    files, index = _layout(out)
    assert len(files) >= 4
    assert (files, index) == _layout(tmp_path / "hf")
    hf = _tensors(tmp_path / "hf")
    ours = _tensors(out)
    assert sorted(ours) == sorted(hf)
    for name, value in hf.items():
        torch.testing.assert_close(ours[name], value, rtol=0, atol=0)
    assert (out / "modules.json").is_file() and (out / "2_Dense").is_dir()

    torch.testing.assert_close(reference.encode(TEXTS, convert_to_tensor=True), expected, rtol=0, atol=1e-6)
    _check_loads_and_encodes_like(out, reference)
    loaded = SentenceTransformer(str(out), device="cpu")
    for key, value in state.items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("size", ["big", 0, -5, True])
def test_a_bad_max_shard_size_is_refused_naming_the_key(size):
    from raystx.train.fsdp_options import parse_fsdp

    with pytest.raises(ValueError, match=r"fsdp_config\['max_shard_size'\]"):
        parse_fsdp(True, {"max_shard_size": size})
