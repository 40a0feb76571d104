"""Track-to-track similarity matrices: their files in a version folder, and their composer-retrieval evaluation.

Some backends yield a matrix, not vectors (Musly: a distance between every pair of tracks). Such a matrix lives in
``similarity/`` (keys of ``artifact_schema/artifacts.json``)::

    similarity/matrix.f32           row-major little-endian float32 N x N; [i, j] scores track j for query i
    similarity/track_ids.json       row (and column) i is track_ids[i]
    similarity/similarity_meta.json kind (distance | similarity), backend, parameters, checksums, stats, failures

:func:`evaluate_matrix` scores it exactly as ``evaluate`` scores embeddings, with the same ranking and scoring code
(:mod:`research_job.retrieval`, :mod:`research_job.metrics`): every track is a query, its own track id is excluded, candidates are ranked by
score descending with ties by ascending row (a distance is ranked as score = -distance, which keeps every tie),
a candidate is relevant iff it has the same standardised composer; queries with a missing composer or with no
other track by their composer are counted, not scored; Precision@k, HitRate@k, NDCG@k, MRR with their exact
random-ranking expectation and seeded bootstrap CIs, per composer, and with same-album candidates removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from research_job import retrieval, schema
from research_job.errors import ArtifactError
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow
from research_job.provenance import sha256_file

LOG = logging.getLogger(__name__)

KINDS = ("distance", "similarity")
#: bytes of float64 work arrays per query batch (bounds memory at large N)
_BATCH_BYTES = 64 * 2**20


# ---------------------------------------------------------------- files


def write_matrix(
    layout: ArtifactLayout, matrix: np.ndarray, track_ids: Sequence[str], meta: dict[str, Any]
) -> dict[str, Any]:
    """Write ``similarity/matrix.f32``, ``track_ids.json`` and, last, ``similarity_meta.json``.

    Args:
        matrix: [N, N] finite values; track_ids: N unique ids; meta: the sidecar without ``count``, the
            storage fields and ``files`` (added here).

    Returns:
        the sidecar as written (schema ``similarity_meta``).

    Raises:
        ArtifactError: shape, ids or values are unusable; SchemaValidationError: the sidecar is incomplete.
    """
    x = np.ascontiguousarray(matrix, dtype="<f4")
    n = len(track_ids)
    if x.shape != (n, n):
        raise ArtifactError(f"similarity matrix has shape {x.shape}, expected {n} x {n} for {n} track ids")
    if len(set(track_ids)) != n:
        raise ArtifactError("track ids of the similarity matrix are not unique")
    if not np.all(np.isfinite(x)):
        raise ArtifactError("similarity matrix holds NaN or inf values")
    path = layout.path("similarity_f32")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, x.tobytes())
    ids_path = layout.path("similarity_track_ids")
    schema.write_artifact(
        ids_path, "track_ids", {"schema_version": "1.0", "count": n, "track_ids": list(track_ids)}
    )
    out = {
        **meta,
        "count": n,
        "dtype": "float32",
        "byte_order": "little",
        "layout": "row_major",
        "files": {"matrix_sha256": sha256_file(path), "track_ids_sha256": sha256_file(ids_path)},
    }
    schema.write_artifact(layout.path("similarity_meta"), "similarity_meta", out)
    return out


def read_matrix(layout: ArtifactLayout) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """The matrix (float32 [N, N]), its track ids and its sidecar, checked against each other.

    Raises:
        ArtifactError: a file is missing, its checksum or size differs from the sidecar;
        SchemaValidationError: a JSON file does not match its schema.
    """
    meta_path, path, ids_path = (
        layout.path(k) for k in ("similarity_meta", "similarity_f32", "similarity_track_ids")
    )
    for p in (meta_path, path, ids_path):
        if not p.is_file():
            raise ArtifactError(f"{p} is missing (no similarity matrix in {layout.version_dir})")
    meta: dict[str, Any] = schema.read_artifact(meta_path, "similarity_meta")
    for p, key in ((path, "matrix_sha256"), (ids_path, "track_ids_sha256")):
        if sha256_file(p) != meta["files"][key]:
            raise ArtifactError(f"{p}: sha256 differs from {meta_path.name} files.{key}")
    ids = list(schema.read_artifact(ids_path, "track_ids")["track_ids"])
    n = meta["count"]
    if len(ids) != n or path.stat().st_size != n * n * 4:
        raise ArtifactError(
            f"{path}: {path.stat().st_size} bytes and {len(ids)} ids, expected {n} x {n} x 4 bytes and {n} ids"
        )
    return np.fromfile(path, dtype="<f4").reshape(n, n), ids, meta


# ---------------------------------------------------------------- evaluation


def evaluate_matrix(
    matrix: np.ndarray,
    track_ids: Sequence[str],
    rows: Sequence[TrackRow],
    *,
    kind: str,
    k: int = 5,
    bootstrap_resamples: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Composer retrieval over a track-to-track matrix, with the metrics and policies of ``evaluate``.

    Args:
        matrix: [N, N], entry [i, j] = score of candidate j for query i; kind: ``distance`` (smaller is more
            similar) or ``similarity``; track_ids: row i's track; rows: the metadata rows (any order, a superset).

    Returns:
        the blocks of ``eval_results`` that do not depend on embeddings: ``k``, ``relevance``,
        ``self_exclusion``, ``tie_break``, ``search``, ``n_tracks``, ``query_policy``, ``overall``,
        ``exclude_same_album``, ``per_composer``, ``timings``.

    Raises:
        ArtifactError: unknown kind, bad shape, non-finite values, duplicate ids or ids missing from ``rows``.
    """
    t_total = time.perf_counter()
    if kind not in KINDS:
        raise ArtifactError(f"Unknown matrix kind {kind!r}. Known: {', '.join(KINDS)}")
    x = np.asarray(matrix)
    n = len(track_ids)
    if x.shape != (n, n):
        raise ArtifactError(f"matrix has shape {x.shape}, expected {n} x {n}")
    if len(set(track_ids)) != n:
        raise ArtifactError("track ids of the matrix are not unique")
    if not np.all(np.isfinite(x)):
        raise ArtifactError("matrix holds NaN or inf values")
    by_id = {r.track_id: r for r in rows}
    missing = [t for t in track_ids if t not in by_id]
    if missing:
        raise ArtifactError(
            f"{len(missing)} tracks of the matrix are not in the metadata, e.g. {missing[:3]}"
        )
    meta_rows = [by_id[t] for t in track_ids]
    t0 = time.perf_counter()
    # negation is exact in floating point: the distance ranking's ties stay ties
    scores = -x.astype(np.float64) if kind == "distance" else x.astype(np.float64)
    v_all, v_album = retrieval.rank(
        [r.composer for r in meta_rows],
        [r.album_id for r in meta_rows],
        k,
        score_rows=lambda rows: scores[rows].copy(),
        batch_size=batch_size or max(1, _BATCH_BYTES // max(1, 8 * n)),
    )
    search_sec = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = retrieval.score(
        v_all, v_album, [r.composer for r in meta_rows], k=k, resamples=bootstrap_resamples, seed=seed
    )
    return {
        "k": k,
        "relevance": "same_standardized_composer",
        "self_exclusion": "by_track_id",
        "tie_break": "score_desc_then_row_asc",
        "search": "exact",
        **scored.block,
        "timings": {
            "search_sec": round(search_sec, 4),
            "metrics_sec": round(time.perf_counter() - t0, 4),
            "total_sec": round(time.perf_counter() - t_total, 4),
        },
    }
