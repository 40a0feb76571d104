"""Retrieval evaluation as a library: rank every track against the others and score one label's retrieval.

Shared by the evaluate step (embeddings, re-ranked or not), the matrix evaluation of similarity backends
(:mod:`research_job.similarity_matrix`, e.g. Musly) and compare-models, so that every figure of the product comes
from the same ranking and the same per-query metric code (:mod:`research_job.metrics`).

Conventions: every track is a query; candidates are all other tracks (the query excluded by track id; track ids are
unique, so that is its own row); ranking by score descending, ties by ascending row; a candidate is relevant iff it
has the same label value; a query with a missing label or with no other track of its label is counted, not scored.
:func:`rank_all` is the exact cosine fast path (one float32 product per batch, float64 re-scoring of the pairs that
can matter); :func:`rank_by_scores` ranks any similarity given row by row (a re-ranked cosine, a Musly matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from research_job import metrics as M
from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.search import DEFAULT_MARGIN, Shortlister, error_bound, pair_scores, topk_from_shortlist

TRACK_SETS = ("all", "multi_label_albums")


def label_ids(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer labels of values (None -> -1), numbered in order of first appearance, and the label values."""
    index: dict[Any, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        out[i] = -1 if v is None else index.setdefault(v, len(index))
    return out, list(index)


@dataclass
class Variant:
    """Per-query ranking facts of one candidate policy (self excluded, or self + same album excluded)."""

    rows: np.ndarray  # int64 [N, k] top-k rows (-1 pads)
    scores: np.ndarray  # float64 [N, k]
    n_relevant: np.ndarray  # int64 [N] other relevant candidates
    n_candidates: np.ndarray  # int64 [N]
    first_rank: np.ndarray  # float64 [N] rank of the first relevant candidate (inf if none)
    best_score: np.ndarray  # float64 [N] exact score of the best relevant candidate (-inf if none)
    best_row: np.ndarray  # int64 [N] its row (-1 if none)


def _groups(labels: np.ndarray) -> list[np.ndarray]:
    """Rows of each label value 0 .. max (labels < 0 are in no group)."""
    n_groups = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    order = np.argsort(labels, kind="stable")
    sorted_l = labels[order]
    starts = np.searchsorted(sorted_l, np.arange(n_groups), side="left")
    ends = np.searchsorted(sorted_l, np.arange(n_groups), side="right")
    return [order[a:b] for a, b in zip(starts, ends, strict=True)]


def _best_relevant(
    x: np.ndarray, labels: np.ndarray, albums: np.ndarray, bound: np.ndarray, drop_album: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per track: number of other relevant candidates, exact score and row of the best one (score desc, row asc).

    Computed composer by composer (one small float32 block per composer, then float64 re-scoring of the pairs
    within the error band of each row's float32 maximum).
    """
    n = x.shape[0]
    n_rel = np.zeros(n, np.int64)
    s_r = np.full(n, -np.inf)
    r = np.full(n, -1, np.int64)
    for g in _groups(labels):
        if g.size < 2:
            continue
        xg = x[g]
        # small blocks: einsum's C loop; BLAS thread wake-ups cost more than the product on a busy machine
        blk = np.einsum("id,jd->ij", xg, xg) if g.size <= 512 else xg @ xg.T
        excl = np.eye(g.size, dtype=bool)
        if drop_album:
            excl |= albums[g][:, None] == albums[g][None, :]
        blk[excl] = -np.inf
        n_rel[g] = (~excl).sum(axis=1)
        mx = blk.max(axis=1).astype(np.float64)
        has = np.isfinite(mx)
        lo = np.nextafter((mx - 2.0 * bound[g]).astype(np.float32), np.float32(-np.inf))
        near = (blk >= lo[:, None]) & ~excl & has[:, None]
        qi, cj = np.nonzero(near)
        ex = pair_scores(x[g[qi]], x[g[cj]])
        o = np.lexsort((g[cj], -ex, qi))
        qi, cj, ex = qi[o], cj[o], ex[o]
        first = np.r_[True, qi[1:] != qi[:-1]] if qi.size else np.zeros(0, bool)
        s_r[g[qi[first]]] = ex[first]
        r[g[qi[first]]] = g[cj[first]]
    return n_rel, s_r, r


def _count_ahead(
    qb: np.ndarray,
    x: np.ndarray,
    s32: np.ndarray,
    rows: np.ndarray,
    s_r: np.ndarray,
    r: np.ndarray,
    bound: np.ndarray,
) -> np.ndarray:
    """How many candidates rank ahead of the best relevant (exact score > s_r, or equal and lower row).

    ``s32`` [B, m] float32 scores of candidates ``rows`` [B, m] (excluded / padding already -inf); the scores
    cover every candidate that could rank ahead (checked by the caller).
    """
    hi = s_r + bound
    lo = s_r - bound
    hi32 = np.nextafter(hi.astype(np.float32), np.float32(np.inf))
    lo32 = np.nextafter(lo.astype(np.float32), np.float32(-np.inf))
    above = s32 > hi32[:, None]
    band = (s32 >= lo32[:, None]) & ~above & (rows != r[:, None])
    bq, bj = np.nonzero(band)
    bc = rows[bq, bj]
    ex = pair_scores(qb[bq], x[bc])
    ahead = (ex > s_r[bq]) | ((ex == s_r[bq]) & (bc < r[bq]))
    return above.sum(axis=1) + np.bincount(bq[ahead], minlength=s32.shape[0])


def rank_all(
    vectors: np.ndarray,
    track_ids: list[str],
    labels: np.ndarray,
    albums: np.ndarray,
    k: int,
    *,
    batch_size: int = 1024,
    margin: int = DEFAULT_MARGIN,
) -> tuple[Variant, Variant]:
    """Exact top-k and first-relevant ranks of every track as a query, for both candidate policies.

    Args:
        vectors: float32 [N, D]; track_ids: N unique ids; labels: int [N] composer label (-1 = missing);
        albums: int [N] album label; k: cutoff.

    Returns:
        (self excluded, self + same album excluded).
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if len(set(track_ids)) != n:
        raise ArtifactError("track ids of the embeddings are not unique")
    # ids are unique: excluding the query's track id is excluding its own row
    album_sizes = np.bincount(albums) if n else np.zeros(1, np.int64)
    m = min(n, k + margin + int(album_sizes.max()) + 1)
    sl = Shortlister(x)
    cnorm = float(np.linalg.norm(x, axis=1).max()) if n else 0.0
    bound = error_bound(d, np.linalg.norm(x.astype(np.float64), axis=1), cnorm)
    excl_fns = {
        "all": lambda q, c: c == q[:, None],
        "album": lambda q, c: albums[c] == albums[q][:, None],  # includes the query itself
    }
    out: dict[str, Variant] = {}
    for name in excl_fns:
        n_rel, s_r, r = _best_relevant(x, labels, albums, bound, name == "album")
        n_excl = np.ones(n, np.int64) if name == "all" else album_sizes[albums]
        out[name] = Variant(
            np.full((n, k), -1, np.int64),
            np.full((n, k), -np.inf),
            n_rel,
            n - n_excl,
            np.full(n, np.inf),
            s_r,
            r,
        )
    bs = max(1, min(batch_size, 4096))
    for s in range(0, n, bs):
        e = min(n, s + bs)
        qrows = np.arange(s, e)
        qb = x[s:e]
        d32, i32 = sl.search(qb, m)
        last = (
            np.where(i32[:, -1] >= 0, d32[:, -1].astype(np.float64), -np.inf)
            if m
            else np.full(e - s, -np.inf)
        )
        for name, fn in excl_fns.items():
            v = out[name]
            res, valid = topk_from_shortlist(qb, qrows, x, d32, i32, k, bound[s:e], fn)
            v.rows[s:e], v.scores[s:e] = res.rows, res.scores
            s_r, r = v.best_score[s:e], v.best_row[s:e]
            has = (labels[s:e] >= 0) & (r >= 0)
            # the shortlist covers the best relevant when everything outside it is certainly below s_r
            covered = has & ((m >= n) | (last < s_r - bound[s:e]))
            ranks = np.full(e - s, np.inf)
            if covered.any():
                c = np.nonzero(covered)[0]
                s32 = np.where(valid[c], d32[c], -np.inf).astype(np.float32)
                ranks[c] = 1.0 + _count_ahead(qb[c], x, s32, i32[c], s_r[c], r[c], bound[s:e][c])
            rest = np.nonzero(has & ~covered)[0]
            for f0 in range(0, rest.size, 256):
                c = rest[f0 : f0 + 256]
                full = qb[c] @ x.T
                cand = np.broadcast_to(np.arange(n), full.shape)
                full[fn(qrows[c], cand)] = -np.inf
                ranks[c] = 1.0 + _count_ahead(qb[c], x, full, cand, s_r[c], r[c], bound[s:e][c])
            v.first_rank[s:e] = ranks
    return out["all"], out["album"]


def rank_by_scores(
    score_rows: Callable[[np.ndarray], np.ndarray],
    n: int,
    labels: np.ndarray,
    albums: np.ndarray,
    k: int,
    *,
    batch_size: int = 512,
) -> tuple[Variant, Variant]:
    """The facts of :func:`rank_all` for any similarity: ``score_rows(rows)`` gives float64 [B, n] scores of the
    query rows against every track (the query's own column at -inf), e.g. a re-ranked cosine or a Musly matrix.

    Ranking is score descending, ties by ascending row, as for cosine; every candidate is scored (exact).
    """
    out = {
        name: Variant(
            np.full((n, k), -1, np.int64),
            np.full((n, k), -np.inf),
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.full(n, np.inf),
            np.full(n, -np.inf),
            np.full(n, -1, np.int64),
        )
        for name in ("all", "album")
    }
    cols = np.arange(n)
    for s in range(0, n, max(1, batch_size)):
        rows = np.arange(s, min(n, s + batch_size))
        base = np.array(score_rows(rows), dtype=np.float64)
        base[np.arange(rows.size), rows] = -np.inf
        for name, v in out.items():
            sc = base.copy()
            excluded = cols[None, :] == rows[:, None]
            if name == "album":
                excluded = excluded | (albums[None, :] == albums[rows][:, None])
            sc[excluded] = -np.inf
            order = np.lexsort((np.broadcast_to(cols, sc.shape), -sc), axis=1)
            kk = min(k, n)
            top = order[:, :kk]
            top_s = np.take_along_axis(sc, top, axis=1)
            v.rows[rows, :kk] = np.where(np.isfinite(top_s), top, -1)
            v.scores[rows, :kk] = top_s
            relevant = (labels[None, :] == labels[rows][:, None]) & (labels[rows][:, None] >= 0) & ~excluded
            v.n_relevant[rows] = relevant.sum(axis=1)
            v.n_candidates[rows] = (~excluded).sum(axis=1)
            ranked_rel = np.take_along_axis(relevant, order, axis=1)
            has = ranked_rel.any(axis=1)
            first = np.argmax(ranked_rel, axis=1)
            v.first_rank[rows] = np.where(has, first + 1.0, np.inf)
            best = order[np.arange(rows.size), first]
            v.best_row[rows] = np.where(has, best, -1)
            v.best_score[rows] = np.where(has, sc[np.arange(rows.size), best], -np.inf)
    return out["all"], out["album"]


def summary(
    v: Variant, labels: np.ndarray, k: int, resamples: int, seed: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """One metric block of the scored queries (means, random expectation, bootstrap CI), their rows and values."""
    qi = np.nonzero((labels >= 0) & (v.n_relevant >= 1))[0]
    top = v.rows[qi]
    rel = (top >= 0) & (labels[np.maximum(top, 0)] == labels[qi, None])
    block, values = M.summarize(
        rel, v.n_relevant[qi], v.n_candidates[qi], v.first_rank[qi], k, n_resamples=resamples, seed=seed
    )
    return block, qi, values


def track_set(labels: list[Any], albums: list[str], which: str) -> np.ndarray:
    """Rows taking part (as queries and candidates): all, or those of albums with >= 2 distinct known labels.

    Raises:
        ConfigError: unknown set, naming the known ones.
    """
    if which == "all":
        return np.arange(len(labels))
    if which != "multi_label_albums":
        raise ConfigError(unknown_choice("track set", which, TRACK_SETS))
    seen: dict[str, set[Any]] = {}
    for lab, alb in zip(labels, albums, strict=True):
        if lab is not None:
            seen.setdefault(alb, set()).add(lab)
    rows = [i for i, alb in enumerate(albums) if len(seen.get(alb, ())) >= 2]
    if not rows:
        raise ConfigError("no album holds two or more label values: 'multi_label_albums' leaves no track")
    return np.asarray(rows)


def labelled(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(selector of the tracks with a label, their labels, number of labels); None when no clustering is
    defined (fewer than two labels or three tracks, or a label per track)."""
    sel = labels >= 0
    y = labels[sel]
    n_labels = len(np.unique(y))
    return None if n_labels < 2 or y.size < 3 or n_labels >= y.size else (sel, y, n_labels)


def _clustering_block(y: np.ndarray, n_labels: int, silhouette: float, pred: np.ndarray, method: str) -> dict:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "n_tracks": int(y.size),
        "n_labels": int(n_labels),
        "silhouette_cosine": float(silhouette),
        "kmeans_nmi": float(normalized_mutual_info_score(y, pred)),
        "kmeans_ari": float(adjusted_rand_score(y, pred)),
        "method": method,
    }


def fit_kmeans(unit: np.ndarray, n_clusters: int, seed: int) -> Any:
    """The seeded KMeans of the evaluation (10 inits) fitted on unit vectors; the report's clusters reuse it."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(unit)


def clustering_scores(vectors: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, Any] | None:
    """How well the labels form clusters in the embedding space (scikit-learn, tracks with a label only):
    silhouette of the true labels under cosine distance, and NMI / ARI of a seeded KMeans with k = number of
    labels on the unit vectors against the labels (S002's reference lines: silhouette > 0.5, NMI > 0.6).
    None with fewer than two labels or three tracks."""
    from sklearn.metrics import silhouette_score

    found = labelled(labels)
    if found is None:
        return None
    sel, y, n_labels = found
    x = np.asarray(vectors[sel], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pred = fit_kmeans(x, n_labels, seed).labels_
    method = "sklearn KMeans(n_clusters=n_labels, n_init=10) on unit vectors; silhouette of the true labels"
    return _clustering_block(y, n_labels, silhouette_score(x, y, metric="cosine"), pred, method)


def clustering_from_distances(dist: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, Any] | None:
    """:func:`clustering_scores` for a backend that gives distances, not vectors (Musly): silhouette of the true
    labels over the precomputed distances, and NMI / ARI of a seeded agglomerative clustering (average linkage,
    the vector-free counterpart of KMeans) with k = number of labels."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    found = labelled(labels)
    if found is None:
        return None
    sel, y, n_labels = found
    d = np.asarray(dist, dtype=np.float64)[np.ix_(sel, sel)]
    d = (d + d.T) / 2.0
    np.fill_diagonal(d, 0.0)
    pred = AgglomerativeClustering(n_clusters=n_labels, metric="precomputed", linkage="average").fit_predict(
        d
    )
    method = "precomputed distances: silhouette of the true labels, agglomerative (average) clustering"
    return _clustering_block(y, n_labels, silhouette_score(d, y, metric="precomputed"), pred, method)


@dataclass
class Scored:
    """One evaluation: the metric blocks of eval_results.json and the ranking the samples are read from."""

    block: dict[str, Any]  # n_tracks, query_policy, overall, exclude_same_album, per_composer, clustering
    ranking: Variant  # self excluded: every query's top-k
    labels: np.ndarray
    #: seconds spent ranking and scoring (filled by the caller that timed them)
    search_sec: float = 0.0
    metrics_sec: float = 0.0


def score(
    v_all: Variant,
    v_album: Variant,
    label_values: Sequence[Any],
    *,
    k: int,
    resamples: int,
    seed: int,
    album_is_label: bool = False,
) -> Scored:
    """The blocks ``n_tracks``, ``query_policy``, ``overall``, ``exclude_same_album`` (None when the album is the
    label: removing same-album candidates would leave nothing relevant) and ``per_composer`` of a ranking."""
    labels, names = label_ids(label_values)
    overall, qi, values = summary(v_all, labels, k, resamples, seed)
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    block = {
        "n_tracks": int(labels.size),
        "query_policy": {
            "no_other_track_by_composer": "excluded_from_means",
            "missing_composer": "excluded_from_means_and_never_relevant",
            "n_excluded_no_other_track": int(((labels >= 0) & (v_all.n_relevant == 0)).sum()),
            "n_excluded_missing_composer": int((labels < 0).sum()),
        },
        "overall": overall,
        "exclude_same_album": None if album_is_label else summary(v_album, labels, k, resamples, seed)[0],
        "per_composer": M.breakdown(values, labels[qi], names, counts),
    }
    return Scored(block, v_all, labels)


def rank(
    label_values: Sequence[Any],
    album_values: Sequence[Any],
    k: int,
    *,
    vectors: np.ndarray | None = None,
    ids: Sequence[str] | None = None,
    score_rows: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = 1024,
) -> tuple[Variant, Variant]:
    """Both candidate policies' rankings: the exact cosine of ``vectors`` (with their ``ids``), or any
    ``score_rows`` (exactly one of the two)."""
    labels, _ = label_ids(label_values)
    albums, _ = label_ids(album_values)
    if (vectors is None) == (score_rows is None):
        raise ValueError("rank needs exactly one of vectors or score_rows")
    if vectors is not None:
        return rank_all(vectors, list(ids or []), labels, albums, k, batch_size=batch_size)
    assert score_rows is not None
    return rank_by_scores(score_rows, labels.size, labels, albums, k, batch_size=batch_size)


def rank_from_neighbors(vectors: np.ndarray, labels: np.ndarray, table: np.ndarray, k: int) -> Variant:
    """The self-excluded :class:`Variant` of :func:`rank_all` read from an exact neighbour table, without the
    all-pairs product: ``table`` int [N, K >= k] lists every row's K nearest other rows by the same ranking (float64
    score descending, ties by row ascending, -1 pads; ``index/neighbors.i32``, :mod:`research_job.neighbors`).

    The top-k and a first relevant within the K columns are read off the table; only a query whose K neighbours
    hold no relevant candidate although it has one is ranked against every track (as :func:`rank_all` does).

    Raises:
        ValueError: the table is not [N, K >= k].
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if table.ndim != 2 or table.shape[0] != n or table.shape[1] < k:
        raise ValueError(f"neighbour table of shape {table.shape} cannot give the top-{k} of {n} tracks")
    t = np.asarray(table, dtype=np.int64)
    rows = t[:, :k].copy()
    qi = np.repeat(np.arange(n), k)
    flat = rows.reshape(-1)
    sc = np.where(flat >= 0, pair_scores(x[qi], x[np.maximum(flat, 0)]), -np.inf).reshape(n, k)
    counts = np.bincount(labels[labels >= 0], minlength=1)
    n_rel = np.where(labels >= 0, counts[np.maximum(labels, 0)] - 1, 0).astype(np.int64)
    rel = (t >= 0) & (labels[np.maximum(t, 0)] == labels[:, None]) & (labels[:, None] >= 0)
    has = rel.any(axis=1)
    first = np.where(has, np.argmax(rel, axis=1) + 1.0, np.inf)
    best_row = np.where(has, t[np.arange(n), np.argmax(rel, axis=1)], -1)
    best = np.where(has, pair_scores(x, x[np.maximum(best_row, 0)]), -np.inf)
    rest = np.nonzero((n_rel > 0) & ~has)[0]
    if rest.size:
        cnorm = float(np.linalg.norm(x, axis=1).max())
        bound = error_bound(d, np.linalg.norm(x.astype(np.float64), axis=1), cnorm)
        cand = np.arange(n)
        for f0 in range(0, rest.size, 256):
            c = rest[f0 : f0 + 256]
            full = x[c] @ x.T
            full[np.arange(c.size), c] = -np.inf
            s_r, r = _best_in_rows(x, c, full, labels, bound)
            grid = np.broadcast_to(cand, full.shape)
            first[c] = 1.0 + _count_ahead(x[c], x, full, grid, s_r, r, bound[c])
            best[c], best_row[c] = s_r, r
    return Variant(rows, sc, n_rel, np.full(n, n - 1, np.int64), first, best, best_row)


def _best_in_rows(
    x: np.ndarray, c: np.ndarray, full: np.ndarray, labels: np.ndarray, bound: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact score and row of the best relevant candidate of queries ``c`` (score desc, row asc) from their
    float32 rows ``full`` [B, N] (self at -inf); every query has one."""
    relm = labels[None, :] == labels[c][:, None]
    rs = np.where(relm, full, -np.inf)
    mx = rs.max(axis=1).astype(np.float64)
    lo = np.nextafter((mx - 2.0 * bound[c]).astype(np.float32), np.float32(-np.inf))
    qi, cj = np.nonzero(rs >= lo[:, None])
    ex = pair_scores(x[c[qi]], x[cj])
    o = np.lexsort((cj, -ex, qi))
    qi, cj, ex = qi[o], cj[o], ex[o]
    head = np.r_[True, qi[1:] != qi[:-1]]
    s_r = np.full(c.size, -np.inf)
    r = np.full(c.size, -1, np.int64)
    s_r[qi[head]], r[qi[head]] = ex[head], cj[head]
    return s_r, r
