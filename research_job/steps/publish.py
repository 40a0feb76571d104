"""publish: an artifact version folder -> S3 (default) or PostgreSQL + pgvector.

``research-job publish`` builds a :class:`PublishConfig` and calls :func:`run`. Either target refuses a folder
that :mod:`research_job.artifact_checks` finds a problem in, and publishes only the files of the one artifact
list. See docs/publishing.md for the S3 layout, the verification algorithm and the pgvector schema and query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from research_job.config import CommonConfig, option
from research_job.errors import ConfigError, unknown_choice
from research_job.steps import Step

PUBLISH_TARGETS = ("s3", "pgvector")


@dataclass(frozen=True)
class PublishConfig:
    """publish: a version folder -> S3 (manifest + latest pointer) or PostgreSQL + pgvector."""

    common: CommonConfig = field(default_factory=CommonConfig)
    to: str = option("s3", "where to publish", choices=PUBLISH_TARGETS, kind="publish target")
    release: str | None = option(
        None,
        "release name under v1_model_<MODEL>/; unset = from the embeddings' created_at (20261122T040000Z)",
    )
    include_audio: bool = option(False, "also upload audio_cache/, audio_wav/ and previews/ (S3 only)")
    force: bool = option(False, "overwrite a release that already holds different content")
    set_latest: bool = option(True, "move the latest pointer (S3) / flag (pgvector) to this release")

    # --- S3 ---
    bucket: str = option("", "S3 bucket (S3 only)")
    prefix: str = option("vector-artifacts", "key prefix of the releases in the bucket (S3 only)")
    endpoint_url: str | None = option(None, "S3-compatible endpoint (MinIO, moto, ...); unset = AWS")
    region: str | None = option(None, "AWS region; unset = from the standard AWS configuration")
    multipart_threshold: int = option(64 * 1024 * 1024, "files of at least this many bytes go up in parts")
    multipart_chunksize: int = option(16 * 1024 * 1024, "part size of a multipart upload, bytes")
    max_concurrency: int = option(8, "concurrent uploads")
    verify_etag: bool = option(
        True, "also compare each ETag with the locally computed (multipart) MD5; off for SSE-KMS stores"
    )

    # --- pgvector ---
    database_url: str | None = option(
        None,
        "postgresql://user@host:5432/db (pgvector only; the password preferably from PGPASSWORD or ~/.pgpass)",
    )
    hnsw_m: int = option(16, "HNSW graph degree of the pgvector index")
    hnsw_ef_construction: int = option(64, "HNSW build candidate list size of the pgvector index")


def check(cfg: PublishConfig) -> None:
    """Refuse a target without its destination, or options that do not apply to it.

    Raises:
        ConfigError: naming what is missing or does not apply.
    """
    if cfg.to not in PUBLISH_TARGETS:
        raise ConfigError(unknown_choice("publish target", cfg.to, PUBLISH_TARGETS))
    if cfg.to == "s3" and not cfg.bucket:
        raise ConfigError("publish to S3 needs a bucket (--bucket or RESEARCH_JOB_BUCKET)")
    if cfg.to == "pgvector":
        if not cfg.database_url:
            raise ConfigError("publish --to pgvector needs --database-url (or RESEARCH_JOB_DATABASE_URL)")
        if cfg.include_audio:
            raise ConfigError("include_audio applies to S3 only; pgvector stores ids, metadata and vectors")


def run(cfg: PublishConfig) -> dict[str, Any]:
    """Publish ``cfg.common.layout.version_dir`` to ``cfg.to``; return the backend's report.

    Raises:
        ConfigError: unknown target, missing bucket / database URL, or options that do not apply.
        ArtifactError: the folder is incomplete or inconsistent, or the release holds different content and
            ``force`` is off.
        StorageError: S3 or database failures.
    """
    check(cfg)
    version_dir = cfg.common.layout.version_dir
    if cfg.to == "s3":
        from research_job.publish.s3 import publish_s3

        return publish_s3(
            version_dir,
            bucket=cfg.bucket,
            prefix=cfg.prefix,
            release=cfg.release,
            include_audio=cfg.include_audio,
            force=cfg.force,
            set_latest=cfg.set_latest,
            endpoint_url=cfg.endpoint_url,
            region=cfg.region,
            multipart_threshold=cfg.multipart_threshold,
            multipart_chunksize=cfg.multipart_chunksize,
            max_concurrency=cfg.max_concurrency,
            verify_etag=cfg.verify_etag,
        )
    if cfg.to == "pgvector":
        from research_job.publish.pgvector import publish_pgvector

        return publish_pgvector(
            version_dir,
            database_url=cfg.database_url,
            release=cfg.release,
            force=cfg.force,
            set_latest=cfg.set_latest,
            hnsw_m=cfg.hnsw_m,
            hnsw_ef_construction=cfg.hnsw_ef_construction,
        )
    raise ConfigError(unknown_choice("publish target", cfg.to, PUBLISH_TARGETS))


STEP = Step(
    name="publish",
    config=PublishConfig,
    summary="Publish a version folder to S3 (manifest last, then the latest pointer) or to PostgreSQL + pgvector.",
    example="research-job publish --bucket my-artifacts --endpoint-url http://127.0.0.1:9000",
    run=run,
    check=check,
    show=lambda cfg, result: json.dumps(result, indent=2, sort_keys=True, default=str),
)
