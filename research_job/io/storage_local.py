"""A local directory used as the object store: key ``a/b.m4a`` is the file ``<root>/a/b.m4a``.

Keys may not escape the root: ``..`` components and absolute paths are refused as they are written, and a key
is resolved through every symbolic link before it is read, so a link that points out of the root (``a/x.wav ->
/etc/passwd``) is refused too, as is anything that is not a regular file (a folder, a FIFO, a device). Links that
stay inside the root are followed. The refusal is a :class:`~research_job.errors.StorageError` naming the key,
never the target's content; pull-audio records it as that track's failure. :meth:`LocalStore.list` skips such
entries with a warning. Verification uses size and sha256 (:attr:`ObjectInfo.sha256`), which
:meth:`LocalStore.head` computes from the file.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from research_job.errors import StorageError
from research_job.io.storage import ObjectInfo, ObjectNotFound, join_key
from research_job.provenance import sha256_copy, sha256_file

log = logging.getLogger(__name__)


class LocalStore:
    """Objects are regular files under ``root`` (after resolving symbolic links)."""

    kind = "local"
    endpoint_url: str | None = None

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise StorageError(f"Local object store directory not found: {root}")
        self.root = root
        #: the root with its own links resolved: what every key's real path must lie under
        self.real_root = root.resolve()
        self.url = str(root)

    def resolve_key(self, key: str) -> str:
        """Keys are relative to the root; an ``s3://bucket/key`` URI maps to ``key`` (the root mirrors a bucket)."""
        if key.lower().startswith("s3://"):
            key = key[len("s3://") :].partition("/")[2]
        return join_key("", key)

    def _path(self, key: str) -> Path:
        """The real path of ``key``'s regular file.

        Raises:
            StorageError: the key is not a safe relative path, resolves outside the root, or is no regular file.
            ObjectNotFound: nothing exists there.
        """
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in {"..", "."} for p in parts) or "\\" in key:
            raise StorageError(f"Object key {key!r} is not a safe relative path under {self.root}")
        try:
            real = self.root.joinpath(*parts).resolve()
        except (OSError, RuntimeError) as e:  # a link loop, a name too long
            raise StorageError(f"Object key {key!r} cannot be resolved under {self.root}: {e}") from e
        if not real.is_relative_to(self.real_root):
            raise StorageError(
                f"Object key {key!r} is a symbolic link that leads out of the store root {self.root}; refused"
            )
        try:
            mode = real.stat().st_mode
        except (FileNotFoundError, NotADirectoryError) as e:
            raise ObjectNotFound(f"No such object {key!r} in {self.root}") from e
        except OSError as e:
            raise StorageError(f"Cannot read object {key!r} in {self.root}: {e}") from e
        if not stat.S_ISREG(mode):
            raise StorageError(f"Object key {key!r} in {self.root} is not a regular file; refused")
        return real

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every regular file under the root whose relative key starts with ``prefix``, sorted by key.

        Entries that :meth:`head` would refuse (links out of the root, non-regular files) are skipped with a
        warning naming the key; folders are not descended through links.
        """
        keys: list[str] = []
        for top, dirs, files in os.walk(self.root):
            dirs.sort()
            rel_top = Path(top).relative_to(self.root)
            keys.extend((rel_top / f).as_posix() for f in files)
        for key in sorted(keys):
            if not key.startswith(prefix):
                continue
            try:
                p = self._path(key)
            except ObjectNotFound:  # removed while listing
                continue
            except StorageError as e:
                log.warning("local store: skipping %s", e)
                continue
            yield ObjectInfo(key=key, size=p.stat().st_size)

    def head(self, key: str) -> ObjectInfo:
        """Size and sha256 of the file of ``key``.

        Raises:
            ObjectNotFound: no such file; StorageError: the key is refused (see the module docstring).
        """
        p = self._path(key)
        return ObjectInfo(key=key, size=p.stat().st_size, sha256=sha256_file(p))

    def get_to_file(self, key: str, dest: Path) -> ObjectInfo:
        """Copy the file of ``key`` to ``dest``; its size and sha256 are measured on the way (one read).

        Raises:
            ObjectNotFound: no such file; StorageError: the key is refused, or the copy fails.
        """
        path = self._path(key)
        # the resolved path is opened without following a link (one swapped in since the check fails) and
        # without blocking (a FIFO swapped in is refused by the fstat, not waited on)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            with open(os.open(path, flags), "rb") as src:
                if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                    raise StorageError(f"Object key {key!r} in {self.root} is not a regular file; refused")
                with open(dest, "wb") as out:
                    size, sha = sha256_copy(src, out)
        except FileNotFoundError as e:
            raise ObjectNotFound(f"No such object {key!r} in {self.root}") from e
        except OSError as e:
            raise StorageError(f"Cannot copy {key!r} from {self.root}: {e}") from e
        return ObjectInfo(key=key, size=size, sha256=sha)
