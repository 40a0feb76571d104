"""Publish an artifact version folder to S3 (or an S3-compatible store) and download + verify it back.

Layout (``<prefix>`` defaults to ``vector-artifacts``)::

    s3://<bucket>/<prefix>/v1_model_<MODEL>/<release>/<relative path of each file>
    s3://<bucket>/<prefix>/v1_model_<MODEL>/<release>/manifest.json      uploaded last
    s3://<bucket>/<prefix>/latest/v1_model_<MODEL>.json                    moved after the manifest

Order of a publish: (1) scan, hash and check the local folder, build the manifest; (2) if the release already
has a manifest, compare: identical content -> nothing is uploaded ("unchanged"), different content -> refused
naming the files unless ``force``; (3) upload every file (multipart above a threshold) with its sha256 as object
metadata, skipping objects already present with the same size and sha256 (an interrupted publish resumes);
(4) HEAD every object: size, ``sha256`` metadata and (optionally) the ETag recomputed locally; (5) put the
manifest; (6) move the ``latest`` pointer. A reader that follows ``latest`` therefore only ever reaches a
release whose every file was verified. Credentials come from the standard AWS chain; none are logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_job.errors import ArtifactError, ConfigError, SchemaValidationError, StorageError
from research_job.layout import LAYOUT_VERSION, version_name
from research_job.provenance import sha256_bytes, sha256_file
from research_job.publish.manifest import (
    MANIFEST_NAME,
    build_manifest,
    check_release,
    content_digest,
    diff_manifests,
    manifest_bytes,
    verify_file,
)
from research_job.schema import validate

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "vector-artifacts"
SHA256_METADATA = "sha256"
_MD5_BLOCK = 1 << 20


def make_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client for publishing (:func:`research_job.io.storage_s3.s3_client`, 5 attempts per call)."""
    from research_job.io.storage_s3 import s3_client

    return s3_client(endpoint_url=endpoint_url, region=region, max_attempts=5)


def artifact_version_of(model: str) -> str:
    """``musicnn-msd`` -> ``v1_model_musicnn-msd``; an artifact version name is returned unchanged."""
    if model.startswith(f"{LAYOUT_VERSION}_model_"):
        return model
    return version_name(model)


def _norm_prefix(prefix: str) -> str:
    p = prefix.strip("/")
    if any(part in {"", ".", ".."} for part in p.split("/")) and p:
        raise ConfigError(f"Bad S3 prefix {prefix!r}: empty, '.' or '..' path components")
    return p + "/" if p else ""


def release_prefix(prefix: str, artifact_version: str, release: str) -> str:
    """Key prefix of one release: ``<prefix>/v1_model_<MODEL>/<release>/``."""
    return f"{_norm_prefix(prefix)}{artifact_version}/{check_release(release)}/"


def latest_key(prefix: str, artifact_version: str) -> str:
    """Key of the latest pointer of one artifact version: ``<prefix>/latest/v1_model_<MODEL>.json``."""
    return f"{_norm_prefix(prefix)}latest/{artifact_version}.json"


def _error_code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__))


def _storage_error(what: str, bucket: str, key: str, e: Exception) -> StorageError:
    return StorageError(f"{what} s3://{bucket}/{key} failed: {_error_code(e)}: {e}")


def _head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HEAD an object; None if it does not exist."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return dict(client.head_object(Bucket=bucket, Key=key))
    except ClientError as e:
        if _error_code(e) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise _storage_error("HEAD", bucket, key, e) from e
    except BotoCoreError as e:
        raise _storage_error("HEAD", bucket, key, e) from e


def _get_bytes(client: Any, bucket: str, key: str) -> bytes | None:
    """GET an object's bytes; None if it does not exist."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as e:
        if _error_code(e) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise _storage_error("GET", bucket, key, e) from e
    except BotoCoreError as e:
        raise _storage_error("GET", bucket, key, e) from e


def expected_etag(path: str | os.PathLike[str], size: int, threshold: int, chunksize: int) -> str:
    """The ETag S3 computes for ``path`` uploaded by boto3 with this threshold/chunk size.

    Single part: the MD5 hex. Multipart: MD5 of the concatenated part MD5s, ``-<parts>``; the part size is
    the one s3transfer uses (``ChunksizeAdjuster``: at least 5 MiB, at most 10,000 parts).
    """
    from s3transfer.utils import ChunksizeAdjuster

    if size < threshold:
        h = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while block := f.read(_MD5_BLOCK):
                h.update(block)
        return h.hexdigest()
    part = ChunksizeAdjuster().adjust_chunksize(chunksize, size)
    digests = []
    with open(path, "rb") as f:
        while True:
            h = hashlib.md5(usedforsecurity=False)
            left = part
            while left > 0 and (block := f.read(min(_MD5_BLOCK, left))):
                h.update(block)
                left -= len(block)
            if left == part:
                break
            digests.append(h.digest())
    return hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + f"-{len(digests)}"


def _object_matches(head: dict[str, Any] | None, entry: dict[str, Any], etag: str | None) -> tuple[bool, str]:
    """Whether a HEAD result matches a manifest entry; (ok, reason)."""
    if head is None:
        return False, "missing"
    if int(head.get("ContentLength", -1)) != entry["size_bytes"]:
        return False, f"size {head.get('ContentLength')} != {entry['size_bytes']}"
    got = (head.get("Metadata") or {}).get(SHA256_METADATA)
    if got != entry["sha256"]:
        return False, f"sha256 metadata {got!r} != {entry['sha256']}"
    if etag is not None and str(head.get("ETag", "")).strip('"') != etag:
        return False, f"ETag {head.get('ETag')} != {etag}"
    return True, "ok"


def _content_type(path: str) -> str:
    if path.endswith(".json"):
        return "application/json"
    if path.endswith(".csv"):
        return "text/csv; charset=utf-8"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


@dataclass
class _Publish:
    """What the phases of one :func:`publish_s3` share: where it goes, what it puts there, the report so far."""

    s3: Any
    bucket: str
    root: Path  # the local version folder
    manifest: dict[str, Any]
    vprefix: str  # key prefix of the release
    mkey: str  # key of its manifest
    lkey: str  # key of the latest pointer of its artifact version
    transfer: Any  # boto3 TransferConfig: multipart_threshold, multipart_chunksize, max_concurrency
    verify_etag: bool
    report: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.report["status"])


def publish_s3(
    version_dir: str | os.PathLike[str],
    *,
    bucket: str,
    prefix: str = DEFAULT_PREFIX,
    release: str | None = None,
    include_audio: bool = False,
    force: bool = False,
    set_latest: bool = True,
    endpoint_url: str | None = None,
    region: str | None = None,
    multipart_threshold: int = 64 * 1024 * 1024,
    multipart_chunksize: int = 16 * 1024 * 1024,
    max_concurrency: int = 8,
    verify_etag: bool = True,
    client: Any = None,
    on_file_done: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Publish a version folder as one release; return a report (status, counts, bytes, timings, keys).

    Args:
        version_dir: the local ``v1_model_<MODEL>`` folder.
        bucket, prefix: destination; keys as in the module docstring.
        release: release name (default from the embeddings' created_at).
        include_audio: also upload ``audio_cache/`` and ``audio_wav/``.
        force: overwrite a release that holds different content (stale objects are deleted afterwards).
        set_latest: move ``<prefix>/latest/<artifact_version>.json`` to this release.
        endpoint_url, region: overrides of the AWS chain (S3-compatible stores); ignored with ``client``.
        multipart_threshold, multipart_chunksize, max_concurrency: boto3 transfer settings.
        verify_etag: also compare ETags with the locally computed MD5 / multipart MD5.
        client: a boto3 S3 client to use instead of making one.
        on_file_done: called with each relative path once its object is verified (progress; tests use it to
            interrupt a publish).

    Raises:
        ArtifactError: the folder is incomplete/inconsistent, or the release holds different content and
            ``force`` is off (the message names the differing files).
        StorageError: an S3 call failed or an uploaded object does not verify.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if not bucket:
        raise ConfigError("publish to S3 needs a bucket (--bucket or RESEARCH_JOB_BUCKET)")
    if multipart_threshold < 1 or multipart_chunksize < 1 or max_concurrency < 1:
        raise ConfigError("multipart_threshold, multipart_chunksize and max_concurrency must be >= 1")
    t0 = time.perf_counter()
    pub = _scan(
        Path(version_dir),
        t0,
        bucket=bucket,
        prefix=prefix,
        release=release,
        include_audio=include_audio,
        client=client,
        endpoint_url=endpoint_url,
        region=region,
        multipart_threshold=multipart_threshold,
        multipart_chunksize=multipart_chunksize,
        max_concurrency=max_concurrency,
        verify_etag=verify_etag,
    )
    try:
        rewrite_manifest = _compare_with_release(pub, force=force)
        _upload_files(pub, on_file_done)
        # an unchanged release whose objects or manifest had to be mended
        if pub.status == "unchanged" and (rewrite_manifest or pub.report["uploaded"]):
            pub.report["status"] = "repaired"
        manifest_sha256 = _put_manifest(pub, rewrite=rewrite_manifest)
        if set_latest:
            _move_latest(pub, manifest_sha256)
        if pub.status == "overwritten":
            _delete_stale(pub)
    except NoCredentialsError as e:
        raise StorageError(
            "No AWS credentials found (standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "~/.aws/credentials, container or instance role)"
        ) from e
    except (ClientError, BotoCoreError, Boto3Error) as e:  # Boto3Error: S3UploadFailedError from upload_file
        raise StorageError(f"S3 publish to s3://{bucket}/{pub.vprefix} failed: {_error_code(e)}: {e}") from e
    return _finish_report(pub, t0)


def _scan(
    root: Path,
    t0: float,
    *,
    bucket: str,
    prefix: str,
    release: str | None,
    include_audio: bool,
    client: Any,
    endpoint_url: str | None,
    region: str | None,
    multipart_threshold: int,
    multipart_chunksize: int,
    max_concurrency: int,
    verify_etag: bool,
) -> _Publish:
    """Scan, hash and check the local folder, build its manifest, name the keys and start the report."""
    from boto3.s3.transfer import TransferConfig

    manifest = build_manifest(root, release=release, include_audio=include_audio)
    t_scan = time.perf_counter() - t0
    artifact_version, rel = manifest["artifact_version"], manifest["release"]
    vprefix = release_prefix(prefix, artifact_version, rel)
    mkey = vprefix + MANIFEST_NAME
    lkey = latest_key(prefix, artifact_version)
    s3 = client if client is not None else make_client(endpoint_url, region)
    log.info(
        "publish %s release %s -> s3://%s/%s (%d files, scanned in %.2fs)",
        artifact_version,
        rel,
        bucket,
        vprefix,
        len(manifest["files"]),
        t_scan,
    )
    report: dict[str, Any] = {
        "target": "s3",
        "bucket": bucket,
        "artifact_version": artifact_version,
        "release": rel,
        "version_prefix": vprefix,
        "manifest_key": mkey,
        "latest_key": lkey,
        "content_sha256": manifest["content_sha256"],
        "files": len(manifest["files"]),
        "bytes_total": sum(f["size_bytes"] for f in manifest["files"]),
        "uploaded": 0,
        "skipped": 0,
        "bytes_uploaded": 0,
        "multipart_uploads": 0,
        "deleted_stale": 0,
        "latest_moved": False,
    }
    return _Publish(
        s3=s3,
        bucket=bucket,
        root=root,
        manifest=manifest,
        vprefix=vprefix,
        mkey=mkey,
        lkey=lkey,
        transfer=TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        ),
        verify_etag=verify_etag,
        report=report,
    )


def _compare_with_release(pub: _Publish, *, force: bool) -> bool:
    """Compare with the manifest the release already has, if any; set the report's status; return whether the
    manifest must be (re)written.

    No manifest: ``published``. Same content: ``unchanged``, keeping what the first publish recorded.
    Different (or unreadable) content: ``overwritten`` with ``force``, else :class:`ArtifactError` naming the
    differing files.
    """
    old_raw = _get_bytes(pub.s3, pub.bucket, pub.mkey)
    status = "published"
    rewrite_manifest = True
    if old_raw is not None:
        manifest = pub.manifest
        old = _parse_manifest(old_raw, f"s3://{pub.bucket}/{pub.mkey}")
        diffs = diff_manifests(old, manifest) if old is not None else ["manifest.json is unreadable"]
        if old is not None and not diffs and old["content_sha256"] == manifest["content_sha256"]:
            status = "unchanged"
            # keep what the first publish recorded; rewrite only if the stored manifest was altered
            pub.manifest = {
                **manifest,
                "published_at": old["published_at"],
                "publisher_version": old["publisher_version"],
            }
            rewrite_manifest = manifest_bytes(pub.manifest) != old_raw
        elif not force:
            shown = ", ".join(diffs[:20]) + (f" (+{len(diffs) - 20} more)" if len(diffs) > 20 else "")
            raise ArtifactError(
                f"Release {manifest['release']!r} of {manifest['artifact_version']} already exists at "
                f"s3://{pub.bucket}/{pub.vprefix} with different content: {shown}. "
                "Publish under another --release, or pass --force to overwrite"
            )
        else:
            status = "overwritten"
    pub.report["status"] = status
    return rewrite_manifest


def _upload_files(pub: _Publish, on_file_done: Callable[[str], None] | None) -> None:
    """Upload every file of the manifest, ``max_concurrency`` at a time; count uploads and skips in the report."""
    report = pub.report
    t1 = time.perf_counter()
    sizes = {f["path"]: f["size_bytes"] for f in pub.manifest["files"]}
    # largest first so the long multipart uploads overlap with the many small files
    todo = sorted(pub.manifest["files"], key=lambda f: -f["size_bytes"])
    with ThreadPoolExecutor(max_workers=max(1, min(pub.transfer.max_concurrency, len(todo)))) as pool:
        pending = {pool.submit(_put_file, pub, f) for f in todo}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    path, uploaded, multipart = fut.result()
                    if uploaded:
                        report["uploaded"] += 1
                        report["bytes_uploaded"] += sizes[path]
                        report["multipart_uploads"] += int(multipart)
                    else:
                        report["skipped"] += 1
                    if on_file_done is not None:
                        on_file_done(path)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    t_upload = time.perf_counter() - t1
    report["upload_sec"] = round(t_upload, 3)


def _put_file(pub: _Publish, entry: dict[str, Any]) -> tuple[str, bool, bool]:
    """Upload one file unless an identical object is there; verify; (path, uploaded, multipart)."""
    key = pub.vprefix + entry["path"]
    local = pub.root / entry["path"]
    # an object already there is matched on size + stored sha256 only: its ETag depends on the part
    # size of the upload that made it, which may have used other transfer settings
    ok, _ = _object_matches(_head(pub.s3, pub.bucket, key), entry, None)
    if ok:
        return entry["path"], False, False
    if pub.status == "unchanged":
        log.warning("repairing s3://%s/%s (does not match the manifest)", pub.bucket, key)
    verify_file(local, entry)  # the bytes about to go up are the ones the manifest lists
    pub.s3.upload_file(
        str(local),
        pub.bucket,
        key,
        ExtraArgs={
            "Metadata": {SHA256_METADATA: entry["sha256"]},
            "ContentType": _content_type(entry["path"]),
        },
        Config=pub.transfer,
    )
    ok, why = _object_matches(_head(pub.s3, pub.bucket, key), entry, _expected_etag_of(pub, entry))
    if not ok:
        raise StorageError(f"Uploaded s3://{pub.bucket}/{key} does not verify: {why}")
    return entry["path"], True, entry["size_bytes"] >= pub.transfer.multipart_threshold


def _expected_etag_of(pub: _Publish, entry: dict[str, Any]) -> str | None:
    """The ETag the uploaded object must have; None when ETags are not checked."""
    if not pub.verify_etag:
        return None
    return expected_etag(
        pub.root / entry["path"],
        entry["size_bytes"],
        pub.transfer.multipart_threshold,
        pub.transfer.multipart_chunksize,
    )


def _put_manifest(pub: _Publish, *, rewrite: bool) -> str:
    """Put the manifest (if ``rewrite``), after every file; read it back; return its sha256."""
    written: bytes | None = None
    if rewrite:
        written = manifest_bytes(pub.manifest)
        pub.s3.put_object(
            Bucket=pub.bucket,
            Key=pub.mkey,
            Body=written,
            ContentType="application/json",
            Metadata={SHA256_METADATA: sha256_bytes(written)},
        )
    stored = _get_bytes(pub.s3, pub.bucket, pub.mkey)
    if (
        stored is None
        or (written is not None and stored != written)
        or json.loads(stored)["content_sha256"] != pub.manifest["content_sha256"]
    ):
        raise StorageError(f"Manifest s3://{pub.bucket}/{pub.mkey} does not read back as written")
    msha = sha256_bytes(stored)
    pub.report["manifest_sha256"] = msha
    return msha


def _move_latest(pub: _Publish, manifest_sha256: str) -> None:
    """Point ``latest`` at this release's manifest, unless it already points there."""
    manifest = pub.manifest
    pointer = {
        "schema_version": "1.0",
        "artifact_version": manifest["artifact_version"],
        "model": manifest["model"],
        "release": manifest["release"],
        "version_prefix": pub.vprefix,
        "manifest_key": pub.mkey,
        "manifest_sha256": manifest_sha256,
        "content_sha256": manifest["content_sha256"],
        "published_at": manifest["published_at"],
    }
    validate("latest_pointer", pointer)
    current_raw = _get_bytes(pub.s3, pub.bucket, pub.lkey)
    current = json.loads(current_raw) if current_raw is not None else None
    if current is None or (current.get("manifest_key"), current.get("manifest_sha256")) != (
        pub.mkey,
        manifest_sha256,
    ):
        data = json.dumps(pointer, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        pub.s3.put_object(
            Bucket=pub.bucket,
            Key=pub.lkey,
            Body=data,
            ContentType="application/json",
            CacheControl="no-cache",
            Metadata={SHA256_METADATA: sha256_bytes(data)},
        )
        pub.report["latest_moved"] = True


def _delete_stale(pub: _Publish) -> None:
    """After an overwrite: delete the release's objects that the new manifest does not list."""
    keep = {pub.vprefix + f["path"] for f in pub.manifest["files"]} | {pub.mkey}
    stale = [k for k in _list_keys(pub.s3, pub.bucket, pub.vprefix) if k not in keep]
    for k in stale:
        pub.s3.delete_object(Bucket=pub.bucket, Key=k)
    pub.report["deleted_stale"] = len(stale)


def _finish_report(pub: _Publish, t0: float) -> dict[str, Any]:
    """Add the wall time and the upload rate to the report, log its summary, return it."""
    report = pub.report
    wall = time.perf_counter() - t0
    report["wall_sec"] = round(wall, 3)
    report["upload_mb_per_sec"] = (
        round(report["bytes_uploaded"] / 1e6 / report["upload_sec"], 2) if report["upload_sec"] > 0 else None
    )
    log.info(
        "publish %s: %s, %d uploaded (%d multipart), %d already there, %.1f MB in %.2fs, latest moved: %s",
        report["release"],
        report["status"],
        report["uploaded"],
        report["multipart_uploads"],
        report["skipped"],
        report["bytes_uploaded"] / 1e6,
        wall,
        report["latest_moved"],
    )
    return report


def _parse_manifest(raw: bytes, source: str) -> dict[str, Any] | None:
    """A stored manifest, or None if it is not valid JSON or does not match the schema."""
    try:
        obj = json.loads(raw)
        validate("manifest", obj, source=source)
    except (json.JSONDecodeError, UnicodeDecodeError, SchemaValidationError) as e:
        log.warning("existing manifest %s is unusable: %s", source, e)
        return None
    return dict(obj)


def read_latest(client: Any, bucket: str, prefix: str, artifact_version: str) -> dict[str, Any] | None:
    """The validated latest pointer of ``artifact_version``; None if nothing was published yet."""
    key = latest_key(prefix, artifact_version)
    raw = _get_bytes(client, bucket, key)
    if raw is None:
        return None
    try:
        pointer = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"s3://{bucket}/{key} is not valid JSON: {e}") from e
    validate("latest_pointer", pointer, source=f"s3://{bucket}/{key}")
    return dict(pointer)


def _safe_join(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ArtifactError(f"Manifest path {rel!r} escapes the download folder")
    return target


def verify_published(
    bucket: str,
    prefix: str,
    model: str,
    *,
    dest: str | os.PathLike[str],
    release: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Download a published release into a local cache and verify every file against its manifest.

    Follows ``latest`` unless ``release`` is given. Files already in the cache with the manifest's size and
    sha256 are not downloaded again; others are downloaded to ``<file>.tmp``, checked, then renamed.

    Returns:
        ``{"dir": Path, "manifest": dict, "pointer": dict | None, "downloaded": int, "cached": int}`` where
        ``dir`` is ``<dest>/<artifact_version>/<release>``.

    Raises:
        ArtifactError: nothing published, the manifest does not match the pointer's sha256 or its own
            content_sha256, or a file's size/sha256 differs from the manifest (the message names the file).
        StorageError: an S3 call failed.
    """
    s3 = client if client is not None else make_client(endpoint_url, region)
    artifact_version = artifact_version_of(model)
    pointer = None
    expected_manifest_sha = None
    if release is None:
        pointer = read_latest(s3, bucket, prefix, artifact_version)
        if pointer is None:
            raise ArtifactError(
                f"Nothing published for {artifact_version} at s3://{bucket}/{latest_key(prefix, artifact_version)}"
            )
        mkey, expected_manifest_sha, release = (
            pointer["manifest_key"],
            pointer["manifest_sha256"],
            pointer["release"],
        )
    else:
        mkey = release_prefix(prefix, artifact_version, release) + MANIFEST_NAME
    vprefix = mkey[: -len(MANIFEST_NAME)]
    raw = _get_bytes(s3, bucket, mkey)
    if raw is None:
        raise ArtifactError(f"Manifest s3://{bucket}/{mkey} not found")
    msha = sha256_bytes(raw)
    if expected_manifest_sha is not None and msha != expected_manifest_sha:
        raise ArtifactError(
            f"{MANIFEST_NAME}: sha256 {msha} != latest pointer {expected_manifest_sha} (s3://{bucket}/{mkey})"
        )
    manifest = json.loads(raw)
    validate("manifest", manifest, source=f"s3://{bucket}/{mkey}")
    if manifest["artifact_version"] != artifact_version or manifest["release"] != release:
        raise ArtifactError(
            f"Manifest s3://{bucket}/{mkey} is for {manifest['artifact_version']}/{manifest['release']}"
        )
    if content_digest(manifest["files"]) != manifest["content_sha256"]:
        raise ArtifactError(f"Manifest s3://{bucket}/{mkey}: content_sha256 does not match its file list")

    out = Path(dest) / artifact_version / release
    out.mkdir(parents=True, exist_ok=True)
    downloaded, cached = _download_verified(s3, bucket, vprefix, manifest["files"], out)
    (out / MANIFEST_NAME).write_bytes(raw)
    log.info("verified %s/%s: %d downloaded, %d cached", artifact_version, release, downloaded, cached)
    return {"dir": out, "manifest": manifest, "pointer": pointer, "downloaded": downloaded, "cached": cached}


def _download_verified(
    s3: Any, bucket: str, vprefix: str, files: list[dict[str, Any]], out: Path
) -> tuple[int, int]:
    """Bring every file of a manifest into ``out``: kept when it already matches, else downloaded to
    ``<file>.tmp``, verified and renamed. Returns (downloaded, cached)."""
    downloaded = cached = 0
    for entry in files:
        local = _safe_join(out, entry["path"])
        if (
            local.is_file()
            and local.stat().st_size == entry["size_bytes"]
            and sha256_file(local) == entry["sha256"]
        ):
            cached += 1
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".tmp")
        key = vprefix + entry["path"]
        try:
            s3.download_file(bucket, key, str(tmp))
        except Exception as e:
            tmp.unlink(missing_ok=True)
            raise _storage_error("GET", bucket, key, e) from e
        try:
            verify_file(tmp, entry)
        except ArtifactError as e:
            tmp.unlink(missing_ok=True)
            raise ArtifactError(f"Refusing s3://{bucket}/{key}: {e}") from e
        os.replace(tmp, local)
        downloaded += 1
    return downloaded, cached
