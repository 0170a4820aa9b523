"""Run storage locations: local folders or URIs (``s3://``, ``gs://``, ``file://``) through pyarrow filesystems.

A *location* is a string: a local path (made absolute where it is resolved) or a URI. Every helper here takes
locations, so code that writes runs and sweeps never needs to know which kind it holds: ``join``/``parent``
build them, ``exists``/``is_dir``/``is_file`` ask, ``read_text``/``write_text``/``append_text`` move small text
files, ``copy_tree``/``delete_tree`` move folders, ``save_model`` and ``uploaded_folder`` write through a local
temporary folder. Credentials for URIs come from the environment (pyarrow's own lookup), never from here.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def is_uri(location: str) -> bool:
    return "://" in str(location)


def join(location: str, *parts: str) -> str:
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(location, *parts).absolute())


def resolve(location: str | Path, base_dir: str | Path | None = None) -> str:
    """A URI as given; a local path made absolute (relative to ``base_dir``, else the current folder)."""
    if is_uri(str(location)):
        return str(location)
    path = Path(location)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return str(path.absolute())


def parent(location: str) -> str:
    """The folder holding ``location`` (``s3://b/x/y`` -> ``s3://b/x``; a local path's absolute parent)."""
    if is_uri(location):
        scheme, rest = str(location).rstrip("/").split("://", 1)
        return f"{scheme}://{rest.rsplit('/', 1)[0]}" if "/" in rest else f"{scheme}://{rest}"
    return str(Path(location).absolute().parent)


def _fs(location: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location)


def _kind(location: str):
    """pyarrow's ``FileType`` of a URI (``NotFound`` when absent)."""
    fs, root = _fs(location)
    return fs.get_file_info(root).type


def exists(location: str) -> bool:
    """Whether a file or folder is at ``location`` (on object stores: an object, or a prefix holding objects)."""
    if not is_uri(location):
        return Path(location).exists()
    import pyarrow.fs

    return _kind(location) != pyarrow.fs.FileType.NotFound


def is_dir(location: str) -> bool:
    if not is_uri(location):
        return Path(location).is_dir()
    import pyarrow.fs

    return _kind(location) == pyarrow.fs.FileType.Directory


def is_file(location: str) -> bool:
    if not is_uri(location):
        return Path(location).is_file()
    import pyarrow.fs

    return _kind(location) == pyarrow.fs.FileType.File


def read_text(location: str) -> str:
    """The UTF-8 text of a file; ``FileNotFoundError`` when there is none."""
    if not is_uri(location):
        return Path(location).read_text(encoding="utf-8")
    if not is_file(location):
        raise FileNotFoundError(f"no file at {location}")
    fs, root = _fs(location)
    with fs.open_input_stream(root) as handle:
        return handle.read().decode("utf-8")


def write_bytes(location: str, data: bytes) -> None:
    """Write (replace) a file, creating its folder."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_bytes(data)
        return
    fs, root = _fs(location)
    if fs.type_name == "local":  # file:// URIs; object stores have no folders to create
        fs.create_dir(root.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(root) as handle:
        handle.write(data)


def write_text(location: str, text: str) -> None:
    """Write (replace) a UTF-8 text file, creating its folder."""
    write_bytes(location, text.encode("utf-8"))


def append_text(location: str, text: str) -> None:
    """Append to a text file (object stores cannot append: the object is read and written back whole, so
    keep such files small and written by one process)."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        with open(location, "a", encoding="utf-8") as handle:
            handle.write(text)
        return
    write_text(location, (read_text(location) if is_file(location) else "") + text)


def check_writable(location: str, key: str) -> None:
    """For a URI: write and delete a small object under ``location``, so a missing bucket, a wrong endpoint or
    missing credentials fail here (naming the config ``key``) instead of deep inside a run. Local folders are
    created by whoever writes them and fail clearly there."""
    if not is_uri(location):
        return
    probe = join(location, ".raystx-write-check")
    try:
        write_text(probe, "ok")
        delete_tree(probe)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises OSError, ValueError, ... per filesystem
        raise PermissionError(
            f"{key}={location!r} is not writable: {type(exc).__name__}: {exc}. Check that the bucket exists and "
            "that the endpoint and credentials are in the environment of the driver and of every node "
            "(e.g. AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; never in the config), or choose "
            f"another {key}"
        ) from None


def copy_tree(source: str, target: str) -> None:
    """Copy the folder ``source`` into ``target`` (created; files already there are overwritten), local or
    remote on either side."""
    if not is_uri(source) and not is_uri(target):
        shutil.copytree(source, target, dirs_exist_ok=True)
        return
    import pyarrow.fs

    local = pyarrow.fs.LocalFileSystem()
    source_fs, source_root = _fs(source) if is_uri(source) else (local, str(Path(source).absolute()))
    target_fs, target_root = _fs(target) if is_uri(target) else (local, str(Path(target).absolute()))
    if target_fs.type_name == "local":  # object stores have no folders (a marker object would be noise)
        target_fs.create_dir(target_root, recursive=True)
    pyarrow.fs.copy_files(
        source_root, target_root, source_filesystem=source_fs, destination_filesystem=target_fs
    )


@contextlib.contextmanager
def uploaded_folder(location: str) -> Iterator[Path]:
    """A local folder to write into: ``location`` itself when local (created), else a temporary folder whose
    contents are copied to ``location`` when the block ends without an error."""
    if not is_uri(location):
        Path(location).mkdir(parents=True, exist_ok=True)
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="raystx-upload-") as tmp:
        yield Path(tmp)
        copy_tree(tmp, location)


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


def save_model(model, location: str, **save_kwargs) -> str:
    """``model.save_pretrained(**save_kwargs)`` to a local folder or a URI (written locally first, then uploaded)."""
    with uploaded_folder(location) as folder:
        model.save_pretrained(str(folder), **save_kwargs)
    return location if is_uri(location) else str(Path(location).absolute())
