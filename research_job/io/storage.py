"""Object stores behind one small protocol: ``list``, ``head``, ``get_to_file``.

Two backends: a local directory used as the object store (:mod:`research_job.io.storage_local`, the embedded
default) and S3 or any S3-compatible service (:mod:`research_job.io.storage_s3`, boto3). :func:`open_store`
picks one from the source string: ``s3://bucket/prefix`` or a directory path (``file://`` URLs too).

Errors are classified so callers can retry the right ones: :class:`ObjectNotFound` (404: never retried),
:class:`TransientStorageError` (5xx, throttling, timeouts, connection errors: retry with backoff), and plain
:class:`~research_job.errors.StorageError` for everything else (403, bad bucket: never retried).

Keys: an object's key is the catalogue's ``audio_s3_key``; when the store has a prefix and the key does not
already start with it, the key is taken relative to the prefix (``prefix/key``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from research_job.errors import StorageError


class ObjectNotFound(StorageError):
    """The key does not exist in the store (HTTP 404 / no such file)."""


class TransientStorageError(StorageError):
    """A failure worth retrying: 5xx, throttling, timeouts, dropped connections."""


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object."""

    key: str
    size: int
    #: S3 ETag without quotes (md5 hex for single-part uploads, ``<md5>-<parts>`` for multipart); None locally
    etag: str | None = None
    #: hex sha256 of the content when the store knows it cheaply (local files), else None
    sha256: str | None = None

    @property
    def etag_is_md5(self) -> bool:
        """True when the ETag is the md5 of the content (single-part upload, no SSE-KMS)."""
        e = self.etag
        return e is not None and len(e) == 32 and all(c in "0123456789abcdef" for c in e.lower())


class ObjectStore(Protocol):
    """What pull-audio needs of an object store."""

    #: ``s3`` or ``local``
    kind: str
    #: how the store is shown in logs and reports (no credentials)
    url: str
    endpoint_url: str | None

    def resolve_key(self, key: str) -> str:
        """The full key of a catalogue key (prefix applied when the key does not already carry it)."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose full key starts with ``prefix`` (relative to the store's own prefix)."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Metadata of one object (``key`` as returned by :meth:`resolve_key`).

        Raises:
            ObjectNotFound, TransientStorageError, StorageError.
        """
        ...

    def get_to_file(self, key: str, dest: Path) -> ObjectInfo:
        """Download one object into ``dest`` (overwritten; the caller makes it atomic) and return its info.

        Raises:
            ObjectNotFound, TransientStorageError, StorageError.
        """
        ...


def join_key(prefix: str, key: str) -> str:
    """``prefix`` + ``key`` unless ``key`` already starts with ``prefix/`` (no double slashes)."""
    key = key.lstrip("/")
    prefix = prefix.strip("/")
    if not prefix or key == prefix or key.startswith(prefix + "/"):
        return key
    return f"{prefix}/{key}"


def open_store(
    source: str | os.PathLike[str],
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    timeout_sec: float = 60.0,
) -> ObjectStore:
    """Open the object store named by ``source``.

    Args:
        source: ``s3://bucket[/prefix]``, ``file:///abs/dir`` or a local directory path.
        endpoint_url: S3-compatible endpoint (MinIO, moto, LocalStack); None = AWS.
        region: AWS region (None = from the standard AWS chain).
        profile: AWS profile name (None = the standard credential chain).
        timeout_sec: connect/read timeout of each S3 request.

    Raises:
        ConfigError: empty source or a malformed ``s3://`` URL.
        StorageError: the local directory does not exist.
    """
    from research_job.errors import ConfigError

    s = os.fspath(source).strip()
    if not s:
        raise ConfigError("No object store given: set pull_audio.source to s3://bucket/prefix or a directory")
    if s.lower().startswith("s3://"):
        from research_job.io.storage_s3 import S3Store

        return S3Store.from_url(
            s, endpoint_url=endpoint_url, region=region, profile=profile, timeout_sec=timeout_sec
        )
    if "://" in s and not s.lower().startswith("file://"):
        raise ConfigError(
            f"Unknown object store {s!r}. Known: s3://bucket/prefix, file:///dir, a directory path"
        )
    from research_job.io.storage_local import LocalStore

    return LocalStore(Path(s[len("file://") :] if s.lower().startswith("file://") else s))
