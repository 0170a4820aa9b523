"""An S3 API on localhost for the object-storage tests: ``moto`` in server mode, fake credentials in the
environment (where pyarrow, boto3 and every Ray worker started afterwards read them), and scans for a secret in
the files a run left behind (local folders and the bucket).

In-process tests (no Ray) use the fixtures ``s3_env`` (one server per module, bucket ``UNIT_BUCKET``) and
``s3_root`` (a fresh ``s3://`` prefix with the credentials set for the test only), which ``conftest.py`` imports; a script that starts its own
Ray calls ``start(bucket)`` before ``ray.init``, so the Ray processes inherit the endpoint and the credentials.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

SECRET = "FAKEs3secretKEY0123456789abcdefXYZ"
ACCESS_KEY = "FAKEaccessKEY"
UNIT_BUCKET = "raystx-unit"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def credentials_env(port: int) -> dict[str, str]:
    """The variables pointing pyarrow/boto3 at the local server with the fake credentials."""
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def start(bucket: str, setenv: Any = None) -> Any:
    """Start a moto server on a free port, put its endpoint and the fake credentials in the environment
    (``setenv(key, value)``, e.g. ``monkeypatch.setenv``; default ``os.environ``) and create ``bucket``.
    Returns the server (``server.stop()`` when done)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in credentials_env(port).items():
        (setenv or os.environ.__setitem__)(key, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket=bucket)
    return server


def bucket_keys(bucket: str, prefix: str = "") -> list[str]:
    """Every object key in ``bucket`` under ``prefix`` (sorted)."""
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def objects_holding(secret: str, bucket: str) -> list[str]:
    """Keys of the objects in ``bucket`` whose bytes contain ``secret``."""
    import boto3

    s3 = boto3.client("s3")
    return [
        key
        for key in bucket_keys(bucket)
        if secret.encode() in s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    ]


def files_holding(secret: str, root: Path) -> list[str]:
    """Regular files under ``root`` (the runs' outputs, Ray's session logs) whose bytes contain ``secret``."""
    found = []
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 200 * 2**20:
            try:
                if secret.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:  # a socket or a file removed meanwhile
                continue
    return found


@pytest.fixture(scope="module")
def s3_env():
    """A moto server for the module (bucket ``UNIT_BUCKET``); yields its variables without leaving them set."""
    pytest.importorskip("moto")
    patch = pytest.MonkeyPatch()
    server = start(UNIT_BUCKET, patch.setenv)
    patch.undo()
    yield credentials_env(server.get_host_and_port()[1])
    server.stop()


@pytest.fixture
def s3_root(request, s3_env, monkeypatch) -> str:
    """``s3://UNIT_BUCKET/<test name>`` with the server's variables set for this test."""
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name)
    return f"s3://{UNIT_BUCKET}/{name}"
