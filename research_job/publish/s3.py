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
from pathlib import Path
from typing import Any

from research_job.errors import ArtifactError, ConfigError, SchemaValidationError, StorageError
from research_job.layout import LAYOUT_VERSION, version_name
from research_job.provenance import sha256_file
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
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if not bucket:
        raise ConfigError("publish to S3 needs a bucket (--bucket or RESEARCH_JOB_BUCKET)")
    if multipart_threshold < 1 or multipart_chunksize < 1 or max_concurrency < 1:
        raise ConfigError("multipart_threshold, multipart_chunksize and max_concurrency must be >= 1")
    t0 = time.perf_counter()
    root = Path(version_dir)
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
    try:
        old_raw = _get_bytes(s3, bucket, mkey)
        status = "published"
        rewrite_manifest = True
        if old_raw is not None:
            old = _parse_manifest(old_raw, f"s3://{bucket}/{mkey}")
            diffs = diff_manifests(old, manifest) if old is not None else ["manifest.json is unreadable"]
            if old is not None and not diffs and old["content_sha256"] == manifest["content_sha256"]:
                status = "unchanged"
                # keep what the first publish recorded; rewrite only if the stored manifest was altered
                manifest = {
                    **manifest,
                    "published_at": old["published_at"],
                    "publisher_version": old["publisher_version"],
                }
                rewrite_manifest = manifest_bytes(manifest) != old_raw
            elif not force:
                shown = ", ".join(diffs[:20]) + (f" (+{len(diffs) - 20} more)" if len(diffs) > 20 else "")
                raise ArtifactError(
                    f"Release {rel!r} of {artifact_version} already exists at s3://{bucket}/{vprefix} with "
                    f"different content: {shown}. Publish under another --release, or pass --force to overwrite"
                )
            else:
                status = "overwritten"
        report["status"] = status

        tcfg = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )

        def etag_of(entry: dict[str, Any]) -> str | None:
            if not verify_etag:
                return None
            return expected_etag(
                root / entry["path"], entry["size_bytes"], multipart_threshold, multipart_chunksize
            )

        def put_one(entry: dict[str, Any]) -> tuple[str, bool, bool]:
            """Upload one file unless an identical object is there; verify; (path, uploaded, multipart)."""
            key = vprefix + entry["path"]
            local = root / entry["path"]
            # an object already there is matched on size + stored sha256 only: its ETag depends on the part
            # size of the upload that made it, which may have used other transfer settings
            ok, _ = _object_matches(_head(s3, bucket, key), entry, None)
            if ok:
                return entry["path"], False, False
            if status == "unchanged":
                log.warning("repairing s3://%s/%s (does not match the manifest)", bucket, key)
            verify_file(local, entry)  # the bytes about to go up are the ones the manifest lists
            s3.upload_file(
                str(local),
                bucket,
                key,
                ExtraArgs={
                    "Metadata": {SHA256_METADATA: entry["sha256"]},
                    "ContentType": _content_type(entry["path"]),
                },
                Config=tcfg,
            )
            ok, why = _object_matches(_head(s3, bucket, key), entry, etag_of(entry))
            if not ok:
                raise StorageError(f"Uploaded s3://{bucket}/{key} does not verify: {why}")
            return entry["path"], True, entry["size_bytes"] >= multipart_threshold

        t1 = time.perf_counter()
        sizes = {f["path"]: f["size_bytes"] for f in manifest["files"]}
        # largest first so the long multipart uploads overlap with the many small files
        todo = sorted(manifest["files"], key=lambda f: -f["size_bytes"])
        with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(todo)))) as pool:
            pending = {pool.submit(put_one, f) for f in todo}
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

        if status == "unchanged" and (rewrite_manifest or report["uploaded"]):
            status = report["status"] = "repaired"
        written: bytes | None = None
        if rewrite_manifest:
            written = manifest_bytes(manifest)
            s3.put_object(
                Bucket=bucket,
                Key=mkey,
                Body=written,
                ContentType="application/json",
                Metadata={SHA256_METADATA: hashlib.sha256(written).hexdigest()},
            )
        stored = _get_bytes(s3, bucket, mkey)
        if (
            stored is None
            or (written is not None and stored != written)
            or json.loads(stored)["content_sha256"] != manifest["content_sha256"]
        ):
            raise StorageError(f"Manifest s3://{bucket}/{mkey} does not read back as written")
        body = stored
        msha = hashlib.sha256(body).hexdigest()
        report["manifest_sha256"] = msha

        if set_latest:
            pointer = {
                "schema_version": "1.0",
                "artifact_version": artifact_version,
                "model": manifest["model"],
                "release": rel,
                "version_prefix": vprefix,
                "manifest_key": mkey,
                "manifest_sha256": msha,
                "content_sha256": manifest["content_sha256"],
                "published_at": manifest["published_at"],
            }
            validate("latest_pointer", pointer)
            current_raw = _get_bytes(s3, bucket, lkey)
            current = json.loads(current_raw) if current_raw is not None else None
            if current is None or (current.get("manifest_key"), current.get("manifest_sha256")) != (
                mkey,
                msha,
            ):
                data = json.dumps(pointer, indent=2, sort_keys=True).encode("utf-8") + b"\n"
                s3.put_object(
                    Bucket=bucket,
                    Key=lkey,
                    Body=data,
                    ContentType="application/json",
                    CacheControl="no-cache",
                    Metadata={SHA256_METADATA: hashlib.sha256(data).hexdigest()},
                )
                report["latest_moved"] = True

        if status == "overwritten":
            keep = {vprefix + f["path"] for f in manifest["files"]} | {mkey}
            stale = [k for k in _list_keys(s3, bucket, vprefix) if k not in keep]
            for k in stale:
                s3.delete_object(Bucket=bucket, Key=k)
            report["deleted_stale"] = len(stale)
    except NoCredentialsError as e:
        raise StorageError(
            "No AWS credentials found (standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "~/.aws/credentials, container or instance role)"
        ) from e
    except (ClientError, BotoCoreError, Boto3Error) as e:  # Boto3Error: S3UploadFailedError from upload_file
        raise StorageError(f"S3 publish to s3://{bucket}/{vprefix} failed: {_error_code(e)}: {e}") from e

    wall = time.perf_counter() - t0
    report["wall_sec"] = round(wall, 3)
    report["upload_mb_per_sec"] = (
        round(report["bytes_uploaded"] / 1e6 / report["upload_sec"], 2) if report["upload_sec"] > 0 else None
    )
    log.info(
        "publish %s: %s, %d uploaded (%d multipart), %d already there, %.1f MB in %.2fs, latest moved: %s",
        rel,
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
    msha = hashlib.sha256(raw).hexdigest()
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
    downloaded = cached = 0
    for entry in manifest["files"]:
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
    (out / MANIFEST_NAME).write_bytes(raw)
    log.info("verified %s/%s: %d downloaded, %d cached", artifact_version, release, downloaded, cached)
    return {"dir": out, "manifest": manifest, "pointer": pointer, "downloaded": downloaded, "cached": cached}
