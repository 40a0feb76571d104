"""S3 (or any S3-compatible endpoint) as the object store, with boto3.

``s3://bucket/prefix``; credentials and region come from the standard AWS chain (env vars, shared config
and credentials files, ``AWS_PROFILE`` or the ``profile`` argument, instance/task roles); the endpoint from
the ``endpoint_url`` argument or ``AWS_ENDPOINT_URL_S3`` (S3-compatible stores, addressed path-style). botocore's own
retries are switched off: the pull step retries with its own exponential backoff and counts the attempts,
so each error here is classified once (:class:`ObjectNotFound`, :class:`TransientStorageError` or
:class:`StorageError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from research_job.errors import ConfigError, StorageError
from research_job.io.storage import ObjectInfo, ObjectNotFound, TransientStorageError, join_key

_THROTTLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
}


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def classify(exc: BaseException, what: str) -> StorageError:
    """Map a botocore exception to :class:`ObjectNotFound`, :class:`TransientStorageError` or
    :class:`StorageError` with a message naming ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        msg = f"{what}: HTTP {status} {code} {err.get('Message', '')}".rstrip()
        if status == 404 or code in {"404", "NoSuchKey", "NotFound"}:
            return ObjectNotFound(msg)
        if status >= 500 or status == 429 or code in _THROTTLE_CODES:
            return TransientStorageError(msg)
        return StorageError(msg)
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return TransientStorageError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, BotoCoreError):
        return StorageError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        return TransientStorageError(f"{what}: {type(exc).__name__}: {exc}")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


def s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    max_attempts: int = 5,
    timeout_sec: float = 60.0,
    max_pool_connections: int = 10,
) -> Any:
    """The one way this project makes a boto3 S3 client: the standard credential chain (or ``profile``),
    ``endpoint_url`` / ``AWS_ENDPOINT_URL_S3`` for S3-compatible stores (addressed path-style), botocore's
    standard retry mode with ``max_attempts`` tries in total (1 = no retries), connect/read timeouts.
    """
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    session = boto3.session.Session(profile_name=profile, region_name=region)
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=timeout_sec,
            read_timeout=timeout_sec,
            max_pool_connections=max_pool_connections,
            # S3-compatible servers (MinIO, moto) are addressed by path: bucket.<host> rarely resolves
            s3={"addressing_style": "path"} if endpoint else None,
        ),
    )


class S3Store:
    """Objects in ``bucket`` under ``prefix``."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        timeout_sec: float = 60.0,
        max_pool_connections: int = 32,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        # botocore also reads the endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL: record what is used
        self.endpoint_url = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        # the pull step retries with its own backoff: one attempt per call here
        self._client: Any = s3_client(
            endpoint_url=endpoint_url,
            region=region,
            profile=profile,
            max_attempts=1,
            timeout_sec=timeout_sec,
            max_pool_connections=max_pool_connections,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Store:
        """``s3://bucket/prefix`` -> store.

        Raises:
            ConfigError: no bucket name.
        """
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"Bad S3 URL {url!r}: expected s3://bucket[/prefix]")
        return cls(bucket, prefix, **kwargs)

    def resolve_key(self, key: str) -> str:
        """``prefix/key`` unless the key already starts with the prefix; ``s3://<this bucket>/k`` -> ``k``.

        Raises:
            StorageError: an ``s3://`` key naming another bucket.
        """
        if key.lower().startswith("s3://"):
            bucket, _, rest = key[len("s3://") :].partition("/")
            if bucket != self.bucket or not rest:
                raise StorageError(f"Object {key!r} is not in the store's bucket {self.bucket!r}")
            return rest
        return join_key(self.prefix, key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``<store prefix>/<prefix>``."""
        full = join_key(self.prefix, prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for o in page.get("Contents", []):
                    yield ObjectInfo(key=o["Key"], size=int(o["Size"]), etag=_etag(o.get("ETag")))
        except Exception as e:
            raise classify(e, f"list s3://{self.bucket}/{full}") from e

    def head(self, key: str) -> ObjectInfo:
        """HEAD one object: size and ETag."""
        try:
            r = self._client.head_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            raise classify(e, f"head s3://{self.bucket}/{key}") from e
        return ObjectInfo(key=key, size=int(r["ContentLength"]), etag=_etag(r.get("ETag")))

    def get_to_file(self, key: str, dest: Path) -> ObjectInfo:
        """GET one object and stream it into ``dest``."""
        what = f"get s3://{self.bucket}/{key}"
        try:
            r = self._client.get_object(Bucket=self.bucket, Key=key)
            body = r["Body"]
            with open(dest, "wb") as f:
                for block in iter(lambda: body.read(1 << 20), b""):
                    f.write(block)
        except StorageError:
            raise
        except Exception as e:
            raise classify(e, what) from e
        return ObjectInfo(key=key, size=int(r["ContentLength"]), etag=_etag(r.get("ETag")))
