"""Custom modules named in ``modules.json``: loaded only with ``trust_remote_code=True``."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import make_sentences

import raystx.models as rm
from raystx.models.registry import CustomModuleError

st = pytest.importorskip("sentence_transformers")

SENTENCES = make_sentences(6, seed=2)

SCALE_CODE = textwrap.dedent(
    """
    import json
    import os

    import torch


    class Scale(torch.nn.Module):
        def __init__(self, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, features, **kwargs):
            features["sentence_embedding"] = features["sentence_embedding"] * self.factor
            return features

        def save(self, output_path, *args, **kwargs):
            with open(os.path.join(output_path, "scale.json"), "w") as f:
                json.dump({"factor": self.factor}, f)

        @staticmethod
        def load(input_path):
            with open(os.path.join(input_path, "scale.json")) as f:
                return Scale(**json.load(f))
    """
)


@pytest.fixture
def custom_dir(tiny_bert_dir, tmp_path):
    base = rm.SentenceTransformer(str(tiny_bert_dir), device="cpu")
    base.save(tmp_path / "m")
    (tmp_path / "m" / "custom_scale.py").write_text(SCALE_CODE)
    (tmp_path / "m" / "2_Scale").mkdir()
    (tmp_path / "m" / "2_Scale" / "scale.json").write_text(json.dumps({"factor": 3.0}))
    entries = json.loads((tmp_path / "m" / "modules.json").read_text())
    entries.append({"idx": 2, "name": "2", "path": "2_Scale", "type": "custom_scale.Scale"})
    (tmp_path / "m" / "modules.json").write_text(json.dumps(entries))
    return tmp_path / "m", base


def test_custom_module_needs_trust_remote_code(custom_dir):
    path, _ = custom_dir
    with pytest.raises(
        CustomModuleError, match=r"custom module 'custom_scale\.Scale'.*trust_remote_code=True"
    ):
        rm.SentenceTransformer(path, device="cpu")


def test_custom_module_loads_with_the_flag_and_matches_st(custom_dir, tmp_path):
    path, base = custom_dir
    ours = rm.SentenceTransformer(path, device="cpu", trust_remote_code=True)
    assert type(ours[2]).__name__ == "Scale" and ours[2].factor == 3.0
    np.testing.assert_allclose(ours.encode(SENTENCES), 3.0 * base.encode(SENTENCES), rtol=0, atol=1e-6)
    ref = st.SentenceTransformer(str(path), device="cpu", trust_remote_code=True)
    np.testing.assert_allclose(ours.encode(SENTENCES), ref.encode(SENTENCES), rtol=0, atol=1e-6)
    ours.save(tmp_path / "again")  # the saved modules.json names the same custom type
    assert json.loads((tmp_path / "again" / "modules.json").read_text())[2]["type"] == "custom_scale.Scale"


def test_unknown_sentence_transformers_module_is_a_clear_error(tiny_bert_dir, tmp_path):
    rm.SentenceTransformer(str(tiny_bert_dir), device="cpu").save(tmp_path / "m")
    entries = json.loads((tmp_path / "m" / "modules.json").read_text())
    entries[1]["type"] = "sentence_transformers.models.CLIPModel"
    (tmp_path / "m" / "modules.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="Unsupported module type 'sentence_transformers.models.CLIPModel'"):
        rm.SentenceTransformer(tmp_path / "m", device="cpu", trust_remote_code=True)
