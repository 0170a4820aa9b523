"""Run storage locations: local folders or URIs (``s3://``, ``gs://``, ``file://``) through pyarrow filesystems."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def is_uri(location: str) -> bool:
    return "://" in str(location)


def join(location: str, *parts: str) -> str:
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(location, *parts).absolute())


def _fs(location: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location)


def checkpoint_names(location: str) -> list[str]:
    """Names of the ``checkpoint-*`` folders directly under a run location (empty if it does not exist)."""
    if not is_uri(location):
        path = Path(location)
        return sorted(p.name for p in path.glob("checkpoint-*") if p.is_dir()) if path.is_dir() else []
    import pyarrow.fs

    fs, root = _fs(location)
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return []
    return sorted(
        i.base_name
        for i in infos
        if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint-")
    )


def delete_tree(location: str) -> None:
    """Delete a folder or a file, local or remote; nothing happens if it does not exist."""
    if not is_uri(location):
        if Path(location).is_file():
            Path(location).unlink()
        else:
            shutil.rmtree(location, ignore_errors=True)
        return
    import pyarrow.fs

    fs, root = _fs(location)
    try:
        info = fs.get_file_info(root)
        if info.type == pyarrow.fs.FileType.File:
            fs.delete_file(root)
        elif info.type == pyarrow.fs.FileType.Directory:
            fs.delete_dir(root)
    except (FileNotFoundError, OSError):
        pass


def local_copy(location: str) -> Path:
    """A local folder with the contents of ``location`` (the folder itself when it is local)."""
    if not is_uri(location):
        return Path(location)
    import pyarrow.fs

    target = Path(tempfile.mkdtemp(prefix="raystx-download-"))
    fs, root = _fs(location)
    pyarrow.fs.copy_files(
        root, str(target), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem()
    )
    return target


def save_model(model, location: str, **save_kwargs) -> str:
    """``model.save_pretrained(**save_kwargs)`` to a local folder or a URI (written locally first, then uploaded)."""
    if not is_uri(location):
        model.save_pretrained(str(location), **save_kwargs)
        return str(Path(location).absolute())
    import pyarrow.fs

    with tempfile.TemporaryDirectory(prefix="raystx-upload-") as tmp:
        model.save_pretrained(tmp, **save_kwargs)
        fs, root = _fs(location)
        fs.create_dir(root, recursive=True)
        pyarrow.fs.copy_files(
            tmp, root, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs
        )
    return location


def ensure_parent(location: str) -> None:
    if not is_uri(location):
        os.makedirs(Path(location).parent, exist_ok=True)
