"""Publish an artifact version to PostgreSQL + pgvector, and query it.

Design: one table per version, ``track_vectors_<slug>_<hash>``, holding ``row_id, track_id, album_id,
composer, title, embedding vector(D)`` with its own HNSW index (``vector_cosine_ops``), plus one catalogue table
``vector_versions`` (one row per version: model, dim, n, table name, manifest content digest, the manifest as
jsonb, ``is_latest``). Why not one shared table with a partial HNSW index per version:

* ``vector(D)`` is typed per table: versions of different models (different D) cannot share one indexed
  column without casting expressions in every index and query;
* a partial index is only used when the planner can prove the query's ``version = ...`` implies the index
  predicate; a parameterised query under a generic plan cannot, and silently falls back to a sequential scan;
* the HNSW graph of a table covers exactly one version (no filtering inside the graph walk), and dropping a
  version is ``DROP TABLE`` (no bloat, no vacuum of millions of dead rows).

Atomicity: a publish creates the table, COPYs every row, builds the index, inserts the ``vector_versions`` row
and moves ``is_latest`` in ONE transaction. Another session sees either the previous state or the complete new
version, never a table without its index or two ``latest`` rows (a partial unique index enforces one latest
per artifact version). Re-publishing the same content is a no-op; different content under an existing version
is refused naming the files unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from research_job.errors import ArtifactError, ConfigError, StorageError, unknown_choice
from research_job.io.database import redact_text, redact_url
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.publish.manifest import build_manifest, diff_manifests
from research_job.schema import read_artifact

log = logging.getLogger(__name__)

VERSIONS_TABLE = "vector_versions"
#: extra candidates fetched by the ANN step before the final (distance, row_id) ordering
CANDIDATE_MARGIN = 32
_LOCK_KEY = 0x7665637476657273  # pg_advisory_xact_lock key serialising publishers ("vectvers")

_DDL = f"""
CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
    version          text PRIMARY KEY,
    artifact_version text NOT NULL,
    release          text NOT NULL,
    model            text NOT NULL,
    dim              integer NOT NULL CHECK (dim > 0),
    n                integer NOT NULL CHECK (n >= 0),
    table_name       text NOT NULL UNIQUE,
    content_sha256   text NOT NULL,
    manifest         jsonb NOT NULL,
    hnsw_m           integer NOT NULL,
    hnsw_ef_construction integer NOT NULL,
    created_at       timestamptz NOT NULL,
    published_at     timestamptz NOT NULL DEFAULT now(),
    is_latest        boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS {VERSIONS_TABLE}_one_latest
    ON {VERSIONS_TABLE} (artifact_version) WHERE is_latest;
"""


def connect(database_url: str) -> Any:
    """Open a psycopg 3 connection (autocommit off) with :func:`research_job.io.db_postgres.connect`: errors
    are :class:`StorageError` and never show a secret of the URL."""
    from research_job.io.db_postgres import connect as pg_connect

    return pg_connect(database_url, error=StorageError, what="pgvector database")


def version_name(artifact_version: str, release: str) -> str:
    """The ``version`` key of a release: ``v1_model_<MODEL>/<release>``."""
    return f"{artifact_version}/{release}"


def table_name_for(version: str) -> str:
    """Table of one version: ``track_vectors_<slug>_<8 hex of sha256(version)>`` (<= 63 bytes, lower case)."""
    slug = re.sub(r"[^a-z0-9]+", "_", version.lower()).strip("_")[:30]
    return f"track_vectors_{slug}_{hashlib.sha256(version.encode()).hexdigest()[:8]}"


def ensure_schema(conn: Any) -> None:
    """Create the ``vector`` extension (if missing) and the ``vector_versions`` catalogue table."""
    import psycopg

    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        if cur.fetchone() is None:
            try:
                cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as e:
                raise StorageError(
                    f"The pgvector extension is not installed and cannot be created: {e}. "
                    "Run CREATE EXTENSION vector as a superuser first."
                ) from e
        cur.execute(_DDL)


def _copy_payload(vectors: np.ndarray, track_ids: list[str], rows: dict[str, TrackRow]) -> bytes:
    """Rows in PostgreSQL binary COPY format (vectors bit-exact: pgvector's binary form is int16 dim,
    int16 unused, then big-endian float4s)."""
    n, dim = vectors.shape
    be = vectors.astype(">f4", copy=False)
    vec_head = struct.pack(">ihh", 4 + 4 * dim, dim, 0)
    parts = [b"PGCOPY\n\xff\r\n\x00", struct.pack(">ii", 0, 0)]

    def text(value: str | None) -> bytes:
        if value is None:
            return b"\xff\xff\xff\xff"
        data = value.encode("utf-8")
        return struct.pack(">i", len(data)) + data

    for i, tid in enumerate(track_ids):
        r = rows[tid]
        parts.append(struct.pack(">hii", 6, 4, i))
        parts.append(text(tid))
        parts.append(text(r.album_id))
        parts.append(text(r.composer))
        parts.append(text(r.title))
        parts.append(vec_head + be[i].tobytes())
    parts.append(b"\xff\xff")
    return b"".join(parts)


@dataclass(frozen=True)
class _Version:
    """One checked version folder, read for a publish: its manifest, the rows to COPY, where they go."""

    manifest: dict[str, Any]
    version: str  # v1_model_<MODEL>/<release>
    table: str
    n: int
    dim: int
    vectors: np.ndarray  # float32 [n, dim], row i is track_ids[i]
    track_ids: list[str]
    rows: dict[str, TrackRow]  # metadata by track_id


def publish_pgvector(
    version_dir: str | os.PathLike[str],
    *,
    database_url: str | None = None,
    conn: Any = None,
    release: str | None = None,
    force: bool = False,
    set_latest: bool = True,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 64,
    before_commit: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Write one version (ids, metadata, vectors, HNSW index) into PostgreSQL in one transaction.

    Args:
        version_dir: the local ``v1_model_<MODEL>`` folder (checked and hashed like an S3 publish).
        database_url / conn: where to write (exactly one). A caller's ``conn`` should be in autocommit mode
            (or outside a transaction): inside an open transaction the publish is only a savepoint of it.
        release: release name (default from the embeddings' created_at), as on S3.
        force: replace a version that holds different content.
        set_latest: make this version the latest of its artifact version, in the same transaction.
        hnsw_m, hnsw_ef_construction: HNSW build parameters.
        before_commit: called with the connection just before COMMIT (tests use it to look from another
            session, or to abort).

    Returns:
        a report: status (published | unchanged | overwritten), version, table, counts, timings.

    Raises:
        ArtifactError: incomplete/inconsistent folder, a track without metadata, or different content under
            an existing version without ``force`` (the message names the files).
        StorageError: database errors (no secret of the URL is shown, in the message or in a chained error).
    """
    import psycopg

    if (database_url is None) == (conn is None):
        raise ConfigError("publish to pgvector needs exactly one of database_url (--database-url) or conn")
    if hnsw_m < 2 or hnsw_ef_construction < 1:
        raise ConfigError(f"Bad HNSW parameters m={hnsw_m}, ef_construction={hnsw_ef_construction}")
    t0 = time.perf_counter()
    v = _read_version(Path(version_dir), release)
    report: dict[str, Any] = {
        "target": "pgvector",
        "version": v.version,
        "table": v.table,
        "n": v.n,
        "dim": v.dim,
        "content_sha256": v.manifest["content_sha256"],
        "latest_moved": False,
    }
    own = conn is None
    where = redact_url(database_url) if database_url is not None else "the given connection"
    if own:
        assert database_url is not None
        conn = connect(database_url)
        log.info("publish %s -> %s table %s", v.version, where, v.table)
    try:
        # ONE transaction: another session sees the previous state or the complete new version (module docstring)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            ensure_schema(conn)
            report["status"] = _compare_with_existing(cur, v, force=force)
            if report["status"] != "unchanged":
                _create_table(cur, v)
                report["copy_sec"] = _copy_rows(cur, v)
                report["index_sec"] = _build_index(cur, v.table, hnsw_m, hnsw_ef_construction)
                _analyze(cur, v.table)
                _insert_catalogue_row(cur, v, hnsw_m, hnsw_ef_construction)
            if set_latest:
                report["latest_moved"] = _move_latest(cur, v)
            if before_commit is not None:
                before_commit(conn)
    except psycopg.Error as e:
        failure = redact_text(str(e).strip(), database_url)
    else:
        return _finish_report(report, t0)
    finally:
        if own:
            conn.close()
    # outside the except block, not chained: the driver's error may quote the connection string
    raise StorageError(f"pgvector publish of {v.version} to {where} failed: {failure}") from None


def _read_version(root: Path, release: str | None) -> _Version:
    """Check and hash the folder (its manifest), read the vectors, ids and metadata; every track needs a row."""
    manifest = build_manifest(root, release=release)
    version = version_name(manifest["artifact_version"], manifest["release"])
    n, dim = manifest["count"], manifest["dim"]
    layout = ArtifactLayout(root)
    vectors = np.fromfile(layout.embeddings_f32, dtype="<f4").reshape(n, dim)
    track_ids = read_artifact(layout.track_ids_json, "track_ids")["track_ids"]
    rows = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    missing = [t for t in track_ids if t not in rows]
    if missing:
        raise ArtifactError(
            f"{len(missing)} embedded tracks have no row in tracks_metadata.csv, e.g. {', '.join(missing[:5])}"
        )
    return _Version(manifest, version, table_name_for(version), n, dim, vectors, track_ids, rows)


def _compare_with_existing(cur: Any, v: _Version, *, force: bool) -> str:
    """Compare with the version's catalogue row, if any (locked FOR UPDATE); return the status.

    ``published`` (no row), ``unchanged`` (same content digest), ``overwritten`` (different content and
    ``force``: the old table and row are dropped here), else :class:`ArtifactError` naming the files.
    """
    from psycopg import sql

    cur.execute(
        f"SELECT content_sha256, manifest, table_name, is_latest FROM {VERSIONS_TABLE} "
        "WHERE version = %s FOR UPDATE",
        (v.version,),
    )
    existing = cur.fetchone()
    if existing is None:
        return "published"
    old_sha, old_manifest, old_table, old_latest = existing
    if old_sha == v.manifest["content_sha256"]:
        return "unchanged"
    if not force:
        diffs = diff_manifests(old_manifest, v.manifest)
        raise ArtifactError(
            f"Version {v.version!r} is already in the database with different content: "
            f"{', '.join(diffs[:20]) or 'content digest differs'}. "
            "Publish under another --release, or pass --force to replace it"
        )
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(old_table)))
    cur.execute(f"DELETE FROM {VERSIONS_TABLE} WHERE version = %s", (v.version,))
    return "overwritten"


def _create_table(cur: Any, v: _Version) -> None:
    """The version's table, ``embedding vector(D)`` typed with its dimension."""
    from psycopg import sql

    cur.execute(
        sql.SQL(
            "CREATE TABLE {} (row_id integer PRIMARY KEY, track_id text NOT NULL UNIQUE, "
            "album_id text NOT NULL, composer text, title text NOT NULL, "
            "embedding vector({}) NOT NULL)"
        ).format(sql.Identifier(v.table), sql.Literal(v.dim))
    )


def _copy_rows(cur: Any, v: _Version) -> float:
    """COPY every row in binary format (vectors bit-exact); return the seconds it took."""
    from psycopg import sql

    t1 = time.perf_counter()
    payload = _copy_payload(v.vectors, v.track_ids, v.rows)
    with cur.copy(
        sql.SQL(
            "COPY {} (row_id, track_id, album_id, composer, title, embedding) FROM STDIN (FORMAT BINARY)"
        ).format(sql.Identifier(v.table))
    ) as cp:
        step = 8 << 20
        for off in range(0, len(payload), step):
            cp.write(payload[off : off + step])
    return round(time.perf_counter() - t1, 3)


def _build_index(cur: Any, table: str, hnsw_m: int, hnsw_ef_construction: int) -> float:
    """Build the table's HNSW index (cosine); return the seconds it took."""
    from psycopg import sql

    t2 = time.perf_counter()
    cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
    cur.execute(
        sql.SQL(
            "CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops) WITH (m = {}, ef_construction = {})"
        ).format(
            sql.Identifier(f"{table}_hnsw"),
            sql.Identifier(table),
            sql.Literal(hnsw_m),
            sql.Literal(hnsw_ef_construction),
        )
    )
    return round(time.perf_counter() - t2, 3)


def _analyze(cur: Any, table: str) -> None:
    """Planner statistics for the new table, so its first queries are planned on real numbers."""
    from psycopg import sql

    cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def _insert_catalogue_row(cur: Any, v: _Version, hnsw_m: int, hnsw_ef_construction: int) -> None:
    """The version's row in ``vector_versions`` (not yet latest)."""
    manifest = v.manifest
    cur.execute(
        f"INSERT INTO {VERSIONS_TABLE} (version, artifact_version, release, model, dim, n, table_name, "
        "content_sha256, manifest, hnsw_m, hnsw_ef_construction, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            v.version,
            manifest["artifact_version"],
            manifest["release"],
            manifest["model"],
            v.dim,
            v.n,
            v.table,
            manifest["content_sha256"],
            json.dumps(manifest),
            hnsw_m,
            hnsw_ef_construction,
            manifest["created_at"],
        ),
    )


def _move_latest(cur: Any, v: _Version) -> bool:
    """Flag this version as the latest of its artifact version; whether the flag moved."""
    artifact_version = v.manifest["artifact_version"]
    cur.execute(
        f"SELECT version FROM {VERSIONS_TABLE} WHERE artifact_version = %s AND is_latest",
        (artifact_version,),
    )
    current = cur.fetchone()
    if current is not None and current[0] == v.version:
        return False
    # off first: the partial unique index allows one latest row per artifact version at any moment
    cur.execute(
        f"UPDATE {VERSIONS_TABLE} SET is_latest = false WHERE artifact_version = %s AND is_latest",
        (artifact_version,),
    )
    cur.execute(f"UPDATE {VERSIONS_TABLE} SET is_latest = true WHERE version = %s", (v.version,))
    return True


def _finish_report(report: dict[str, Any], t0: float) -> dict[str, Any]:
    """Add the wall time to the report, log its summary, return it."""
    report["wall_sec"] = round(time.perf_counter() - t0, 3)
    log.info(
        "publish %s: %s (copy %.2fs, index %.2fs, total %.2fs), latest moved: %s",
        report["version"],
        report["status"],
        report.get("copy_sec", 0.0),
        report.get("index_sec", 0.0),
        report["wall_sec"],
        report["latest_moved"],
    )
    return report


def list_versions(conn: Any) -> list[dict[str, Any]]:
    """Every published version: version, artifact_version, release, model, dim, n, is_latest, published_at."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (VERSIONS_TABLE,))
        if cur.fetchone()[0] is None:
            return []
        cur.execute(
            f"SELECT version, artifact_version, release, model, dim, n, is_latest, published_at "
            f"FROM {VERSIONS_TABLE} ORDER BY version"
        )
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def resolve_latest(conn: Any, artifact_version: str) -> str | None:
    """The ``version`` flagged latest for ``artifact_version`` (``v1_model_<MODEL>``), or None."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (VERSIONS_TABLE,))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(
            f"SELECT version FROM {VERSIONS_TABLE} WHERE artifact_version = %s AND is_latest",
            (artifact_version,),
        )
        row = cur.fetchone()
        return None if row is None else str(row[0])


#: the query every client runs (Python here, the Node API in TypeScript); {table} is the quoted table name of
#: the version from vector_versions, $1 = track_id, $2 = number of ANN candidates (k + 32), $3 = k
NEAREST_SQL = """
SELECT row_id, track_id, album_id, composer, title, distance
FROM (
    SELECT t.row_id, t.track_id, t.album_id, t.composer, t.title,
           t.embedding <=> (SELECT q.embedding FROM {table} q WHERE q.track_id = %(track_id)s) AS distance
    FROM {table} t
    WHERE t.track_id <> %(track_id)s
      {album_filter}
    ORDER BY t.embedding <=> (SELECT q.embedding FROM {table} q WHERE q.track_id = %(track_id)s)
    LIMIT %(candidates)s
) c
ORDER BY distance, row_id
LIMIT %(k)s
"""
ALBUM_FILTER = "AND t.album_id <> (SELECT q.album_id FROM {table} q WHERE q.track_id = %(track_id)s)"


def _table_of(conn: Any, version: str) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (VERSIONS_TABLE,))
        known: list[str] = []
        if cur.fetchone()[0] is not None:
            cur.execute(f"SELECT table_name FROM {VERSIONS_TABLE} WHERE version = %s", (version,))
            row = cur.fetchone()
            if row is not None:
                return str(row[0])
            cur.execute(f"SELECT version FROM {VERSIONS_TABLE}")
            known = [r[0] for r in cur.fetchall()]
    raise ArtifactError(unknown_choice("version", version, known))


def nearest_pgvector(
    conn: Any,
    version: str,
    track_id: str,
    k: int,
    exclude_same_album: bool = False,
    *,
    ef_search: int = 100,
    exact: bool = False,
) -> list[dict[str, Any]]:
    """Top-``k`` tracks by cosine similarity to ``track_id`` within ``version``, self excluded by track_id.

    Ranking: cosine distance ascending (= similarity descending), ties by ascending row id. The ANN step
    (HNSW, ``hnsw.ef_search``) fetches k + 32 candidates; if filters leave fewer than k, the query is rerun as
    an exact scan so a short list only happens when fewer than k tracks qualify.

    Args:
        version: ``v1_model_<MODEL>/<release>`` (see :func:`resolve_latest`).
        exclude_same_album: also drop tracks of the query's album.
        ef_search: HNSW candidate list size (pgvector default 40).
        exact: scan every row (no index): the ground truth.

    Returns:
        ``[{rank, row_id, track_id, album_id, composer, title, score}]`` with ``score = 1 - distance``.

    Raises:
        ArtifactError: unknown version (lists the known ones) or unknown track_id.
    """
    from psycopg import sql

    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if ef_search < 1:
        raise ConfigError(f"ef_search must be >= 1, got {ef_search}")
    table = _table_of(conn, version)
    ident = sql.Identifier(table)
    album = sql.SQL(ALBUM_FILTER).format(table=ident) if exclude_same_album else sql.SQL("")
    query = sql.SQL(NEAREST_SQL).format(table=ident, album_filter=album)
    params = {"track_id": track_id, "candidates": k + CANDIDATE_MARGIN, "k": k}

    def run(scan_all: bool) -> list[tuple[Any, ...]]:
        # force_rollback: the SET LOCALs end with this block, also when the caller's transaction goes on
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            if scan_all:
                cur.execute("SET LOCAL enable_indexscan = off")
            else:
                cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(ef_search, k))))
            cur.execute(query, params)
            return list(cur.fetchall())

    rows = run(exact)
    # an unknown track_id makes every distance NULL (the scalar subquery finds nothing)
    if len(rows) < k or any(r[5] is None for r in rows):
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT 1 FROM {} WHERE track_id = %s").format(ident), (track_id,))
            if cur.fetchone() is None:
                raise ArtifactError(f"Unknown track_id {track_id!r} in version {version!r}")
        if not exact:
            rows = run(True)
    return [
        {
            "rank": i + 1,
            "row_id": r[0],
            "track_id": r[1],
            "album_id": r[2],
            "composer": r[3],
            "title": r[4],
            "score": 1.0 - float(r[5]),
        }
        for i, r in enumerate(rows)
    ]
