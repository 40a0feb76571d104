"""pull-audio: object store (S3 or a local directory) -> ``audio_cache/<album_id>/<track_id>.<ext>``.

For every row of ``metadata/tracks_metadata.csv``, concurrently (``workers`` threads):

* a file already in the cache is checked against the store with one HEAD: same size and, for S3
  single-part uploads, md5 == ETag (multipart ETags: size only); for a local store size + sha256. A verified
  file is ``skipped_verified`` (no GET);
* otherwise the object is downloaded to ``<file>.tmp`` (a stale ``.tmp`` from an interrupted run is
  overwritten), checked against the size and ETag the GET returned, fsynced and renamed into place;
* transient errors (5xx, throttling, timeouts, dropped connections, a short read) are retried up to
  ``max_attempts`` times with exponential backoff and jitter; 404 (``missing``) and 403 (``failed``) are not.

A missing or failed track is recorded in ``audio_cache/pull_report.json`` and does not stop the others; the
step raises only when no track at all could be pulled (after writing the report).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from research_job.config import CommonConfig, option
from research_job.errors import ConfigError, StorageError
from research_job.io.retry import Attempts
from research_job.io.storage import ObjectInfo, ObjectNotFound, ObjectStore, TransientStorageError, open_store
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import code_version, utc_now
from research_job.schema import write_artifact
from research_job.steps import Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullAudioConfig:
    """pull-audio: object store -> audio_cache/<album_id>/<track_id>.<ext>."""

    common: CommonConfig = field(default_factory=CommonConfig)
    source: str = option("", "the object store: s3://bucket/prefix or a local folder used as one")
    endpoint_url: str | None = option(None, "S3-compatible endpoint (MinIO, moto, ...); unset = AWS")
    region: str | None = option(None, "AWS region; unset = from the standard AWS configuration")
    workers: int = option(8, "concurrent downloads")
    max_attempts: int = option(5, "tries per object on transient errors (5xx, throttling, timeouts)")
    backoff_sec: float = option(0.5, "first retry delay in seconds; doubles each attempt, with jitter")
    aws_profile: str | None = option(
        None, "AWS profile; unset = the standard credential chain (env, shared files, instance/task role)"
    )
    timeout_sec: float = option(60.0, "connect/read timeout of each S3 request, seconds")


def check(cfg: PullAudioConfig) -> None:
    """Refuse counts and delays that cannot work, and a missing source, before anything is read.

    Raises:
        ConfigError: naming the bad value.
    """
    if cfg.workers < 1 or cfg.max_attempts < 1 or cfg.backoff_sec < 0 or cfg.timeout_sec <= 0:
        raise ConfigError(
            f"pull-audio needs workers >= 1, max_attempts >= 1, backoff_sec >= 0, timeout_sec > 0; got "
            f"workers={cfg.workers}, max_attempts={cfg.max_attempts}, backoff_sec={cfg.backoff_sec}, "
            f"timeout_sec={cfg.timeout_sec}"
        )
    if not cfg.source.strip():
        raise ConfigError("No object store given: set pull_audio.source to s3://bucket/prefix or a directory")


class VerificationError(TransientStorageError):
    """A downloaded file does not match the size or checksum the store announced (retried)."""


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, info: ObjectInfo) -> str | None:
    """Check a local file against the store's metadata.

    Returns:
        How it was verified (``sha256``, ``md5`` or ``size``), or ``None`` if it does not match.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size != info.size:
        return None
    if info.sha256 is not None:
        return "sha256" if _file_digest(path, "sha256") == info.sha256 else None
    if info.etag_is_md5:
        assert info.etag is not None
        return "md5" if _file_digest(path, "md5") == info.etag.lower() else None
    return "size"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pull_one(
    store: ObjectStore, layout: ArtifactLayout, row: TrackRow, *, max_attempts: int, backoff_sec: float
) -> dict[str, Any]:
    """Pull one track into the cache; never raises for a per-track problem. Returns its report entry."""
    t0 = time.perf_counter()
    dest = layout.cached_audio(row.album_id, row.track_id, row.audio_ext)
    tries = Attempts(max_attempts, backoff_sec)
    entry: dict[str, Any] = {
        "track_id": row.track_id,
        "album_id": row.album_id,
        "key": row.audio_s3_key,
        "path": None,
        "status": "failed",
        "reason": None,
        "attempts": 0,
        "size_bytes": None,
        "etag": None,
        "verified_by": None,
    }
    downloaded = False
    try:
        key = entry["key"] = store.resolve_key(row.audio_s3_key)
        verified: str | None = None
        info: ObjectInfo | None = None
        if dest.is_file():
            info = tries.call(lambda: store.head(key))
            verified = verify_file(dest, info)
        if verified is None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")

            def download() -> tuple[ObjectInfo, str]:
                got = store.get_to_file(key, tmp)
                how = verify_file(tmp, got)
                if how is None:
                    actual = tmp.stat().st_size if tmp.exists() else 0
                    raise VerificationError(
                        f"downloaded {key!r} does not match the store: {actual} bytes, expected {got.size}"
                        + (f" with ETag {got.etag}" if got.etag else "")
                    )
                return got, how

            try:
                info, verified = tries.call(download)
                _fsync_file(tmp)
                os.replace(tmp, dest)
                downloaded = True
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        assert info is not None
        entry.update(
            status="downloaded" if downloaded else "skipped_verified",
            path=dest.relative_to(layout.version_dir).as_posix(),
            size_bytes=info.size,
            etag=info.etag,
            verified_by=verified,
        )
    except ObjectNotFound as e:
        entry.update(status="missing", reason=str(e))
    except StorageError as e:
        entry.update(status="failed", reason=str(e))
    except OSError as e:  # local disk trouble: record it, keep going with the other tracks
        entry.update(status="failed", reason=f"{type(e).__name__}: {e}")
    entry["attempts"] = tries.count
    entry["elapsed_sec"] = round(time.perf_counter() - t0, 6)
    return entry


def run(cfg: PullAudioConfig) -> dict[str, Any]:
    """Pull every track of ``tracks_metadata.csv`` into ``audio_cache/`` and write ``pull_report.json``.

    Raises:
        ConfigError: no source, bad worker/attempt counts.
        MetadataError: ``tracks_metadata.csv`` missing or invalid.
        StorageError: the store cannot be opened, or not a single track could be pulled.
    """
    check(cfg)
    layout = cfg.common.layout
    rows = read_tracks_csv(layout.tracks_csv)
    store = open_store(
        cfg.source,
        endpoint_url=cfg.endpoint_url,
        region=cfg.region,
        profile=cfg.aws_profile,
        timeout_sec=cfg.timeout_sec,
    )
    log.info("pull-audio: %d tracks from %s with %d workers", len(rows), store.url, cfg.workers)
    t0 = time.perf_counter()
    entries: list[dict[str, Any] | None] = [None] * len(rows)
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        futures = {
            pool.submit(
                pull_one, store, layout, row, max_attempts=cfg.max_attempts, backoff_sec=cfg.backoff_sec
            ): i
            for i, row in enumerate(rows)
        }
        with tqdm(total=len(rows), desc="pull-audio", unit="track", disable=None) as bar:
            for fut in as_completed(futures):
                e = fut.result()
                entries[futures[fut]] = e
                if e["status"] in {"missing", "failed"}:
                    log.warning("pull-audio: %s %s: %s", e["track_id"], e["status"], e["reason"])
                bar.update(1)
    done = [e for e in entries if e is not None]
    elapsed = time.perf_counter() - t0
    counts = {
        s: sum(e["status"] == s for e in done)
        for s in ("downloaded", "skipped_verified", "missing", "failed")
    }
    report: dict[str, Any] = {
        "schema_version": "1.0",
        "artifact_version": layout.version_dir.name,
        "source": {"kind": store.kind, "url": store.url, "endpoint_url": store.endpoint_url},
        "params": {"workers": cfg.workers, "max_attempts": cfg.max_attempts, "backoff_sec": cfg.backoff_sec},
        "counts": {"tracks": len(done), **counts},
        "bytes_downloaded": sum(e["size_bytes"] or 0 for e in done if e["status"] == "downloaded"),
        "elapsed_sec": round(elapsed, 6),
        "tracks": done,
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    write_artifact(layout.pull_report, "pull_report", report)
    log.info(
        "pull-audio: %d downloaded, %d already verified, %d missing, %d failed in %.2fs (%.1f MB)",
        counts["downloaded"],
        counts["skipped_verified"],
        counts["missing"],
        counts["failed"],
        elapsed,
        report["bytes_downloaded"] / 1e6,
    )
    if done and counts["downloaded"] + counts["skipped_verified"] == 0:
        raise StorageError(
            f"pull-audio: none of {len(done)} tracks could be pulled from {store.url} "
            f"({counts['missing']} missing, {counts['failed']} failed); see {layout.pull_report}"
        )
    return report


STEP = Step(
    name="pull_audio",
    config=PullAudioConfig,
    summary="Pull every track's audio object into audio_cache/ (concurrent, retried, resumable).",
    example="research-job pull-audio --source .cache/demo_corpus/store --workers 4",
    run=run,
    check=check,
    pipeline=20,
)
