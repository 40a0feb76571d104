"""Local servers for the publish tests: moto's S3 server over HTTP and a pgserver PostgreSQL with pgvector.

Both bind 127.0.0.1 (PostgreSQL: a Unix socket in a temp dir) and are stopped by the caller. To be merged with
``tests/helpers/s3server.py`` / ``tests/helpers/pg.py`` (branch ``datain``) at merge time.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_s3_server(timeout_sec: float = 20.0) -> Iterator[str]:
    """Run moto's S3 server on 127.0.0.1:<free port>; yield its endpoint URL; stop it afterwards."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_sec
    while True:  # poll until it answers, bounded
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto server on {url} did not start in {timeout_sec}s") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.stop()


def s3_client(endpoint_url: str) -> Any:
    """A boto3 client for the local server (fake credentials must be in the environment)."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name="us-east-1")


def object_versions(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    """Number of stored versions per key (bucket versioning on): counts every PUT the server accepted."""
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    return counts


@contextlib.contextmanager
def pg_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL (pgserver wheel, pgvector bundled); yield its URL; stop and delete it.

    The data dir is a fresh ``mkdtemp`` directly under the system temp dir, not under pytest's ``tmp_path``:
    run as root, pgserver starts postgres as user ``pgserver``, which cannot traverse pytest's 0700 folders.
    """
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="pgserver-publish-"))
    srv = pgserver.get_server(data, cleanup_mode="delete")
    try:
        srv.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        yield srv.get_uri()
    finally:
        srv.cleanup()
        shutil.rmtree(data, ignore_errors=True)
