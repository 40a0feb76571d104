"""Provenance recorded in every artifact, one way each: the code version, the timestamp, file checksums.

Every report, sidecar and manifest the research job writes takes its ``code_version``, ``created_at`` and
sha256 values from here, so two artifacts of one run never disagree on how they were made (``0.1.0`` in one
report and ``0.1.0+g<sha>`` in the next was how that went wrong before).
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from research_job import __version__

_CHUNK = 1 << 20


@functools.cache
def code_version() -> str:
    """``0.1.0+g1234567`` inside a git checkout, else the package version ``0.1.0``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=7", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__


def utc_now() -> str:
    """The current UTC time in RFC 3339 form with second precision: ``2026-11-22T04:00:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_copy(src: BinaryIO, dst: BinaryIO) -> tuple[int, str]:
    """Copy ``src`` to ``dst`` in 1 MiB chunks, hashing on the way: (bytes copied, hex sha256), one read."""
    h = hashlib.sha256()
    size = 0
    for block in iter(lambda: src.read(1 << 20), b""):
        h.update(block)
        dst.write(block)
        size += len(block)
    return size, h.hexdigest()


def sha256_files(paths: Sequence[str | os.PathLike[str]]) -> str:
    """One checksum over several files (weights): sorted by path, each file's name and digest hashed in turn."""
    h = hashlib.sha256()
    for p in sorted(map(str, paths)):
        h.update(os.path.basename(p).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()
