"""Manifests of published artifact versions: scan a version folder, check it, build and compare manifests.

A manifest (schema ``manifest``) lists every published file of one release with its relative path, size and
sha256, the schema of each JSON artifact, and the facts a reader needs before downloading anything (model,
N, dim, created_at, code versions, published_at). Its ``content_sha256`` is a digest over the file list only
(not over ``published_at``), so two publishes of identical bytes have the same content digest::

    content_sha256 = sha256( for each file sorted by path: f"{sha256}  {size_bytes}  {path}\\n" )

The Node API recomputes the same digest (docs/publishing.md states the algorithm).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from research_job import artifact_checks
from research_job.errors import ArtifactError, ConfigError
from research_job.io.atomic import dumps_json
from research_job.layout import ArtifactLayout, artifact_of
from research_job.provenance import code_version, sha256_file, utc_now
from research_job.schema import read_artifact, validate

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = "1.0"
_RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class FileEntry:
    """One file of a version folder as the manifest records it."""

    path: str
    size_bytes: int
    sha256: str
    schema: str | None
    schema_version: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "schema": self.schema,
            "schema_version": self.schema_version,
        }


def is_published_path(rel: str, *, include_audio: bool) -> bool:
    """Whether the relative path ``rel`` (POSIX) of a version folder is published: by its entry's ``publish``
    rule in ``artifact_schema/artifacts.json`` (``always``; ``audio`` with ``include_audio`` only; ``never``).

    Never: a file the list does not know, ``*.tmp``, hidden files, the manifest itself.
    """
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(".tmp") or name.startswith(".") or rel == MANIFEST_NAME:
        return False
    entry = artifact_of(rel)
    if entry is None or entry.publish == "never":
        return False
    return entry.publish == "always" or include_audio


def scan_files(version_dir: str | os.PathLike[str], *, include_audio: bool = False) -> list[Path]:
    """Relative paths of the files of ``version_dir`` that are published, sorted by POSIX path."""
    root = Path(version_dir)
    if not root.is_dir():
        raise ArtifactError(f"Version folder not found: {root}")
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            full = Path(dirpath) / fn
            if full.is_symlink() or not full.is_file():
                continue
            rel = full.relative_to(root)
            if is_published_path(rel.as_posix(), include_audio=include_audio):
                out.append(rel)
    return sorted(out, key=lambda p: p.as_posix())


def _known_schema(rel: str) -> str | None:
    """The schema of a listed JSON file (None for other files)."""
    entry = artifact_of(rel)
    return entry.schema if entry is not None and entry.format == "json" and not entry.is_folder else None


def file_entries(version_dir: str | os.PathLike[str], *, include_audio: bool = False) -> list[FileEntry]:
    """Hash every published file of ``version_dir`` and validate each JSON artifact against its schema.

    Raises:
        ArtifactError: the folder is missing.
        SchemaValidationError: a JSON artifact does not match its schema.
    """
    root = Path(version_dir)
    entries = []
    for rel in scan_files(root, include_audio=include_audio):
        posix = rel.as_posix()
        full = root / rel
        schema = _known_schema(posix)
        schema_version = None
        if schema is not None:
            obj = read_artifact(full, schema)
            schema_version = obj.get("schema_version") if isinstance(obj, dict) else None
        entries.append(FileEntry(posix, full.stat().st_size, sha256_file(full), schema, schema_version))
    return entries


def content_digest(files: Iterable[FileEntry | dict[str, Any]]) -> str:
    """The manifest's ``content_sha256``: sha256 over ``"<sha256>  <size>  <path>\\n"`` lines sorted by path."""
    rows = []
    for f in files:
        d = f.to_json() if isinstance(f, FileEntry) else f
        rows.append((d["path"], f"{d['sha256']}  {d['size_bytes']}  {d['path']}\n"))
    h = hashlib.sha256()
    for _, line in sorted(rows):
        h.update(line.encode("utf-8"))
    return h.hexdigest()


def default_release(created_at: str) -> str:
    """Release name from the embeddings' ``created_at``: ``2026-11-22T04:00:00Z`` -> ``20261122T040000Z``."""
    try:
        dt = datetime.fromisoformat(created_at)
    except ValueError as e:
        raise ArtifactError(f"created_at {created_at!r} is not an ISO 8601 date-time") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def check_release(release: str) -> str:
    """Return ``release`` if it is a safe S3/SQL name (``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``), else raise."""
    if not _RELEASE_RE.match(release):
        raise ConfigError(
            f"Bad release {release!r}: use 1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"
        )
    return release


def _check_consistency(root: Path) -> dict[str, Any]:
    """Refuse a folder :mod:`research_job.artifact_checks` finds a problem in; return its embeddings_meta.

    Raises:
        ArtifactError: listing every problem (a required file missing, sizes, checksums, counts, ...).
    """
    layout = ArtifactLayout(root)
    problems = artifact_checks.check(layout)
    if problems:
        raise ArtifactError(f"Version folder {root} is not publishable: " + "; ".join(problems))
    return dict(read_artifact(layout.embeddings_meta, "embeddings_meta"))


def build_manifest(
    version_dir: str | os.PathLike[str] | ArtifactLayout,
    *,
    release: str | None = None,
    include_audio: bool = False,
    published_at: str | None = None,
) -> dict[str, Any]:
    """Scan, hash and check a version folder and return its manifest (validated against ``manifest``).

    Args:
        version_dir: the ``v1_model_<MODEL>`` folder (or its layout).
        release: release name; default derived from embeddings_meta ``created_at`` (:func:`default_release`).
        include_audio: also list ``audio_cache/`` and ``audio_wav/``.
        published_at: ISO time to record; default now (UTC).

    Raises:
        ArtifactError: a required file is missing or the artifacts disagree (sizes, checksums, counts).
        SchemaValidationError: a JSON artifact does not match its schema.
    """
    root = version_dir.version_dir if isinstance(version_dir, ArtifactLayout) else Path(version_dir)
    entries = file_entries(root, include_audio=include_audio)
    emeta = _check_consistency(root)
    rel = check_release(release if release is not None else default_release(emeta["created_at"]))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "artifact_version": emeta["artifact_version"],
        "release": rel,
        "model": emeta["model"]["name"],
        "count": emeta["count"],
        "dim": emeta["dim"],
        "created_at": emeta["created_at"],
        "code_version": emeta["code_version"],
        "publisher_version": code_version(),
        "published_at": published_at or utc_now(),
        "include_audio": include_audio,
        "content_sha256": content_digest(entries),
        "files": [e.to_json() for e in entries],
    }
    validate("manifest", manifest)
    return manifest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The exact bytes a manifest is stored as (sorted keys, 2-space indent, UTF-8, trailing newline)."""
    return dumps_json(manifest).encode("utf-8")


def diff_manifests(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences in published content between two manifests, one line per file (empty if identical)."""
    a = {f["path"]: f for f in old["files"]}
    b = {f["path"]: f for f in new["files"]}
    out = []
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            out.append(f"removed {path}")
        elif path not in a:
            out.append(f"added {path}")
        elif (a[path]["sha256"], a[path]["size_bytes"]) != (b[path]["sha256"], b[path]["size_bytes"]):
            out.append(f"changed {path}")
    return out


def verify_file(path: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    """Check a local file against its manifest entry (size, then sha256).

    Raises:
        ArtifactError: naming the file, the expected and the actual value.
    """
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{entry['path']}: file missing at {p}")
    size = p.stat().st_size
    if size != entry["size_bytes"]:
        raise ArtifactError(f"{entry['path']}: size {size} != manifest {entry['size_bytes']}")
    digest = sha256_file(p)
    if digest != entry["sha256"]:
        raise ArtifactError(f"{entry['path']}: sha256 {digest} != manifest {entry['sha256']}")
