"""Resolve a model name to a local directory (a local path as is, else a Hugging Face Hub download)."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_model_path(
    name_or_path: str | os.PathLike, cache_folder: str | None = None, token: str | bool | None = None
) -> Path:
    """Return a local directory for ``name_or_path``.

    A path that exists locally is returned unchanged. Anything else is treated as a Hub repository id and
    fetched with ``huggingface_hub.snapshot_download`` (needs network access; the error says so when it fails).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise NotADirectoryError(f"{name!r} is a file; expected a model directory")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=name, cache_dir=cache_folder, token=token)
    except Exception as exc:  # network, auth, offline mode, bad repo id
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        hint = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise OSError(
            f"{name!r} is not a local directory and could not be downloaded from the Hugging Face Hub{hint}: "
            f"{type(exc).__name__}: {exc}. Pass the path of a local model directory, or check network access, "
            "the repository id and the token."
        ) from exc
    return Path(local)
