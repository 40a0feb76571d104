"""Retrieval metrics with binary relevance, their exact expectation under a random ranking, bootstrap CIs.

Conventions (per query, self excluded; ``R`` = number of *other* relevant candidates, ``n`` = number of
candidates, ranks are 1-based):

* Precision@k = (relevant among the top k) / k.
* HitRate@k = 1 if any of the top k is relevant.
* NDCG@k = DCG / IDCG with DCG = sum_{i<=k} rel_i / log2(i + 1) and IDCG = sum_{i<=min(R, k)} 1 / log2(i + 1).
* MRR = 1 / rank of the first relevant candidate in the full ranking (0 when R = 0).

Queries with R = 0 are not scored (the caller excludes them from the means and counts them).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

METRICS = ("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr")


def discounts(k: int) -> np.ndarray:
    """1 / log2(i + 1) for ranks i = 1 .. k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def idcg(n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Ideal DCG@k for ``n_relevant`` other relevant candidates (capped at k)."""
    cum = np.concatenate([[0.0], np.cumsum(discounts(k))])
    return cum[np.minimum(np.asarray(n_relevant, dtype=np.int64), k)]


def per_query(rel_topk: np.ndarray, n_relevant: np.ndarray, first_rank: np.ndarray, k: int) -> np.ndarray:
    """Per-query metrics.

    Args:
        rel_topk: bool [Q, k], relevance of the ranked top k (False where fewer than k candidates).
        n_relevant: int [Q], other relevant candidates per query (must be >= 1).
        first_rank: [Q], 1-based rank of the first relevant candidate in the full ranking (inf if none).
        k: cutoff.

    Returns:
        float64 [Q, 4] in the order of :data:`METRICS`.
    """
    rel = np.asarray(rel_topk, dtype=np.float64).reshape(-1, k)
    r = np.asarray(n_relevant, dtype=np.int64)
    if np.any(r < 1):
        raise ValueError("every scored query needs at least one other relevant candidate")
    p = rel.sum(axis=1) / k
    hit = (rel.sum(axis=1) > 0).astype(np.float64)
    ndcg = (rel @ discounts(k)) / idcg(r, k)
    fr = np.asarray(first_rank, dtype=np.float64)
    mrr = np.where(np.isfinite(fr), 1.0 / fr, 0.0)
    return np.stack([p, hit, ndcg, mrr], axis=1)


@functools.lru_cache(maxsize=1 << 16)
def _expected_rr(n: int, r: int) -> float:
    """E[1 / rank of first relevant] when r of n candidates are relevant and the order is uniform.

    P(first relevant at rank i) = C(n - i, r - 1) / C(n, r); P(1) = r / n and P(i+1) / P(i) = (n - i - r + 1) / (n - i).
    Summed exactly in chunks, stopping when the remaining probability mass times 1/i is below 1e-15.
    """
    if r <= 0 or n <= 0:
        return 0.0
    if r >= n:
        return 1.0
    total, p_prev, i0, mass = 0.0, r / n, 1, 0.0
    last = n - r + 1
    chunk = 4096
    while i0 <= last:
        i = np.arange(i0, min(last, i0 + chunk - 1) + 1, dtype=np.float64)
        ratios = (n - i[:-1] - r + 1) / (n - i[:-1])
        p = p_prev * np.concatenate([[1.0], np.cumprod(ratios)])
        total += float(np.sum(p / i))
        mass += float(np.sum(p))
        nxt = i[-1] + 1
        if nxt > last:
            break
        p_prev = float(p[-1] * (n - i[-1] - r + 1) / (n - i[-1]))
        i0 = int(nxt)
        if (1.0 - mass) / nxt < 1e-15:
            break
    return total


def _log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


def random_expectation(n_candidates: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Exact expected per-query metrics under a uniformly random ranking of the candidates.

    Precision@k = min(k, n) * R / (n * k); HitRate@k = 1 - C(n - R, k') / C(n, k') with k' = min(k, n)
    (hypergeometric); NDCG@k = (R / n) * sum_{i<=k'} 1/log2(i+1) / IDCG; MRR = sum_i P(first at i) / i.

    Returns:
        float64 [Q, 4] in the order of :data:`METRICS`.
    """
    n = np.asarray(n_candidates, dtype=np.int64)
    r = np.asarray(n_relevant, dtype=np.int64)
    kp = np.minimum(k, n)
    frac = np.where(n > 0, r / np.maximum(n, 1), 0.0)
    p = kp * frac / k
    miss = np.where(
        n - r >= kp,
        np.exp(
            _log_comb((n - r).astype(float), kp.astype(float)) - _log_comb(n.astype(float), kp.astype(float))
        ),
        0.0,
    )
    hit = np.where(r > 0, 1.0 - miss, 0.0)
    cum = np.concatenate([[0.0], np.cumsum(discounts(k))])
    ndcg = np.where(r > 0, frac * cum[kp] / np.maximum(idcg(r, k), 1e-300), 0.0)
    pairs, inverse = np.unique(np.stack([n, r], axis=1), axis=0, return_inverse=True)
    mrr_u = np.array([_expected_rr(int(a), int(b)) for a, b in pairs], dtype=np.float64)
    mrr = mrr_u[np.asarray(inverse).reshape(-1)] if n.size else np.zeros(0)
    return np.stack([p, hit, ndcg, mrr], axis=1)


def means(values: np.ndarray) -> dict[str, float] | None:
    """Mean of each metric column as a dict keyed by :data:`METRICS`; None when there are no rows."""
    if values.shape[0] == 0:
        return None
    m = values.mean(axis=0)
    return {name: float(min(1.0, max(0.0, m[i]))) for i, name in enumerate(METRICS)}


def bootstrap_ci(
    values: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 50,
    names: tuple[str, ...] = METRICS,
) -> dict[str, object] | None:
    """Percentile bootstrap CI of each metric mean, resampling queries with replacement (seeded).

    ``values`` has one column per name of ``names`` (default :data:`METRICS`); every metric lies in [0, 1].

    Returns:
        ``{"level", "n_resamples", "seed", <metric>: {"low", "high"}}`` or None when there are no rows.
    """
    q = values.shape[0]
    if q == 0:
        return None
    rng = np.random.default_rng(seed)
    boot = np.empty((n_resamples, values.shape[1]))
    # one index matrix per chunk, shared by all metrics; chunked to bound memory at large Q
    step = max(1, min(chunk, (2_000_000 // max(q, 1)) or 1))
    cols = np.ascontiguousarray(values.T)  # 1-D gathers per metric are much faster than row gathers
    for s in range(0, n_resamples, step):
        e = min(n_resamples, s + step)
        idx = rng.integers(0, q, size=(e - s, q), dtype=np.int32 if q < 2**31 else np.int64)
        for j in range(cols.shape[0]):
            boot[s:e, j] = cols[j][idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo = np.quantile(boot, alpha, axis=0)
    hi = np.quantile(boot, 1.0 - alpha, axis=0)
    out: dict[str, object] = {"level": level, "n_resamples": n_resamples, "seed": seed}
    for i, name in enumerate(names):
        out[name] = {"low": float(min(1.0, max(0.0, lo[i]))), "high": float(min(1.0, max(0.0, hi[i])))}
    return out


def hypergeom_hit(n: int, r: int, k: int) -> float:
    """Scalar HitRate@k under a random ranking (used by tests as a cross-check)."""
    kp = min(k, n)
    if n - r < kp:
        return 1.0
    return 1.0 - math.comb(n - r, kp) / math.comb(n, kp)


def summarize(
    rel_topk: np.ndarray,
    n_relevant: np.ndarray,
    n_candidates: np.ndarray,
    first_rank: np.ndarray,
    k: int,
    *,
    n_resamples: int,
    seed: int,
) -> tuple[dict[str, object], np.ndarray]:
    """One block of an evaluation: the scored queries' metric means, random expectation and bootstrap CI.

    Args:
        rel_topk, n_relevant, first_rank: of the scored queries only, as for :func:`per_query`;
        n_candidates: their candidate counts (for :func:`random_expectation`); k: cutoff.

    Returns:
        (``{"n_queries", "metrics", "random_baseline", "confidence_intervals"}``, per-query values [Q, 4]).
    """
    q = int(np.asarray(n_relevant).shape[0])
    values = per_query(rel_topk, n_relevant, first_rank, k) if q else np.zeros((0, len(METRICS)))
    base = random_expectation(n_candidates, n_relevant, k) if q else np.zeros((0, len(METRICS)))
    block: dict[str, object] = {
        "n_queries": q,
        "metrics": means(values),
        "random_baseline": means(base),
        "confidence_intervals": bootstrap_ci(values, n_resamples=n_resamples, seed=seed),
    }
    return block, values


def breakdown(
    values: np.ndarray, query_labels: np.ndarray, names: list[str], n_tracks: np.ndarray
) -> list[dict[str, Any]]:
    """Per-label means of per-query values (labels 0 .. len(names) - 1), labels without a scored query left out.

    Args:
        values: [Q, 4] per-query metrics; query_labels: int [Q] label of each scored query; names: label names;
        n_tracks: int [len(names)] tracks holding each label (scored or not).

    Returns:
        ``{"composer", "n_tracks", "n_queries", <metric>...}`` rows, most tracks first, then by name.
    """
    out: list[dict[str, Any]] = []
    for c, name in enumerate(names):
        sel = query_labels == c
        if not sel.any():
            continue
        m = values[sel].mean(axis=0)
        out.append(
            {
                "composer": name,
                "n_tracks": int(n_tracks[c]),
                "n_queries": int(sel.sum()),
                **{key: float(min(1.0, max(0.0, m[i]))) for i, key in enumerate(METRICS)},
            }
        )
    out.sort(key=lambda p: (-p["n_tracks"], p["composer"]))
    return out
