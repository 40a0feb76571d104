"""Configuration of the ``publish`` step (to move into ``config.py`` as ``PublishConfig`` / section ``publish``).

Built like the other step configs (defaults < config file section ``publish`` < ``RESEARCH_JOB_<FIELD>`` env
vars < CLI flags) with :func:`research_job.config.build_config` (``section="publish"``). Credentials are never
config fields: S3 uses the standard AWS chain (env vars, shared files, instance/task role); PostgreSQL takes
them from ``database_url`` or the libpq env vars (``PGPASSWORD``...), and they are never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from research_job.config import CommonConfig

PUBLISH_TARGETS = ("s3", "pgvector")


@dataclass(frozen=True)
class PublishConfig:
    """publish: a version folder -> S3 (manifest + latest pointer) or PostgreSQL + pgvector."""

    common: CommonConfig = field(default_factory=CommonConfig)
    #: where to publish: s3 | pgvector
    to: str = "s3"
    #: release name under ``v1_model_<MODEL>/``; None = from the embeddings' created_at (``20261122T040000Z``)
    release: str | None = None
    #: also upload ``audio_cache/`` and ``audio_wav/`` (S3 only)
    include_audio: bool = False
    #: overwrite a release that already holds different content
    force: bool = False
    #: move the ``latest`` pointer (S3) / flag (pgvector) to this release
    set_latest: bool = True

    # --- S3 ---
    bucket: str = ""
    prefix: str = "vector-artifacts"
    #: S3-compatible store (MinIO, moto, ...); None = AWS
    endpoint_url: str | None = None
    region: str | None = None
    #: files at least this large go up as multipart uploads
    multipart_threshold: int = 64 * 1024 * 1024
    multipart_chunksize: int = 16 * 1024 * 1024
    max_concurrency: int = 8
    #: also compare each object's ETag with the MD5 (single part) or multipart MD5 computed locally; turn
    #: off for stores whose ETag is not an MD5 (SSE-KMS)
    verify_etag: bool = True

    # --- pgvector ---
    #: ``postgresql://user@host:5432/db`` (password from PGPASSWORD or ~/.pgpass preferably)
    database_url: str | None = None
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
