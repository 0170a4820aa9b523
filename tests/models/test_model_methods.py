"""The SentenceTransformer methods training scripts call, each against the sentence-transformers oracle."""

from __future__ import annotations

import fnmatch
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sentence_transformers
import torch

from raystx import SentenceTransformer
from raystx.evaluation import EmbeddingSimilarityEvaluator
from raystx.testing import unique_sentences

PROMPTS = {"query": "query: ", "document": "passage: ", "other": "x y z "}


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("methods") / "model"
    SentenceTransformer(str(tiny_bert_dir), device="cpu", prompts=PROMPTS).save(str(path))
    return path


@pytest.fixture(scope="module")
def pair(model_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            SentenceTransformer(str(model_dir), device="cpu"),
            sentence_transformers.SentenceTransformer(str(model_dir), device="cpu"),
        )


TEXTS = unique_sentences(6, seed=11)


def _close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=atol)


@pytest.mark.parametrize("kwargs", [{}, {"prompt_name": "other"}, {"prompt": "hey: "}])
def test_encode_query_and_document_match_oracle(pair, kwargs) -> None:
    ours, ref = pair
    _close(ours.encode_query(TEXTS, **kwargs), ref.encode_query(TEXTS, **kwargs))
    _close(ours.encode_document(TEXTS, **kwargs), ref.encode_document(TEXTS, **kwargs))


def test_empty_query_prompt_beats_the_default_prompt(model_dir) -> None:
    prompts = {"query": "", "passage": "p: ", "other": "o: "}
    ours = SentenceTransformer(str(model_dir), device="cpu", prompts=prompts, default_prompt_name="other")
    ref = sentence_transformers.SentenceTransformer(
        str(model_dir), device="cpu", prompts=prompts, default_prompt_name="other"
    )
    _close(ours.encode_query(TEXTS), ref.encode_query(TEXTS))
    _close(ours.encode_query(TEXTS), ours.encode(TEXTS, prompt=""))
    _close(ours.encode_document(TEXTS), ref.encode_document(TEXTS))  # falls through to "passage"


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_matches_oracle(pair, name) -> None:
    ours, ref = pair
    a, b = ours.encode(TEXTS), ours.encode(TEXTS[::-1])
    ours.similarity_fn_name, ref.similarity_fn_name = name, name
    try:
        torch.testing.assert_close(ours.similarity(a, b), ref.similarity(a, b), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            ours.similarity_pairwise(a, b), ref.similarity_pairwise(a, b), atol=1e-5, rtol=1e-5
        )
    finally:
        ours.similarity_fn_name, ref.similarity_fn_name = "cosine", "cosine"


def test_max_seq_length_and_truncation_match_oracle(pair) -> None:
    ours, ref = pair
    assert ours.get_max_seq_length() == ref.get_max_seq_length()
    with ours.truncate_embeddings(5), ref.truncate_embeddings(5):
        _close(ours.encode(TEXTS), ref.encode(TEXTS))
        assert ours.get_embedding_dimension() == ref.get_embedding_dimension() == 5
    assert ours.truncate_dim is None and ours.encode(TEXTS).shape[1] == 32
    with pytest.warns(FutureWarning), ours.truncate_sentence_embeddings(3):
        assert ours.encode(TEXTS).shape == (6, 3)
    assert ours.truncate_dim is None


def test_set_pooling_include_prompt_matches_oracle(model_dir) -> None:
    ours = SentenceTransformer(str(model_dir), device="cpu")
    ref = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    with_prompt = ours.encode_query(TEXTS)
    ours.set_pooling_include_prompt(False)
    ref.set_pooling_include_prompt(False)
    assert ours[1].include_prompt is False
    _close(ours.encode_query(TEXTS), ref.encode_query(TEXTS))
    assert np.abs(ours.encode_query(TEXTS) - with_prompt).max() > 1e-4  # the prompt tokens were left out


def test_evaluate_matches_oracle(pair, tmp_path) -> None:
    ours, ref = pair
    a, b, scores = TEXTS[:3] + TEXTS[3:5], TEXTS[3:] + TEXTS[:2], [0.1, 0.9, 0.4, 0.7, 0.2]
    ours_eval = EmbeddingSimilarityEvaluator(a, b, scores, name="sts")
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator as Reference

    ref_eval = Reference(a, b, scores, name="sts")
    got = ours.evaluate(ours_eval, output_path=str(tmp_path / "eval" / "ours"))
    want = ref.evaluate(ref_eval)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert (tmp_path / "eval" / "ours").is_dir()


def test_save_and_save_pretrained_load_in_oracle(pair, tmp_path) -> None:
    ours, _ = pair
    for method in ("save", "save_pretrained"):
        getattr(ours, method)(str(tmp_path / method))
        loaded = sentence_transformers.SentenceTransformer(str(tmp_path / method), device="cpu")
        _close(loaded.encode(TEXTS), ours.encode(TEXTS))
        assert loaded.prompts == ours.prompts


# ------------------------------------------------------------------------------------------ Hub
@dataclass
class _RepoUrl:
    repo_id: str


@dataclass
class _Commit:
    commit_url: str
    pr_url: str | None = None


class FakeHub:
    """HfApi.create_repo / create_branch / file_exists / upload_folder replaced; uploads land in ``root``."""

    def __init__(self, root: Path, monkeypatch, existing: dict[str, set[str]] | None = None) -> None:
        import huggingface_hub

        self.root, self.calls, self.existing = root, [], existing or {}
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            if repo_id in hub.existing and not kwargs.get("exist_ok"):
                raise RuntimeError("409 repo exists")
            return _RepoUrl(repo_id)

        def create_branch(api, **kwargs):
            hub.calls.append(("create_branch", kwargs))

        def file_exists(api, repo_id, filename, **kwargs):
            return filename in hub.existing.get(repo_id, set())

        def upload_folder(api, **kwargs):
            hub.calls.append(("upload_folder", kwargs))
            source, target = Path(kwargs["folder_path"]), hub.root / kwargs["repo_id"]
            for path in source.rglob("*"):
                rel = path.relative_to(source).as_posix()
                if path.is_file() and not any(fnmatch.fnmatch(rel, p) for p in kwargs["ignore_patterns"]):
                    (target / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / rel)
            return _Commit(f"https://huggingface.co/{kwargs['repo_id']}/commit/1", "https://pr/1")

        for name, fn in [
            ("create_repo", create_repo),
            ("create_branch", create_branch),
            ("file_exists", file_exists),
            ("upload_folder", upload_folder),
        ]:
            monkeypatch.setattr(huggingface_hub.HfApi, name, fn)


def test_push_to_hub_uploads_a_model_the_oracle_loads(pair, tmp_path, monkeypatch) -> None:
    ours, _ = pair
    hub = FakeHub(tmp_path / "hub", monkeypatch)
    url = ours.push_to_hub("org/tiny", token="hf_x", private=True, train_datasets=["org/data"])
    assert url == "https://huggingface.co/org/tiny/commit/1"
    create = dict(hub.calls[0][1])
    assert create["private"] is True and create["exist_ok"] is False and create["token"] == "hf_x"
    upload = hub.calls[-1][1]
    assert upload["commit_message"] == "Add new SentenceTransformer model"
    uploaded = hub.root / "org" / "tiny"
    loaded = sentence_transformers.SentenceTransformer(str(uploaded), device="cpu")
    _close(loaded.encode(TEXTS), ours.encode(TEXTS))
    card = (uploaded / "README.md").read_text()
    assert "org/tiny" in card and "org/data" in card


def test_push_to_hub_keeps_an_existing_card_and_uploads_a_local_path(
    pair, model_dir, tmp_path, monkeypatch
) -> None:
    ours, _ = pair
    hub = FakeHub(tmp_path / "hub", monkeypatch, existing={"org/old": {"README.md"}})
    with pytest.raises(RuntimeError, match="409"):
        ours.push_to_hub("org/old")  # exist_ok=False, as in sentence-transformers
    ours.push_to_hub("org/old", exist_ok=True, local_model_path=str(model_dir))
    uploaded = hub.root / "org" / "old"
    assert not (uploaded / "README.md").exists() and (uploaded / "modules.json").is_file()
    ours.push_to_hub("org/old", exist_ok=True, replace_model_card=True, revision="v2", create_pr=True)
    assert (uploaded / "README.md").is_file()
    assert [c for c, _ in hub.calls][-2:] == ["create_branch", "upload_folder"]


def test_save_to_hub_warns_and_prepends_the_organization(pair, tmp_path, monkeypatch) -> None:
    ours, _ = pair
    hub = FakeHub(tmp_path / "hub", monkeypatch)
    with pytest.warns(FutureWarning, match="push_to_hub"):
        ours.save_to_hub("tiny", organization="org")
    assert hub.calls[0][1]["repo_id"] == "org/tiny"
    assert (hub.root / "org" / "tiny" / "modules.json").is_file()
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="organization"):
        ours.save_to_hub("other/tiny", organization="org")
