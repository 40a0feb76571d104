"""Publishing artifact versions: to S3 (manifest + latest pointer) and to PostgreSQL + pgvector.

One backend per file behind the same small surface (``publish_<backend>(version_dir, ...) -> report``):

* :mod:`research_job.publish.manifest`: scan, check and hash a version folder; build/compare manifests;
* :mod:`research_job.publish.s3`: upload with verification, ``latest`` pointer, verified download;
* :mod:`research_job.publish.pgvector`: one table per version with an HNSW index, the nearest-neighbour query.

Backends import boto3 / psycopg lazily, so importing this package needs neither.
"""

from research_job.publish.manifest import build_manifest, diff_manifests

__all__ = ["build_manifest", "diff_manifests"]
