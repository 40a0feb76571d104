"""publish: an artifact version folder -> S3 (default) or PostgreSQL + pgvector.

``research-job publish`` builds a :class:`~research_job.config.PublishConfig` and calls :func:`run`.
See docs/publishing.md for the S3 layout, the verification algorithm and the pgvector schema and query.
"""

from __future__ import annotations

from typing import Any

from research_job.config import PUBLISH_TARGETS, PublishConfig
from research_job.errors import ConfigError, unknown_choice


def run(cfg: PublishConfig) -> dict[str, Any]:
    """Publish ``cfg.common.layout.version_dir`` to ``cfg.to``; return the backend's report.

    Raises:
        ConfigError: unknown target, missing bucket / database URL, or options that do not apply.
        ArtifactError: the folder is incomplete or inconsistent, or the release holds different content and
            ``force`` is off.
        StorageError: S3 or database failures.
    """
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

        if not cfg.database_url:
            raise ConfigError("publish --to pgvector needs --database-url (or RESEARCH_JOB_DATABASE_URL)")
        if cfg.include_audio:
            raise ConfigError("include_audio applies to S3 only; pgvector stores ids, metadata and vectors")
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
