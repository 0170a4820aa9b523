"""Publish a trained model directory (or model object) to the Hugging Face Hub.

``push_to_hub(model_dir, repo_id, token=None, private=False, commit_message=...)`` creates the repository if
needed (``HfApi.create_repo``) and uploads the directory in one commit (``HfApi.upload_folder``); it returns
the commit URL (or the pull-request URL with ``create_pr=True``). Before uploading it refuses directories
that are not a saved model and text files that contain a secret (the token, or the value of an environment
variable named like ``*TOKEN*``/``*KEY*``/``*SECRET*``/``*PASSWORD*``). Training checkpoints are never uploaded.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from raystx.secrets import secret_env_values

logger = logging.getLogger("raystx")

MODEL_MARKERS = ("modules.json", "config_sentence_transformers.json")
TEXT_SUFFIXES = (".md", ".json", ".txt", ".yaml", ".yml", ".csv", ".cfg", ".ini", ".py")
MAX_SCANNED_BYTES = 5 * 1024 * 1024
IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "**/checkpoint-*/**", ".git/**", ".raystx-data/**"]


def _secret_values(token: str | bool | None) -> list[str]:
    values = secret_env_values()
    if isinstance(token, str) and token:
        values.append(token)
    return values


def check_no_secrets(folder: str | os.PathLike, token: str | bool | None = None) -> None:
    """Raise ``ValueError`` naming the first text file under ``folder`` that contains a secret value."""
    secrets = [s.encode("utf-8") for s in _secret_values(token)]
    if not secrets:
        return
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
            continue
        if path.stat().st_size > MAX_SCANNED_BYTES:
            continue
        content = path.read_bytes()
        if any(secret in content for secret in secrets):
            raise ValueError(
                f"Refusing to upload: {path.relative_to(folder)} contains a secret (a token or the value of a "
                "*TOKEN*/*KEY*/*SECRET*/*PASSWORD* environment variable). Remove it and try again."
            )


def _check_model_dir(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{str(folder)!r} is not a directory")
    if not any((folder / marker).is_file() for marker in MODEL_MARKERS):
        raise ValueError(
            f"{str(folder)!r} does not hold a saved model (no modules.json / config_sentence_transformers.json); "
            "save the model with model.save_pretrained(path) first"
        )


def push_to_hub(
    model_dir: str | os.PathLike | Any,
    repo_id: str,
    token: str | bool | None = None,
    private: bool | None = False,
    commit_message: str = "Add new raystx SentenceTransformer model",
    *,
    exist_ok: bool = True,
    revision: str | None = None,
    create_pr: bool = False,
    commit_description: str | None = None,
    replace_model_card: bool = True,
) -> str:
    """Upload a saved model to the Hub repository ``repo_id`` and return the commit (or PR) URL.

    Args:
        model_dir: a directory written by ``model.save_pretrained``, or a model object (it is saved to a
            temporary directory first, with ``model_card_data["model_id"] = repo_id`` so the card's usage
            snippet names the repository).
        repo_id: ``"user/name"`` (a bare name goes to the token owner's namespace).
        token: a Hugging Face token; ``None`` uses the configured one (``HF_TOKEN`` / ``hf auth login``).
        private: create the repository as private (ignored when it already exists).
        commit_message / commit_description: of the upload commit.
        exist_ok: accept an existing repository (default) instead of failing.
        revision: upload to this branch (created when missing). create_pr: open a pull request instead.
        replace_model_card: when False and the repository already has a ``README.md``, keep it (the local card
            is not uploaded).
    """
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError("repo_id must be a non-empty string like 'user/model-name'")
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="raystx-push-") as tmp:
        if isinstance(model_dir, (str, os.PathLike)):
            folder = Path(model_dir)
        else:
            model = model_dir
            card = getattr(model, "model_card_data", None)
            if card is not None:
                card["model_id"] = repo_id
            folder = Path(tmp) / "model"
            model.save_pretrained(str(folder))
        _check_model_dir(folder)
        check_no_secrets(folder, token)
        repo = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=exist_ok)
        full_id = getattr(repo, "repo_id", None) or repo_id
        if revision is not None:
            api.create_branch(repo_id=full_id, branch=revision, token=token, repo_type="model", exist_ok=True)
        ignore = list(IGNORE_PATTERNS)
        if not replace_model_card and api.file_exists(
            full_id, "README.md", repo_type="model", revision=revision, token=token
        ):
            ignore.append("README.md")
        commit = api.upload_folder(
            repo_id=full_id,
            folder_path=str(folder),
            commit_message=commit_message,
            commit_description=commit_description,
            token=token,
            repo_type="model",
            revision=revision,
            create_pr=create_pr,
            ignore_patterns=ignore,
        )
    url = getattr(commit, "pr_url", None) if create_pr else None
    url = url or getattr(commit, "commit_url", None) or str(commit)
    logger.info("Pushed %s to %s", folder.name, full_id)
    return url
