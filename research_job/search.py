"""Exact cosine search: THE reference ranking used by evaluate, build-index recall and the Node parity test.

Definition (the Node API implements the same):

* score(a, b) = sum over d = 0 .. D-1, in that order, of float64(a[d]) * float64(b[d]), accumulated in float64
  (a plain sequential loop; no FMA, no pairwise summation). On L2-normalised rows this is the cosine.
* ranking: score descending, ties broken by ascending row index.
* self-exclusion: a query never retrieves its own track, matched by ``track_id`` (not by row position), so two
  identical vectors of two different tracks still retrieve each other.

For large N a float32 BLAS product shortlists candidates and only the shortlist is re-scored in float64. The
shortlist is provably complete: the float32 dot product of length D differs from the exact one by at most
``bound = D * 2**-23 * |q| * max_j |c_j|`` (twice the textbook ``D * u`` bound, u = 2**-24), so any candidate
whose float32 score is below ``kth_float32 - 2 * bound`` cannot be in the exact top-k. We take the top
``k + margin`` (``margin`` = 16 by default) by float32 score; when the ``(k + margin)``-th float32 score is still
within ``2 * bound`` of the k-th (many near-ties, e.g. duplicate vectors) that query falls back to re-scoring
every candidate inside the band, so the result always equals brute force.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def self_rows(corpus_ids: Sequence[str], query_ids: Sequence[str]) -> list[np.ndarray]:
    """For each query id, the corpus rows holding that track id (usually one; none for an outside query)."""
    where: dict[str, list[int]] = {}
    for i, t in enumerate(corpus_ids):
        where.setdefault(t, []).append(i)
    return [np.asarray(where.get(t, []), dtype=np.int64) for t in query_ids]


@dataclass
class TopK:
    """Top-k result: ``rows`` int64 [Q, k] (-1 where fewer than k candidates), ``scores`` float64 [Q, k]."""

    rows: np.ndarray
    scores: np.ndarray


def _rescore_sort(
    q: np.ndarray, corpus: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate rows ``cand`` of one query exactly, return the top k (rows, scores) in order."""
    s = pair_scores(np.broadcast_to(q, (cand.size, q.size)), corpus[cand])
    order = np.lexsort((cand, -s))[:k]
    return cand[order], s[order]


def topk_from_scores32(
    s32: np.ndarray,
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    bounds: np.ndarray,
    margin: int = DEFAULT_MARGIN,
) -> TopK:
    """Exact top-k from a float32 score block whose excluded entries are already ``-inf``.

    Args:
        s32: float32 [B, N] BLAS scores of ``queries`` against ``corpus`` (excluded pairs set to -inf).
        queries: the B query vectors; corpus: the N corpus vectors.
        k: neighbours wanted; bounds: per-query error bound (:func:`error_bound`).
    """
    b, n = s32.shape
    rows = np.full((b, k), -1, dtype=np.int64)
    scores = np.full((b, k), -np.inf, dtype=np.float64)
    if n == 0 or b == 0:
        return TopK(rows, scores)
    m = min(n, k + margin)
    part = np.argpartition(-s32, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (b, 1))
    vals = np.take_along_axis(s32, part, axis=1).astype(np.float64)
    order = np.argsort(-vals, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    kk = min(k, m)
    kth = vals[:, kk - 1]
    tol = 2.0 * bounds
    # complete when the shortlist reaches below the band, or holds every candidate
    complete = (m == n) | (vals[:, m - 1] < kth - tol) | ~np.isfinite(kth)
    flat_q = np.repeat(np.arange(b), m)
    valid = np.isfinite(vals).ravel()
    s_ex = np.full(b * m, -np.inf)
    qi, ci = flat_q[valid], part.ravel()[valid]
    s_ex[valid] = pair_scores(queries[qi], corpus[ci])
    s_ex = s_ex.reshape(b, m)
    cand = part
    for i in range(b):
        if not complete[i]:
            band = np.nonzero(s32[i] >= kth[i] - tol[i])[0]
            band = band[np.isfinite(s32[i, band])]
            r, s = _rescore_sort(queries[i], corpus, band, k)
        else:
            fin = np.isfinite(s_ex[i])
            c_i, s_i = cand[i][fin], s_ex[i][fin]
            oo = np.lexsort((c_i, -s_i))[:k]
            r, s = c_i[oo], s_i[oo]
        rows[i, : r.size] = r
        scores[i, : s.size] = s
    return TopK(rows, scores)


def search(
    corpus: np.ndarray,
    corpus_ids: Sequence[str],
    queries: np.ndarray,
    query_ids: Sequence[str] | None,
    k: int,
    *,
    batch_size: int = 256,
    margin: int = DEFAULT_MARGIN,
) -> TopK:
    """Exact top-k of each query over ``corpus`` (reference ranking, self excluded by track id).

    Args:
        corpus: float32 [N, D]; corpus_ids: N track ids (row i is corpus_ids[i]).
        queries: float32 [Q, D]; query_ids: Q track ids whose corpus rows are excluded (None: nothing excluded).
        k: neighbours per query.

    Returns:
        :class:`TopK` with corpus rows and float64 scores; rows are -1 where fewer than k candidates exist.
    """
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"shape mismatch: queries {queries.shape} vs corpus {corpus.shape}")
    excl = self_rows(corpus_ids, query_ids) if query_ids is not None else None
    cnorm = float(np.linalg.norm(corpus, axis=1).max()) if corpus.shape[0] else 0.0
    qnorm = np.linalg.norm(queries.astype(np.float64), axis=1)
    out_rows, out_scores = [], []
    for start in range(0, queries.shape[0], batch_size):
        qb = queries[start : start + batch_size]
        s32 = qb @ corpus.T
        if excl is not None:
            for i in range(qb.shape[0]):
                s32[i, excl[start + i]] = -np.inf
        res = topk_from_scores32(
            s32, qb, corpus, k, error_bound(corpus.shape[1], qnorm[start : start + batch_size], cnorm), margin
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
