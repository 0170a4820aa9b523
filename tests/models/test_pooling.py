"""Pooling parity: every mode and combinations equal sentence-transformers' Pooling on the same token embeddings."""

from __future__ import annotations

import itertools
import json
import warnings

import pytest
import torch

from raystx.models import POOLING_MODES, Pooling

st_modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")

DIM = 6


def _features(left_padding: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 1, 5])
    seq = int(lengths.max())
    positions = torch.arange(seq).unsqueeze(0)
    if left_padding:
        mask = (positions >= seq - lengths.unsqueeze(1)).long()
    else:
        mask = (positions < lengths.unsqueeze(1)).long()
    return {"token_embeddings": torch.randn(4, seq, DIM, generator=g), "attention_mask": mask}


def _run(module, features: dict) -> torch.Tensor:
    copied = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    return module(copied)["sentence_embedding"]


COMBOS = [(m,) for m in POOLING_MODES] + [
    ("cls", "mean"),
    ("mean", "max"),
    ("max", "mean_sqrt_len_tokens", "weightedmean"),
    ("lasttoken", "cls", "mean"),
    POOLING_MODES,
]


@pytest.mark.parametrize("left_padding", [False, True])
@pytest.mark.parametrize("modes", COMBOS, ids=lambda m: "+".join(m))
def test_modes_match_st(modes, left_padding):
    features = _features(left_padding)
    ours = Pooling(DIM, pooling_mode=modes if len(modes) > 1 else modes[0])
    ref = st_modules.Pooling(DIM, pooling_mode=modes if len(modes) > 1 else modes[0])
    out = _run(ours, features)
    assert out.shape == (4, DIM * len(modes))
    assert ours.get_sentence_embedding_dimension() == ref.get_embedding_dimension()
    torch.testing.assert_close(out, _run(ref, features), atol=1e-6, rtol=0)


@pytest.mark.parametrize("left_padding", [False, True])
@pytest.mark.parametrize(
    "modes", [("mean",), ("cls",), ("weightedmean",), ("max", "lasttoken", "mean_sqrt_len_tokens")]
)
def test_exclude_prompt_matches_st(modes, left_padding):
    features = _features(left_padding, seed=1)
    features["prompt_length"] = 2
    ours = Pooling(DIM, pooling_mode=list(modes), include_prompt=False)
    ref = st_modules.Pooling(DIM, pooling_mode=modes, include_prompt=False)
    torch.testing.assert_close(_run(ours, features), _run(ref, features), atol=1e-6, rtol=0)
    # and the prompt really is left out: including it changes the result for mean pooling
    if modes == ("mean",):
        assert not torch.allclose(_run(ours, features), _run(Pooling(DIM, "mean"), features))


FLAG_SETS = [
    {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True},
    {"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": True, "pooling_mode_lasttoken": True},
    {
        "pooling_mode_weightedmean_tokens": True,
        "pooling_mode_mean_sqrt_len_tokens": True,
        "pooling_mode_cls_token": True,
    },
]


@pytest.mark.parametrize("flags", FLAG_SETS)
def test_legacy_flags_concatenate_in_st_order(flags):
    features = _features(False, seed=2)
    ours = Pooling(DIM, **flags)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = st_modules.Pooling(DIM, **flags)
    assert ours.modes == tuple(ref.pooling_mode)
    torch.testing.assert_close(_run(ours, features), _run(ref, features), atol=1e-6, rtol=0)


def test_legacy_config_keys_load(tmp_path):
    config = {
        "word_embedding_dimension": DIM,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": True,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    pooled = Pooling.load(tmp_path)
    assert pooled.modes == ("max", "mean") and pooled.embedding_dimension == DIM
    assert st_modules.Pooling.load(str(tmp_path)).pooling_mode == ("max", "mean")


def test_saved_config_is_st6_format_and_reloads(tmp_path):
    ours = Pooling(DIM, pooling_mode=("mean", "cls"), include_prompt=False)
    ours.save(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored == {"embedding_dimension": DIM, "pooling_mode": ["mean", "cls"], "include_prompt": False}
    ref = st_modules.Pooling.load(str(tmp_path))
    assert tuple(ref.pooling_mode) == ("mean", "cls") and ref.include_prompt is False
    assert Pooling.load(tmp_path).modes == ("mean", "cls")


def test_bad_mode_rejected():
    with pytest.raises(ValueError, match="Unknown pooling mode"):
        Pooling(DIM, pooling_mode="median")


def test_half_precision_mean_accumulates_in_float32():
    features = _features(False)
    half = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in features.items()}
    out = _run(Pooling(DIM, "mean"), half)
    assert out.dtype == torch.bfloat16
    ref = _run(st_modules.Pooling(DIM, "mean"), half)
    torch.testing.assert_close(out.float(), ref.float(), atol=0, rtol=0)


@pytest.mark.parametrize("modes", list(itertools.combinations(("cls", "max", "mean"), 2)))
def test_combination_is_concatenation_of_singles(modes):
    features = _features(True, seed=4)
    combined = _run(Pooling(DIM, list(modes)), features)
    singles = torch.cat([_run(Pooling(DIM, m), features) for m in modes], dim=-1)
    torch.testing.assert_close(combined, singles, atol=0, rtol=0)
