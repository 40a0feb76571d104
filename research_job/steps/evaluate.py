"""evaluate: composer retrieval over all tracks -> ``eval/eval_results.json``, ``sample_top5.json`` / ``.md``.

Each track is a query; candidates are all other tracks (self excluded by track id), ranked by the exact
reference ranking of :mod:`research_job.search`; a candidate is relevant iff it has the same standardised
composer. Reported: Precision@k, HitRate@k, NDCG@k, MRR (full ranking), their exact expectation under a random
ranking, a seeded bootstrap CI, a per-composer breakdown, and the same metrics with every same-album candidate
excluded (the album effect). Queries with a missing composer or with no other track by their composer are not
scored, only counted.

Scaling: queries are processed in batches; one float32 BLAS product per batch gives candidate scores, and only
the candidates that can matter (top k + margin, and a band around the best relevant score for MRR) are re-scored
in float64, so the result equals brute force while the cost is one N x N float32 product.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from research_job import metrics as M
from research_job import schema
from research_job.augment import CHAINS
from research_job.config import CommonConfig, option
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.io.atomic import write_text
from research_job.layout import ArtifactLayout, artifact_version
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import code_version, utc_now
from research_job.rerank import RerankOptions, scores, track_stats
from research_job.search import DEFAULT_MARGIN, Shortlister, error_bound, pair_scores, topk_from_shortlist
from research_job.steps import Step

LOG = logging.getLogger(__name__)

#: metadata columns a hit's relevance can compare, and how eval_results.json names that relevance
LABELS = ("composer", "album_id")
RELEVANCE = {"composer": "same_standardized_composer", "album_id": "same_album_id"}
TRACK_SETS = ("all", "multi_label_albums")
TASKS = ("label", "excerpt")


@dataclass(frozen=True)
class EvaluateConfig(RerankOptions):
    """evaluate: embeddings + metadata -> eval/eval_results.json, sample top-5 lists, a printed table."""

    common: CommonConfig = field(default_factory=CommonConfig)
    k: int = option(5, "cut-off of Precision@k, HitRate@k and NDCG@k (1..100)")
    bootstrap_resamples: int = option(
        1000, "bootstrap resamples of the queries for the 95% confidence intervals"
    )
    n_samples: int = option(10, "queries whose top-k lists are written to eval/sample_top5.{json,md}")
    seed: int = option(0, "seed of the bootstrap and of the sampled queries")
    batch_size: int = option(1024, "queries scored per matrix product (memory vs speed)")
    label: str = option("composer", "metadata column whose equality makes a hit relevant", choices=LABELS)
    tracks: str = option(
        "all",
        "queries and candidates: all tracks, or only those of albums holding several label values (e.g. the "
        "soundtracks with several artists)",
        choices=TRACK_SETS,
    )
    clustering: bool = option(True, "also report silhouette (cosine) and KMeans NMI / ARI (scikit-learn)")
    task: str = option(
        "label",
        "label: retrieval of same-label tracks (eval_results.json); excerpt: augmented excerpts find their own "
        "track (excerpt_results.json)",
        choices=TASKS,
    )
    excerpt_sec: float = option(10.0, "excerpt task: length of each query excerpt, seconds")
    excerpt_chain: str = option(
        "query", "excerpt task: augmentation of the queries (research_job.augment)", choices=CHAINS
    )
    excerpts_per_track: int = option(1, "excerpt task: query excerpts per track")
    excerpt_tracks: int | None = option(
        None, "excerpt task: query at most this many tracks (seeded sample); unset = all"
    )


def check(cfg: EvaluateConfig) -> None:
    """Refuse a cut-off or counts out of range.

    Raises:
        ConfigError: naming the bad value.
    """
    if not 1 <= cfg.k <= 100:
        raise ConfigError(f"k must be in 1..100, got {cfg.k}")
    if cfg.bootstrap_resamples < 1:
        raise ConfigError(f"bootstrap_resamples must be >= 1, got {cfg.bootstrap_resamples}")
    if (
        cfg.excerpt_sec <= 0
        or cfg.excerpts_per_track < 1
        or (cfg.excerpt_tracks is not None and cfg.excerpt_tracks < 1)
    ):
        raise ConfigError(
            f"excerpt_sec must be > 0, excerpts_per_track >= 1 and excerpt_tracks >= 1 or unset; got "
            f"{cfg.excerpt_sec}, {cfg.excerpts_per_track}, {cfg.excerpt_tracks}"
        )
    if cfg.n_samples < 0 or cfg.batch_size < 1:
        raise ConfigError(
            f"n_samples must be >= 0 and batch_size >= 1, got {cfg.n_samples}, {cfg.batch_size}"
        )


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


def _summary(
    v: Variant, labels: np.ndarray, k: int, cfg: EvaluateConfig, with_ci: bool
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    scored = (labels >= 0) & (v.n_relevant >= 1)
    qi = np.nonzero(scored)[0]
    top = v.rows[qi]
    rel = (top >= 0) & (labels[np.maximum(top, 0)] == labels[qi, None])
    values = M.per_query(rel, v.n_relevant[qi], v.first_rank[qi], k) if qi.size else np.zeros((0, 4))
    base = M.random_expectation(v.n_candidates[qi], v.n_relevant[qi], k) if qi.size else np.zeros((0, 4))
    ci = M.bootstrap_ci(values, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed) if with_ci else None
    return (
        {
            "n_queries": int(qi.size),
            "metrics": M.means(values),
            "random_baseline": M.means(base),
            "confidence_intervals": ci,
        },
        qi,
        values,
    )


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


def clustering_scores(vectors: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, Any] | None:
    """How well the labels form clusters in the embedding space (scikit-learn, tracks with a label only):
    silhouette of the true labels under cosine distance, and NMI / ARI of a seeded KMeans with k = number of
    labels on the unit vectors against the labels (S002's reference lines: silhouette > 0.5, NMI > 0.6).
    None with fewer than two labels or three tracks."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    sel = labels >= 0
    y = labels[sel]
    n_labels = len(np.unique(y))
    if n_labels < 2 or y.size < 3 or n_labels >= y.size:
        return None
    x = np.asarray(vectors[sel], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pred = KMeans(n_clusters=n_labels, n_init=10, random_state=seed).fit_predict(x)
    return {
        "n_tracks": int(y.size),
        "n_labels": int(n_labels),
        "silhouette_cosine": float(silhouette_score(x, y, metric="cosine")),
        "kmeans_nmi": float(normalized_mutual_info_score(y, pred)),
        "kmeans_ari": float(adjusted_rand_score(y, pred)),
        "method": "sklearn KMeans(n_clusters=n_labels, n_init=10) on unit vectors; silhouette of the true labels",
    }


def _label(values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer labels of values (None -> -1), in order of first appearance."""
    index: dict[Any, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        out[i] = -1 if v is None else index.setdefault(v, len(index))
    return out, list(index)


@dataclass
class Scored:
    """One evaluation of a set of vectors: the metric blocks of eval_results.json and what the samples need."""

    block: dict[str, Any]  # n_tracks, query_policy, overall, exclude_same_album, per_composer, clustering
    ranking: Variant  # self excluded: every query's top-k
    labels: np.ndarray
    search_sec: float
    metrics_sec: float


def _per_label(
    labels: np.ndarray, names: list[Any], qi: np.ndarray, values: np.ndarray
) -> list[dict[str, Any]]:
    """Per label value: tracks, scored queries and the mean of each metric (most tracks first)."""
    out = []
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    q_labels = labels[qi]
    for c, name in enumerate(names):
        sel = q_labels == c
        if sel.any():
            m = values[sel].mean(axis=0)
            out.append(
                {
                    "composer": name,
                    "n_tracks": int(counts[c]),
                    "n_queries": int(sel.sum()),
                    **{key: float(min(1.0, max(0.0, m[i]))) for i, key in enumerate(M.METRICS)},
                }
            )
    return sorted(out, key=lambda p: (-p["n_tracks"], p["composer"]))


def score_vectors(
    vectors: np.ndarray, ids: list[str], label_values: list[Any], album_values: list[str], cfg: EvaluateConfig
) -> Scored:
    """Rank every track against the others (exact cosine, or the configured re-ranking) and score the labels:
    the blocks ``overall``, ``exclude_same_album`` (None when the label is the album), ``per_composer``,
    ``clustering`` and ``query_policy`` of eval_results.json."""
    t0 = time.perf_counter()
    labels, names = _label(label_values)
    albums, _ = _label(album_values)
    spec = cfg.rerank_spec
    if spec.method == "none":
        v_all, v_album = rank_all(vectors, ids, labels, albums, cfg.k, batch_size=cfg.batch_size)
    else:
        stats = track_stats(vectors, spec)
        v_all, v_album = rank_by_scores(
            lambda rows: scores(vectors, rows, spec, stats), len(ids), labels, albums, cfg.k
        )
    t1 = time.perf_counter()
    overall, qi, values = _summary(v_all, labels, cfg.k, cfg, True)
    block = {
        "n_tracks": len(ids),
        "query_policy": {
            "no_other_track_by_composer": "excluded_from_means",
            "missing_composer": "excluded_from_means_and_never_relevant",
            "n_excluded_no_other_track": int(((labels >= 0) & (v_all.n_relevant == 0)).sum()),
            "n_excluded_missing_composer": int((labels < 0).sum()),
        },
        "overall": overall,
        # with the album as the label, removing same-album candidates leaves nothing relevant
        "exclude_same_album": _summary(v_album, labels, cfg.k, cfg, True)[0]
        if cfg.label != "album_id"
        else None,
        "per_composer": _per_label(labels, names, qi, values),
        **({"clustering": clustering_scores(vectors, labels, cfg.seed)} if cfg.clustering else {}),
    }
    return Scored(block, v_all, labels, t1 - t0, time.perf_counter() - t1)


def _describe(r: TrackRow) -> dict[str, Any]:
    return {
        "track_id": r.track_id,
        "title": r.title or "",
        "composer": r.composer_display,
        "composer_key": r.composer,
        "album_id": r.album_id,
    }


def _samples(scored: Scored, meta_rows: list[TrackRow], cfg: EvaluateConfig, av: str) -> dict[str, Any]:
    """The ``sample_topk`` dict: the top-k lists of a seeded sample of queries."""
    rng = np.random.default_rng(cfg.seed)
    picks = np.sort(rng.choice(len(meta_rows), size=min(cfg.n_samples, len(meta_rows)), replace=False))
    v, labels = scored.ranking, scored.labels
    samples = []
    for q in picks:
        hits = []
        for rank, (row, score) in enumerate(zip(v.rows[q], v.scores[q], strict=True), start=1):
            if row < 0:
                break
            rel = labels[q] >= 0 and labels[row] == labels[q]
            hits.append(
                {"rank": rank, **_describe(meta_rows[row]), "score": float(score), "relevant": bool(rel)}
            )
        samples.append({"query": _describe(meta_rows[q]), "hits": hits})
    return {"schema_version": "1.0", "artifact_version": av, "k": cfg.k, "samples": samples}


def _head_comparison(
    layout: ArtifactLayout,
    vectors: np.ndarray,
    ids: list[str],
    meta_rows: list[TrackRow],
    keep: np.ndarray,
    cfg: EvaluateConfig,
) -> dict[str, Any] | None:
    """For a head folder: the head's vectors and the frozen backbone's (``head/frozen.f32``) scored on the same
    tracks, its test split (queries and candidates both; the tracks the head never trained on); else None.

    Raises:
        ArtifactError: ``frozen.f32`` does not hold one row per embedded track.
    """
    from research_job.heads import is_head_folder, read_head_meta, test_rows

    if not is_head_folder(layout):
        return None
    frozen_raw = np.fromfile(layout.path("head_frozen"), dtype="<f4")
    total = int(schema.read_artifact(layout.track_ids_json, "track_ids")["count"])
    if frozen_raw.size % total:
        raise ArtifactError(f"{layout.path('head_frozen')}: {frozen_raw.size} floats is not {total} rows")
    frozen = frozen_raw.reshape(total, -1)[keep]
    pos = {int(r): i for i, r in enumerate(keep)}
    test = [pos[r] for r in test_rows(layout) if r in pos]
    if len(test) < 3:
        return None
    sel = np.asarray(sorted(test))
    sub_ids = [ids[i] for i in sel]
    labels = [getattr(meta_rows[i], cfg.label) for i in sel]
    albums = [meta_rows[i].album_id for i in sel]
    meta = read_head_meta(layout)
    return {
        "split": (meta.get("split") or {}).get("by"),
        "n_test": int(sel.size),
        "head": score_vectors(vectors[sel], sub_ids, labels, albums, cfg).block,
        "frozen": score_vectors(frozen[sel], sub_ids, labels, albums, cfg).block,
    }


def _metadata_rows(layout: ArtifactLayout, ids: list[str]) -> list[TrackRow]:
    """The metadata row of every embedded track, in embedding order.

    Raises:
        ArtifactError: an embedded track has no row.
    """
    rows_by_id = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    missing = [t for t in ids if t not in rows_by_id]
    if missing:
        raise ArtifactError(
            f"{len(missing)} embedded tracks are not in {layout.tracks_csv}, e.g. {missing[:3]}"
        )
    return [rows_by_id[t] for t in ids]


def evaluate(cfg: EvaluateConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute ``eval_results`` and ``sample_topk`` dicts (nothing written)."""
    check(cfg)
    layout = cfg.common.layout
    t_total = time.perf_counter()
    vectors, ids, emb_meta = load_embeddings(layout)
    meta_rows = _metadata_rows(layout, ids)
    keep = track_set([getattr(r, cfg.label) for r in meta_rows], [r.album_id for r in meta_rows], cfg.tracks)
    vectors, ids, meta_rows = vectors[keep], [ids[i] for i in keep], [meta_rows[i] for i in keep]
    scored = score_vectors(
        vectors, ids, [getattr(r, cfg.label) for r in meta_rows], [r.album_id for r in meta_rows], cfg
    )
    model = emb_meta["model"]["name"]
    av = artifact_version(layout, model)
    comparison = _head_comparison(layout, vectors, ids, meta_rows, keep, cfg)
    results = {
        "schema_version": "1.0",
        "artifact_version": av,
        "model": model,
        "k": cfg.k,
        "relevance": RELEVANCE[cfg.label],
        "tracks": cfg.tracks,
        "rerank": cfg.rerank_spec.to_json(),
        "self_exclusion": "by_track_id",
        "tie_break": "score_desc_then_row_asc",
        "search": "exact",
        "embeddings_sha256": emb_meta["files"]["embeddings_sha256"],
        **scored.block,
        **({"head_comparison": comparison} if comparison is not None else {}),
        "timings": {
            "search_sec": round(scored.search_sec, 4),
            "metrics_sec": round(scored.metrics_sec, 4),
            "total_sec": round(time.perf_counter() - t_total, 4),
        },
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    return results, _samples(scored, meta_rows, cfg, av)


def sample_markdown(sample: dict[str, Any]) -> str:
    """Human-readable Markdown of the sample top-k lists."""
    lines = [f"# Sample top-{sample['k']} lists ({sample['artifact_version']})", ""]
    for s in sample["samples"]:
        q = s["query"]
        lines += [f"## {q['title'] or q['track_id']} — {q['composer'] or '(composer missing)'}", ""]
        lines += [f"track `{q['track_id']}`, album `{q['album_id']}`", ""]
        lines += ["| rank | score | title | composer | album | relevant |", "|---:|---:|---|---|---|:---:|"]
        for h in s["hits"]:
            title = (h["title"] or h["track_id"]).replace("|", "\\|")
            comp = (h["composer"] or "").replace("|", "\\|")
            mark = "yes" if h["relevant"] else ""
            lines.append(f"| {h['rank']} | {h['score']:.4f} | {title} | {comp} | {h['album_id']} | {mark} |")
        lines.append("")
    return "\n".join(lines)


def format_table(results: dict[str, Any]) -> str:
    """Plain-text table of the headline metrics, random baseline and CI, for the terminal."""
    k = results["k"]
    names = {
        "precision_at_k": f"Precision@{k}",
        "hit_rate_at_k": f"HitRate@{k}",
        "ndcg_at_k": f"NDCG@{k}",
        "mrr": "MRR",
    }
    what = {"same_standardized_composer": "Composer", "same_album_id": "Album"}.get(
        results["relevance"], "Label"
    )
    out = [
        f"{what} retrieval, model {results['model']}, {results['n_tracks']} tracks",
        f"{'metric':<14}{'all':>9}{'95% CI':>17}{'random':>9}{'no album':>10}{'random, no album':>18}",
    ]
    o, a = (
        results["overall"],
        results["exclude_same_album"] or {"metrics": None, "random_baseline": None, "n_queries": 0},
    )
    for key, label in names.items():

        def f(block: dict[str, Any] | None, key: str = key) -> str:
            return f"{block[key]:.4f}" if block else "n/a"

        ci = o["confidence_intervals"]
        ci_s = f"[{ci[key]['low']:.3f}, {ci[key]['high']:.3f}]" if ci else "n/a"
        out.append(
            f"{label:<14}{f(o['metrics']):>9}{ci_s:>17}{f(o['random_baseline']):>9}"
            f"{f(a['metrics']):>10}{f(a['random_baseline']):>18}"
        )
    qp = results["query_policy"]
    out.append(
        f"queries scored {o['n_queries']} (no album: {a['n_queries']}); excluded: "
        f"{qp['n_excluded_no_other_track']} with no other track by their composer, "
        f"{qp['n_excluded_missing_composer']} with composer missing"
    )
    hc = results.get("head_comparison")
    if hc:
        out.append(
            f"on the head's test split ({hc['split']}, {hc['n_test']} tracks), queries and candidates:"
        )
        for which in ("head", "frozen"):
            o2 = hc[which]["overall"]
            if o2["metrics"]:
                ci2 = o2["confidence_intervals"]["precision_at_k"]
                out.append(
                    f"  {which:<7}P@{k} {o2['metrics']['precision_at_k']:.4f} [{ci2['low']:.3f}, {ci2['high']:.3f}]"
                    f"  HitRate@{k} {o2['metrics']['hit_rate_at_k']:.4f}  MRR {o2['metrics']['mrr']:.4f}"
                    f"  (random P@{k} {o2['random_baseline']['precision_at_k']:.4f})"
                )
    c = results.get("clustering")
    if c:
        out.append(
            f"clustering of {c['n_tracks']} tracks into {c['n_labels']} labels: silhouette (cosine) "
            f"{c['silhouette_cosine']:.3f}, KMeans NMI {c['kmeans_nmi']:.3f}, ARI {c['kmeans_ari']:.3f}"
        )
    return "\n".join(out)


def run_excerpt(cfg: EvaluateConfig) -> dict[str, Any]:
    """The excerpt task (:mod:`research_job.excerpt`) on the folder; writes ``eval/excerpt_results.json``."""
    from research_job.excerpt import evaluate_excerpts

    layout = cfg.common.layout
    result = evaluate_excerpts(
        layout,
        seconds=cfg.excerpt_sec,
        chain=cfg.excerpt_chain,
        per_track=cfg.excerpts_per_track,
        max_tracks=cfg.excerpt_tracks,
        seed=cfg.seed,
        resamples=cfg.bootstrap_resamples,
        rows=_test_rows(layout),
    )
    schema.write_artifact(layout.path("excerpt_results"), "excerpt_results", result)
    return result


def _test_rows(layout: ArtifactLayout) -> list[int] | None:
    """For a head folder, the rows of its test split (the tracks the head never saw); else None (all rows)."""
    try:
        from research_job.heads import is_head_folder, test_rows
    except ImportError:
        return None
    rows = test_rows(layout) if is_head_folder(layout) else []
    return rows or None  # a head trained with no test split: every track is queried


def _show(cfg: EvaluateConfig, result: dict[str, Any]) -> str:
    if cfg.task == "excerpt":
        from research_job.excerpt import format_excerpt

        return format_excerpt(result)
    return format_table(result)


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    """Evaluate and write ``eval_results.json``, ``sample_top5.json`` and ``sample_top5.md`` (task ``label``) or
    ``excerpt_results.json`` (task ``excerpt``).

    Returns:
        the result dict written.
    """
    check(cfg)
    if cfg.task == "excerpt":
        return run_excerpt(cfg)
    layout = cfg.common.layout
    results, sample = evaluate(cfg)
    schema.validate("sample_topk", sample, source=layout.sample_top5_json)
    schema.write_artifact(layout.eval_results, "eval_results", results)
    schema.write_artifact(layout.sample_top5_json, "sample_topk", sample)
    write_text(layout.sample_top5_md, sample_markdown(sample))
    return results


STEP = Step(
    name="evaluate",
    config=EvaluateConfig,
    summary="Composer-retrieval evaluation with exact search; writes eval/ and prints a table.",
    example="research-job evaluate --k 5 --bootstrap-resamples 1000",
    run=run,
    check=check,
    show=_show,
    pipeline=60,
)
