"""``raystx.train.storage``: the same calls on a local folder and on ``s3://`` (a moto server on localhost), no Ray.

Every case runs twice, ``root`` a local folder or a bucket prefix, and reads back through a second channel
(pathlib / boto3) so a helper that wrote somewhere else, or nothing, fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raystx.train import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_root")


def _raw_read(location: str) -> bytes:
    """The bytes at ``location`` read without raystx (pathlib or boto3)."""
    if not location.startswith("s3://"):
        return Path(location).read_bytes()
    import boto3

    bucket, key = location[len("s3://") :].split("/", 1)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_text_files_round_trip_and_append(root):
    target = storage.join(root, "a", "b.txt")
    assert not storage.exists(target) and not storage.is_file(target)
    with pytest.raises(FileNotFoundError):
        storage.read_text(target)
    storage.write_text(target, "héllo\n")
    storage.append_text(target, "second\n")
    storage.append_text(storage.join(root, "a", "new.log"), "first\n")
    assert _raw_read(target) == "héllo\nsecond\n".encode()
    assert storage.read_text(target) == "héllo\nsecond\n"
    assert storage.read_text(storage.join(root, "a", "new.log")) == "first\n"
    assert storage.is_file(target) and not storage.is_dir(target)
    folder = storage.join(root, "a")
    assert storage.exists(folder) and storage.is_dir(folder) and not storage.is_file(folder)
    storage.delete_tree(folder)
    assert not storage.exists(target) and not storage.exists(folder)


def test_copy_tree_both_ways_and_uploaded_folder(root, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "x.bin").write_bytes(b"\x00\x01")
    (source / "sub" / "y.txt").write_text("y")
    remote = storage.join(root, "copy")
    storage.copy_tree(str(source), remote)
    assert _raw_read(storage.join(remote, "sub", "y.txt")) == b"y"
    back = tmp_path / "back"
    storage.copy_tree(remote, str(back))
    assert (back / "x.bin").read_bytes() == b"\x00\x01" and (back / "sub" / "y.txt").read_text() == "y"
    again = storage.join(root, "copy2")
    storage.copy_tree(remote, again)  # location to location (S3 to S3 here)
    assert storage.read_text(storage.join(again, "sub", "y.txt")) == "y"

    with storage.uploaded_folder(storage.join(root, "up")) as folder:
        (folder / "plot.png").write_bytes(b"png")
    assert _raw_read(storage.join(root, "up", "plot.png")) == b"png"


def test_uploaded_folder_uploads_nothing_when_the_block_fails(root):
    with pytest.raises(RuntimeError), storage.uploaded_folder(storage.join(root, "failed")) as folder:
        (folder / "half.png").write_bytes(b"x")
        raise RuntimeError("drawing failed")
    assert storage.exists(storage.join(root, "failed", "half.png")) == (not storage.is_uri(root))


def test_location_arithmetic(tmp_path):
    assert storage.join("s3://b/x/", "y", "/z.json") == "s3://b/x/y/z.json"
    assert storage.parent("s3://b/x/y/") == "s3://b/x" and storage.parent("s3://b") == "s3://b"
    assert storage.parent(str(tmp_path / "out")) == str(tmp_path)
    assert storage.resolve("s3://b/sweeps", tmp_path) == "s3://b/sweeps"
    assert storage.resolve("sweeps", tmp_path) == str(tmp_path / "sweeps")
    assert storage.resolve(str(tmp_path / "abs"), "/elsewhere") == str(tmp_path / "abs")


def test_check_writable_names_the_config_key_for_a_missing_bucket(s3_root):
    import boto3

    storage.check_writable(s3_root, "tune.storage_path")  # passes, and leaves no probe behind
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    assert [o["Key"] for o in listed] == [prefix + "/"]  # pyarrow keeps the emptied folder as a marker
    with pytest.raises(
        PermissionError, match=r"tune\.storage_path='s3://no-such-bucket/sweeps' is not writable"
    ):
        storage.check_writable("s3://no-such-bucket/sweeps", "tune.storage_path")
    storage.check_writable("/definitely/not/created", "tune.storage_path")  # local: left to the writer
    assert not Path("/definitely").exists()
