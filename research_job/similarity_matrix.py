"""Track-to-track similarity matrices: their files in a version folder, and their composer-retrieval evaluation.

Some backends yield a matrix, not vectors (Musly: a distance between every pair of tracks). Such a matrix lives in
``similarity/`` (keys of ``artifact_schema/artifacts.json``)::

    similarity/matrix.f32           row-major little-endian float32 N x N; [i, j] scores track j for query i
    similarity/track_ids.json       row (and column) i is track_ids[i]
    similarity/similarity_meta.json kind (distance | similarity), backend, parameters, checksums, stats, failures

:func:`evaluate_matrix` scores it exactly as ``evaluate`` scores embeddings, with the same per-query metric code
(:mod:`research_job.metrics`): every track is a query, its own track id is excluded, candidates are ranked by
score descending with ties by ascending row (a distance is ranked as score = -distance, which keeps every tie),
a candidate is relevant iff it has the same standardised composer; queries with a missing composer or with no
other track by their composer are counted, not scored; Precision@k, HitRate@k, NDCG@k, MRR with their exact
random-ranking expectation and seeded bootstrap CIs, per composer, and with same-album candidates removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from research_job import metrics as M
from research_job import schema
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


# ---------------------------------------------------------------- ranking


@dataclass
class Ranked:
    """Per-query ranking facts of one candidate policy (as ``evaluate`` computes them from embeddings)."""

    rows: np.ndarray  # int64 [N, k] top-k rows (-1 pads)
    scores: np.ndarray  # float64 [N, k] their scores (-inf pads)
    n_relevant: np.ndarray  # int64 [N] other relevant candidates
    n_candidates: np.ndarray  # int64 [N]
    first_rank: np.ndarray  # float64 [N] 1-based rank of the first relevant candidate (inf if none)


def integer_labels(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer labels of values (None -> -1), numbered in order of first appearance, and the label values."""
    index: dict[Any, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        out[i] = -1 if v is None else index.setdefault(v, len(index))
    return out, list(index)


def rank_matrix(
    scores: np.ndarray, labels: np.ndarray, albums: np.ndarray, k: int, *, batch_size: int | None = None
) -> tuple[Ranked, Ranked]:
    """Top-k and first-relevant rank of every row as a query over a full score matrix, for both policies.

    Args:
        scores: [N, N] finite, larger = more similar; row i holds the candidates of query i. Track ids are
            unique, so excluding the query's track id is excluding its own column.
        labels: int [N] composer label (-1 = missing, never relevant); albums: int [N]; k: cutoff.

    Returns:
        (self excluded, self + same album excluded).
    """
    s_all = np.asarray(scores)
    n = s_all.shape[0]
    bs = batch_size or max(1, _BATCH_BYTES // max(1, 8 * n))
    out = {
        name: Ranked(
            np.full((n, k), -1, np.int64),
            np.full((n, k), -np.inf),
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.full(n, np.inf),
        )
        for name in ("all", "album")
    }
    cols = np.arange(n)
    for s in range(0, n, bs):
        e = min(n, s + bs)
        q = np.arange(s, e)
        block = s_all[s:e].astype(np.float64)
        same = (labels[None, :] == labels[q][:, None]) & (labels[q] >= 0)[:, None]
        for name, excluded in (
            ("all", cols[None, :] == q[:, None]),
            ("album", albums[None, :] == albums[q][:, None]),  # includes the query itself
        ):
            _rank_block(out[name], q, block, ~excluded, same, k)
    return out["all"], out["album"]


def _rank_block(
    r: Ranked, q: np.ndarray, block: np.ndarray, valid: np.ndarray, same: np.ndarray, k: int
) -> None:
    """Fill rows ``q`` of ``r`` from their scores ``block`` and candidate mask ``valid``."""
    key = np.where(valid, block, -np.inf)
    # a stable sort of the negated scores: score descending, equal scores in ascending row order; excluded
    # columns (-inf, finite scores being checked) come after every candidate
    order = np.argsort(-key, axis=1, kind="stable")
    n_cand = valid.sum(axis=1)
    top = order[:, :k]
    kk = top.shape[1]
    pad = np.arange(kk)[None, :] >= n_cand[:, None]
    r.rows[q, :kk] = np.where(pad, -1, top)
    r.scores[q, :kk] = np.where(pad, -np.inf, np.take_along_axis(key, top, axis=1))
    rel = valid & same
    r.n_relevant[q] = rel.sum(axis=1)
    r.n_candidates[q] = n_cand
    rel_sorted = np.take_along_axis(rel, order, axis=1)
    has = rel_sorted.any(axis=1)
    r.first_rank[q] = np.where(has, rel_sorted.argmax(axis=1) + 1.0, np.inf)


# ---------------------------------------------------------------- evaluation


def _summary(
    r: Ranked, labels: np.ndarray, k: int, n_resamples: int, seed: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    scored = (labels >= 0) & (r.n_relevant >= 1)
    qi = np.nonzero(scored)[0]
    top = r.rows[qi]
    rel = (top >= 0) & (labels[np.maximum(top, 0)] == labels[qi, None])
    block, values = M.summarize(
        rel, r.n_relevant[qi], r.n_candidates[qi], r.first_rank[qi], k, n_resamples=n_resamples, seed=seed
    )
    return block, qi, values


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
    labels, composers = integer_labels([r.composer for r in meta_rows])
    albums, _ = integer_labels([r.album_id for r in meta_rows])
    t0 = time.perf_counter()
    # negation is exact in floating point: the distance ranking's ties stay ties
    scores = -x.astype(np.float64) if kind == "distance" else x
    v_all, v_album = rank_matrix(scores, labels, albums, k, batch_size=batch_size)
    search_sec = time.perf_counter() - t0
    t0 = time.perf_counter()
    overall, qi, values = _summary(v_all, labels, k, bootstrap_resamples, seed)
    album, _, _ = _summary(v_album, labels, k, bootstrap_resamples, seed)
    counts = np.bincount(labels[labels >= 0], minlength=len(composers))
    per_composer = M.breakdown(values, labels[qi], composers, counts)
    return {
        "k": k,
        "relevance": "same_standardized_composer",
        "self_exclusion": "by_track_id",
        "tie_break": "score_desc_then_row_asc",
        "search": "exact",
        "n_tracks": n,
        "query_policy": {
            "no_other_track_by_composer": "excluded_from_means",
            "missing_composer": "excluded_from_means_and_never_relevant",
            "n_excluded_no_other_track": int(((labels >= 0) & (v_all.n_relevant == 0)).sum()),
            "n_excluded_missing_composer": int((labels < 0).sum()),
        },
        "overall": overall,
        "exclude_same_album": album,
        "per_composer": per_composer,
        "timings": {
            "search_sec": round(search_sec, 4),
            "metrics_sec": round(time.perf_counter() - t0, 4),
            "total_sec": round(time.perf_counter() - t_total, 4),
        },
    }
