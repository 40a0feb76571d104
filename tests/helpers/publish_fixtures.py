"""Context managers for the publish tests (and the Node fixture script, and bench/publish_bench.py) on top of
the shared test servers: moto's S3 server over HTTP (:class:`tests.helpers.s3server.MotoS3`) and a pgserver
PostgreSQL (:func:`tests.helpers.pg.start_postgres`) with the pgvector extension created.

Both bind 127.0.0.1 (PostgreSQL: a Unix socket in a temp dir) and are stopped on exit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from tests.helpers.pg import start_postgres
from tests.helpers.s3server import MotoS3

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextlib.contextmanager
def moto_s3_server() -> Iterator[str]:
    """Run moto's S3 server on 127.0.0.1:<free port>; yield its endpoint URL; stop it afterwards."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with MotoS3() as server:
        yield server.endpoint_url


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
    """Start a throw-away PostgreSQL (pgserver wheel, pgvector bundled) with ``vector`` created; yield its URL;
    stop and delete it (data dir under /tmp, not pytest's 0700 tmp_path: see tests/helpers/pg.py)."""
    pg = start_postgres()
    try:
        pg.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield pg.uri
    finally:
        pg.stop()
