"""Exact cosine search: THE reference ranking used by evaluate, build-index recall and the Node parity test.

Definition (the Node API implements the same):

* score(a, b) = sum over d = 0 .. D-1, in that order, of float64(a[d]) * float64(b[d]), accumulated in float64
  (a plain sequential loop; no FMA, no pairwise summation). On L2-normalised rows this is the cosine.
* ranking: score descending, ties broken by ascending row index.
* self-exclusion: a query never retrieves its own track, matched by ``track_id`` (not by row position), so two
  identical vectors of two different tracks still retrieve each other.

Computing every score in float64 is too slow for large N, so a float32 BLAS search (FAISS ``IndexFlatIP``:
matmul + heap selection, multi-threaded) shortlists the top ``m = k + margin + (excluded rows)`` candidates
(``margin`` = 16 by default) and only the shortlist is re-scored in float64. The result is provably the exact
ranking: the float32 dot product of length D differs from the exact one by at most
``bound = D * 2**-23 * |q| * max_j |c_j|`` (twice the textbook ``D * u`` bound, u = 2**-24), so a candidate whose
float32 score is below ``kth_float32 - 2 * bound`` cannot be in the exact top-k. When the shortlist's last
float32 score is not below that line (many near-ties, e.g. duplicate vectors), that query falls back to one full
float32 row and re-scores every candidate inside the band. Either way the result equals brute force
(:func:`brute_force`, tested on random data, duplicates and ties).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MARGIN = 16
_U2 = 2.0**-23


def exact_scores(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """Scores of every (query, candidate) pair by the reference definition, float64 [Q, N] (small inputs)."""
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(corpus, dtype=np.float64)
    out = np.zeros((q.shape[0], c.shape[0]), dtype=np.float64)
    for d in range(q.shape[1]):
        out += q[:, d : d + 1] * c[None, :, d]
    return out


def pair_scores(queries: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """Reference scores of pairs: ``queries`` [P, D] against ``cands`` [P, D] row by row -> float64 [P]."""
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(cands, dtype=np.float64)
    out = np.zeros(q.shape[0], dtype=np.float64)
    for d in range(q.shape[1]):
        out += q[:, d] * c[:, d]
    return out


def error_bound(dim: int, query_norms: np.ndarray, max_corpus_norm: float) -> np.ndarray:
    """Upper bound of |float32 BLAS dot - exact dot| per query (see the module docstring)."""
    return dim * _U2 * np.asarray(query_norms, dtype=np.float64) * float(max_corpus_norm) + 1e-30


@dataclass
class TopK:
    """Top-k result: ``rows`` int64 [Q, k] (-1 where fewer than k candidates), ``scores`` float64 [Q, k]."""

    rows: np.ndarray
    scores: np.ndarray


class Shortlister:
    """Float32 BLAS top-m over a corpus: FAISS ``IndexFlatIP`` (multi-threaded matmul + heap selection)."""

    def __init__(self, corpus: np.ndarray) -> None:
        from research_job.index.faiss_common import faiss_module

        faiss = faiss_module()
        self.corpus = np.ascontiguousarray(corpus, dtype=np.float32)
        self.index = faiss.IndexFlatIP(self.corpus.shape[1])
        if self.corpus.shape[0]:
            self.index.add(self.corpus)

    def search(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(float32 scores [Q, m] descending, int64 rows [Q, m]; -1 / -inf where the corpus is smaller)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if m == 0 or q.shape[0] == 0:
            return np.zeros((q.shape[0], m), np.float32), np.zeros((q.shape[0], m), np.int64)
        d, i = self.index.search(q, m)
        return d, i.astype(np.int64)


ExcludeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``excluded(query_rows [B], cand_rows [B, m]) -> bool [B, m]``: pairs that are not candidates."""


def _rescore_sort(
    q: np.ndarray, corpus: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate rows ``cand`` of one query exactly, return the top k (rows, scores) in order."""
    s = pair_scores(np.broadcast_to(q, (cand.size, q.size)), corpus[cand])
    order = np.lexsort((cand, -s))[:k]
    return cand[order], s[order]


def full_row_scores(q: np.ndarray, corpus: np.ndarray, qrow: int, excluded: ExcludeFn | None) -> np.ndarray:
    """Float32 BLAS scores of one query against every row, excluded rows set to -inf."""
    s = corpus @ np.asarray(q, dtype=np.float32)
    if excluded is not None:
        n = corpus.shape[0]
        mask = excluded(np.array([qrow]), np.arange(n)[None, :])[0]
        s[mask] = -np.inf
    return s


def topk_from_shortlist(
    qb: np.ndarray,
    qrows: np.ndarray,
    corpus: np.ndarray,
    d32: np.ndarray,
    i32: np.ndarray,
    k: int,
    bounds: np.ndarray,
    excluded: ExcludeFn | None,
) -> tuple[TopK, np.ndarray]:
    """Exact top-k of a query batch from its float32 shortlist (see the module docstring for the proof).

    Args:
        qb: query vectors [B, D]; qrows: their corpus rows (-1 for outside queries), passed to ``excluded``.
        d32, i32: the shortlist (descending float32 scores and rows, [B, m]).
        k: neighbours; bounds: per-query error bound; excluded: pairs that are not candidates.

    Returns:
        (the top-k, bool [B] ``valid`` mask of the shortlist entries that are candidates).
    """
    b, m = i32.shape
    n = corpus.shape[0]
    valid = i32 >= 0
    if excluded is not None and m:
        valid &= ~excluded(qrows, np.maximum(i32, 0))
    vals = np.where(valid, d32.astype(np.float64), -np.inf)
    svals = -np.sort(-vals, axis=1)
    cnt = valid.sum(axis=1)
    kk = np.minimum(k, cnt)
    kth = np.where(kk > 0, svals[np.arange(b), np.maximum(kk - 1, 0)], -np.inf)
    last = d32[:, m - 1].astype(np.float64) if m else np.full(b, -np.inf)
    last = np.where(i32[:, m - 1] >= 0, last, -np.inf) if m else last
    tol = 2.0 * bounds
    complete = (m >= n) | ((cnt >= k) & (last < kth - tol))
    rows = np.full((b, k), -1, dtype=np.int64)
    scores = np.full((b, k), -np.inf, dtype=np.float64)
    # complete rows: re-score the band [kth - tol, inf) of the shortlist, all queries at once
    band = valid & complete[:, None] & (vals >= (kth - tol)[:, None])
    bq, bj = np.nonzero(band)
    br = i32[bq, bj]
    ex = pair_scores(qb[bq], corpus[br])
    o = np.lexsort((br, -ex, bq))
    bq, br, ex = bq[o], br[o], ex[o]
    if bq.size:
        starts = np.r_[0, np.nonzero(bq[1:] != bq[:-1])[0] + 1]
        pos = np.arange(bq.size) - np.repeat(starts, np.diff(np.r_[starts, bq.size]))
        take = pos < k
        rows[bq[take], pos[take]] = br[take]
        scores[bq[take], pos[take]] = ex[take]
    for i in np.nonzero(~complete)[0]:
        s = full_row_scores(qb[i], corpus, int(qrows[i]), excluded)
        fin = np.isfinite(s)
        nf = int(fin.sum())
        if nf == 0:
            continue
        kk_i = min(k, nf)
        kth_i = float(np.partition(s[fin], nf - kk_i)[nf - kk_i])
        lo = np.nextafter(np.float32(kth_i - tol[i]), np.float32(-np.inf))
        cand = np.nonzero(fin & (s >= lo))[0]
        r, sc = _rescore_sort(qb[i], corpus, cand, k)
        rows[i, : r.size] = r
        scores[i, : sc.size] = sc
    return TopK(rows, scores), valid


def search(
    corpus: np.ndarray,
    corpus_ids: Sequence[str],
    queries: np.ndarray,
    query_ids: Sequence[str] | None,
    k: int,
    *,
    batch_size: int = 4096,
    margin: int = DEFAULT_MARGIN,
    shortlister: Shortlister | None = None,
) -> TopK:
    """Exact top-k of each query over ``corpus`` (reference ranking, self excluded by track id).

    Args:
        corpus: float32 [N, D]; corpus_ids: N unique track ids (row i is corpus_ids[i]).
        queries: float32 [Q, D]; query_ids: Q track ids excluded from their own results (None: nothing excluded).
        k: neighbours per query.

    Returns:
        :class:`TopK` with corpus rows and float64 scores; rows are -1 where fewer than k candidates exist.

    Raises:
        ValueError: shapes disagree or corpus ids are not unique.
    """
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"shape mismatch: queries {queries.shape} vs corpus {corpus.shape}")
    where = {t: i for i, t in enumerate(corpus_ids)}
    if len(where) != len(corpus_ids):
        raise ValueError("corpus track ids are not unique")
    # ids are unique, so excluding the query's track id is excluding the one row that holds it (if any)
    qself = np.array([where.get(t, -1) for t in query_ids], dtype=np.int64) if query_ids is not None else None

    def excluded(qrows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return cand == qrows[:, None]

    sl = shortlister or Shortlister(corpus)
    n = corpus.shape[0]
    m = min(n, k + margin + 1)
    cnorm = float(np.linalg.norm(corpus, axis=1).max()) if n else 0.0
    qnorm = np.linalg.norm(queries.astype(np.float64), axis=1)
    out_rows, out_scores = [], []
    for start in range(0, queries.shape[0], batch_size):
        qb = queries[start : start + batch_size]
        qrows = qself[start : start + batch_size] if qself is not None else np.full(qb.shape[0], -1, np.int64)
        d32, i32 = sl.search(qb, m)
        bounds = error_bound(corpus.shape[1], qnorm[start : start + batch_size], cnorm)
        res, _ = topk_from_shortlist(
            qb, qrows, corpus, d32, i32, k, bounds, excluded if qself is not None else None
        )
        out_rows.append(res.rows)
        out_scores.append(res.scores)
    if not out_rows:
        return TopK(np.zeros((0, k), np.int64), np.zeros((0, k), np.float64))
    return TopK(np.concatenate(out_rows), np.concatenate(out_scores))


def brute_force(
    corpus: np.ndarray, corpus_ids: Sequence[str], queries: np.ndarray, query_ids: Sequence[str], k: int
) -> TopK:
    """Slow, obviously-correct reference: full float64 scores, sort every row (tests and tiny corpora)."""
    s = exact_scores(queries, corpus)
    n = corpus.shape[0]
    rows = np.full((len(query_ids), k), -1, dtype=np.int64)
    scores = np.full((len(query_ids), k), -np.inf)
    for i, qid in enumerate(query_ids):
        cand = [j for j in range(n) if corpus_ids[j] != qid]
        cand.sort(key=lambda j: (-s[i, j], j))
        top = cand[:k]
        rows[i, : len(top)] = top
        scores[i, : len(top)] = [s[i, j] for j in top]
    return TopK(rows, scores)
