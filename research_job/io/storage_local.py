"""A local directory used as the object store: key ``a/b.m4a`` is the file ``<root>/a/b.m4a``.

Keys may not escape the root (``..`` components and absolute paths are refused). Verification uses size and
sha256 (:attr:`ObjectInfo.sha256`), which :meth:`LocalStore.head` computes from the file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from research_job.errors import StorageError
from research_job.io.storage import ObjectInfo, ObjectNotFound, join_key
from research_job.provenance import sha256_file


class LocalStore:
    """Objects are files under ``root``."""

    kind = "local"
    endpoint_url: str | None = None

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise StorageError(f"Local object store directory not found: {root}")
        self.root = root
        self.url = str(root)

    def resolve_key(self, key: str) -> str:
        """Keys are relative to the root; an ``s3://bucket/key`` URI maps to ``key`` (the root mirrors a bucket)."""
        if key.lower().startswith("s3://"):
            key = key[len("s3://") :].partition("/")[2]
        return join_key("", key)

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in {"..", "."} for p in parts) or "\\" in key:
            raise StorageError(f"Object key {key!r} is not a safe relative path under {self.root}")
        return self.root.joinpath(*parts)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every file under the root whose relative key starts with ``prefix``, sorted by key."""
        for p in sorted(self.root.rglob("*")):
            if p.is_file():
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield ObjectInfo(key=key, size=p.stat().st_size)

    def head(self, key: str) -> ObjectInfo:
        """Size and sha256 of the file of ``key``."""
        p = self._path(key)
        if not p.is_file():
            raise ObjectNotFound(f"No such object {key!r} in {self.root}")
        return ObjectInfo(key=key, size=p.stat().st_size, sha256=sha256_file(p))

    def get_to_file(self, key: str, dest: Path) -> ObjectInfo:
        """Copy the file of ``key`` to ``dest``."""
        info = self.head(key)
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError as e:
            raise ObjectNotFound(f"No such object {key!r} in {self.root}") from e
        except OSError as e:
            raise StorageError(f"Cannot copy {key!r} from {self.root}: {e}") from e
        return info
