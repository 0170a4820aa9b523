"""push_to_hub up to the upload: HfApi replaced by a fake that records calls and copies into a local 'repo'."""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import make_sentences

from raystx.hub import push_to_hub
from raystx.models import SentenceTransformer

TOKEN = "hf_fakeUploadToken_000111222"


@dataclass
class FakeRepoUrl:
    repo_id: str


@dataclass
class FakeCommitInfo:
    commit_url: str
    pr_url: str | None = None


class FakeHub:
    """Stands in for the Hub: create_repo/create_branch record, upload_folder copies into ``root/<repo_id>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict]] = []

    def install(self, monkeypatch) -> None:
        import huggingface_hub

        hub = self

        def create_repo(self, repo_id, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            return FakeRepoUrl(repo_id if "/" in repo_id else f"me/{repo_id}")

        def create_branch(self, **kwargs):
            hub.calls.append(("create_branch", kwargs))

        def upload_folder(self, **kwargs):
            hub.calls.append(("upload_folder", kwargs))
            source = Path(kwargs["folder_path"])
            target = hub.root / kwargs["repo_id"]
            for path in source.rglob("*"):
                rel = path.relative_to(source).as_posix()
                if path.is_dir() or any(fnmatch.fnmatch(rel, p) for p in kwargs.get("ignore_patterns") or []):
                    continue
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / rel)
            return FakeCommitInfo(
                f"https://huggingface.co/{kwargs['repo_id']}/commit/abc",
                f"https://huggingface.co/{kwargs['repo_id']}/discussions/1",
            )

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_branch", create_branch)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path / "hub")
    fake.install(monkeypatch)
    return fake


@pytest.fixture(scope="module")
def saved_model(tiny_bert_dir, tmp_path_factory):
    model = SentenceTransformer(str(tiny_bert_dir))
    directory = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(str(directory))
    (directory / "checkpoint-5").mkdir()  # training leftovers are never uploaded
    (directory / "checkpoint-5" / "optimizer.pt").write_bytes(b"x")
    return model, directory


def test_push_directory_creates_repo_and_uploads_a_loadable_model(hub, saved_model):
    model, directory = saved_model
    url = push_to_hub(directory, "org/tiny", token=TOKEN, private=True, commit_message="first upload")
    assert url == "https://huggingface.co/org/tiny/commit/abc"
    names = [name for name, _ in hub.calls]
    assert names == ["create_repo", "upload_folder"]
    create, upload = hub.calls[0][1], hub.calls[1][1]
    assert create == {
        "repo_id": "org/tiny",
        "token": TOKEN,
        "private": True,
        "repo_type": "model",
        "exist_ok": True,
    }
    assert upload["repo_id"] == "org/tiny" and upload["token"] == TOKEN
    assert upload["commit_message"] == "first upload" and upload["folder_path"] == str(directory)
    assert upload["revision"] is None and upload["create_pr"] is False

    uploaded = hub.root / "org" / "tiny"
    expected = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    expected = {p for p in expected if not p.startswith("checkpoint-")}
    got = {p.relative_to(uploaded).as_posix() for p in uploaded.rglob("*") if p.is_file()}
    assert got == expected and "modules.json" in got and "README.md" in got
    texts = make_sentences(4, 7)
    np.testing.assert_allclose(
        SentenceTransformer(str(uploaded)).encode(texts), model.encode(texts), rtol=0, atol=1e-6
    )


def test_push_model_object_names_the_repo_in_the_card_data_and_opens_a_pr_on_a_branch(hub, tiny_bert_dir):
    model = SentenceTransformer(str(tiny_bert_dir))
    url = push_to_hub(model, "tiny", revision="v1", create_pr=True)
    assert url == "https://huggingface.co/me/tiny/discussions/1"
    assert [name for name, _ in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[1][1]["repo_id"] == "me/tiny" and hub.calls[1][1]["branch"] == "v1"
    upload = hub.calls[2][1]
    assert upload["repo_id"] == "me/tiny" and upload["revision"] == "v1" and upload["create_pr"] is True
    assert upload["token"] is None
    assert model.model_card_data["model_id"] == "tiny"
    assert (hub.root / "me" / "tiny" / "modules.json").is_file()


def test_push_refuses_secrets_and_non_model_directories(hub, saved_model, tmp_path, monkeypatch):
    _, directory = saved_model
    leaky = tmp_path / "leaky"
    shutil.copytree(directory, leaky)
    (leaky / "README.md").write_text(f"trained with token {TOKEN}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="README.md contains a secret") as err:
        push_to_hub(leaky, "org/leaky", token=TOKEN)
    assert TOKEN not in str(err.value)
    monkeypatch.setenv("WANDB_API_KEY", "wandb-" + TOKEN[::-1])
    (leaky / "README.md").write_text("ok\n", encoding="utf-8")
    (leaky / "notes.txt").write_text("key=wandb-" + TOKEN[::-1], encoding="utf-8")
    with pytest.raises(ValueError, match="notes.txt contains a secret"):
        push_to_hub(leaky, "org/leaky")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="does not hold a saved model"):
        push_to_hub(tmp_path / "empty", "org/empty")
    assert hub.calls == []  # nothing was created or uploaded
