"""Seeded synthetic embeddings: a Gaussian mixture on the unit sphere, and exact top-k ground truth.

Real audio embeddings are clustered (by composer, genre, instrumentation), so uniform noise on the sphere is an
unrealistically hard and unrealistically uniform case for ANN indexes. Here each vector is a random unit
centre plus isotropic Gaussian noise of norm about ``spread``, re-normalised: with ``spread=1`` a point's cosine
to its centre is about 0.7 and two points of one cluster have cosine about 0.5, while points of different
clusters are near-orthogonal. Cluster sizes vary (Dirichlet weights), like real catalogues.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def mixture_centres(n_clusters: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit centres ``[n_clusters, dim]`` and cluster weights (Dirichlet(2), so sizes vary) for a seed."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    w = rng.dirichlet(np.full(n_clusters, 2.0))
    return c, w


def sample_mixture(
    n: int, centres: np.ndarray, weights: np.ndarray, spread: float, seed: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` L2-normalised float32 points of the mixture, and their cluster labels; chunked to bound memory."""
    dim = centres.shape[1]
    rng = np.random.default_rng(seed)
    x = out if out is not None else np.empty((n, dim), dtype=np.float32)
    labels = rng.choice(len(weights), size=n, p=weights).astype(np.int32)
    chunk = 65536
    for i in range(0, n, chunk):
        lab = labels[i : i + chunk]
        block = rng.standard_normal((len(lab), dim), dtype=np.float32)
        block *= np.float32(spread / np.sqrt(dim))
        block += centres[lab]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[i : i + len(lab)] = block
    return x, labels


def dataset(
    n: int, dim: int, n_queries: int, *, seed: int = 0, spread: float = 1.0, cache_dir: Path | None = None
) -> dict[str, Path | np.ndarray]:
    """Base vectors, held-out queries and labels of one synthetic dataset, cached as ``.npy`` under ``cache_dir``.

    Returns paths (``base``, ``queries``, ``labels``) when ``cache_dir`` is given, else arrays.
    Cluster count is ``max(16, n // 100)`` (about 100 points per cluster on average).
    """
    n_clusters = max(16, n // 100)
    centres, weights = mixture_centres(n_clusters, dim, seed)
    if cache_dir is None:
        base, labels = sample_mixture(n, centres, weights, spread, seed + 1)
        queries, _ = sample_mixture(n_queries, centres, weights, spread, seed + 2)
        return {"base": base, "queries": queries, "labels": labels}
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"gmm_n{n}_d{dim}_c{n_clusters}_s{seed}_sp{spread:g}"
    paths = {
        "base": cache_dir / f"{stem}_base.npy",
        "labels": cache_dir / f"{stem}_labels.npy",
        "queries": cache_dir / f"{stem}_q{n_queries}.npy",
    }
    if not (paths["base"].is_file() and paths["labels"].is_file()):
        tmp = cache_dir / f"{stem}_base.npy.tmp"
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        _, labels = sample_mixture(n, centres, weights, spread, seed + 1, out=mm)
        mm.flush()
        del mm
        np.save(paths["labels"], labels)
        tmp.replace(paths["base"])
    if not paths["queries"].is_file():
        queries, _ = sample_mixture(n_queries, centres, weights, spread, seed + 2)
        np.save(paths["queries"], queries)
    return dict(paths)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, block: int = 65536) -> np.ndarray:
    """Exact inner-product top-``k`` row ids of ``base`` for each query, best first (float32 BLAS, blocked).

    Ties are broken by the lower row id (stable sort of the candidates), like the project's exact search.
    """
    nq = len(queries)
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, k), dtype=np.int64)
    for start in range(0, len(base), block):
        s = queries @ base[start : start + block].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_i


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:, :k] ∩ truth[:, :k]| / k (ids < 0, i.e. not found, never match)."""
    hits = 0
    for f, t in zip(found[:, :k], truth[:, :k], strict=True):
        hits += len(set(f[f >= 0].tolist()) & set(t.tolist()))
    return hits / (k * len(truth))
