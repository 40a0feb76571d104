"""Unsupervised quality levers at index time: hubness reduction and query expansion over cosine similarity.

In high-dimensional embedding spaces a few tracks ("hubs") turn up in almost everybody's neighbours while others
never do (Radovanovic et al. 2010; for music similarity Schnitzer et al., JMLR 2012; Flexer et al.). The methods
here rescale each pair's cosine by the two tracks' neighbourhoods, or expand the query with its neighbours:

* ``csls`` (cross-domain similarity local scaling): ``2 cos(x, y) - r_x - r_y``, ``r`` the mean cosine of a track
  to its ``k`` nearest other tracks;
* ``mutual_proximity`` (Schnitzer et al. 2012, Gaussian variant): with distance ``d = 1 - cos`` and each track's
  mean ``mu`` and standard deviation ``sigma`` of its distances to all other tracks,
  ``MP(x, y) = (1 - Phi((d - mu_x) / sigma_x)) * (1 - Phi((d - mu_y) / sigma_y))``;
* ``local_scaling`` (Zelnik-Manor and Perona 2004, as Schnitzer uses it): ``exp(-d^2 / (s_x s_y))``, ``s`` the
  distance to the ``k``-th nearest other track;
* ``qe_avg`` (average query expansion, Chum et al. 2007): the query becomes the normalised sum of itself and its
  ``n`` nearest tracks; ``qe_alpha`` (alpha-QE, Radenovic et al., TPAMI 2018): that sum weighted by
  ``max(cos, 0) ** alpha``.

Every method is computed over batches of query rows against the whole corpus (memory O(batch x N), time
O(N^2 D) like the exact neighbour table), from per-track statistics gathered in one pass first
(:func:`track_stats`). The ranking of a query over the re-scored candidates follows the same rule as cosine:
score descending, ties by ascending row, the query itself excluded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from research_job.config import option
from research_job.errors import ConfigError, unknown_choice

METHODS = ("none", "csls", "mutual_proximity", "local_scaling", "qe_avg", "qe_alpha")


@dataclass(frozen=True)
class Rerank:
    """A re-ranking method and its parameters (``k``: neighbourhood size; ``n``, ``alpha``: query expansion)."""

    method: str = "none"
    k: int = 10
    n: int = 2
    alpha: float = 3.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(unknown_choice("re-ranking method", self.method, METHODS))
        if self.k < 1 or self.n < 1 or self.alpha < 0:
            raise ConfigError(
                f"re-ranking needs k >= 1, n >= 1, alpha >= 0; got {self.k}, {self.n}, {self.alpha}"
            )

    def to_json(self) -> dict[str, Any]:
        """What the artifacts record of it (only the parameters the method uses)."""
        params: dict[str, Any] = {}
        if self.method in ("csls", "local_scaling"):
            params["k"] = self.k
        if self.method in ("qe_avg", "qe_alpha"):
            params["n"] = self.n
        if self.method == "qe_alpha":
            params["alpha"] = self.alpha
        return {"method": self.method, "params": params}


@dataclass(frozen=True)
class RerankOptions:
    """The re-ranking fields a step config inherits (build-index, evaluate): one declaration, one help text."""

    rerank: str = option(
        "none",
        "re-rank the cosine neighbours: hubness reduction or query expansion (research_job.rerank)",
        choices=METHODS,
    )
    rerank_k: int = option(10, "re-ranking: neighbourhood size of csls and local_scaling")
    rerank_n: int = option(2, "re-ranking: neighbours added to the query by qe_avg and qe_alpha")
    rerank_alpha: float = option(3.0, "re-ranking: exponent of qe_alpha's weights")

    @property
    def rerank_spec(self) -> Rerank:
        """The :class:`Rerank` these fields describe (raises ConfigError on bad values)."""
        return Rerank(self.rerank, self.rerank_k, self.rerank_n, self.rerank_alpha)


@dataclass(frozen=True)
class TrackStats:
    """Per-track facts of the cosine neighbourhoods that the methods need (float64 [N] each)."""

    mean_knn: np.ndarray  # mean cosine to the k nearest other tracks (csls)
    kth_dist: np.ndarray  # distance 1 - cos to the k-th nearest other track (local scaling)
    mu: np.ndarray  # mean distance to all other tracks (mutual proximity)
    sigma: np.ndarray  # its standard deviation
    topn: np.ndarray  # int64 [N, n] the n nearest other rows (query expansion)


def _cos_batches(x: np.ndarray, batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float64 cosines [B, N] with the query's own column at -inf) over row batches."""
    n = x.shape[0]
    for s in range(0, n, batch):
        c = x[s : s + batch] @ x.T
        c[np.arange(c.shape[0]), np.arange(s, s + c.shape[0])] = -np.inf
        yield s, c


def track_stats(vectors: np.ndarray, spec: Rerank, batch: int = 1024) -> TrackStats:
    """One pass over all pairs: the statistics of :class:`TrackStats` for ``spec`` (k, n capped at N - 1).

    Raises:
        ConfigError: fewer than two tracks.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        raise ConfigError(f"re-ranking needs at least 2 tracks, got {n}")
    k, nq = min(spec.k, n - 1), min(spec.n, n - 1)
    mean_knn, kth, mu, sigma = (np.empty(n) for _ in range(4))
    topn = np.empty((n, nq), np.int64)
    for s, c in _cos_batches(x, batch):
        rows = slice(s, s + c.shape[0])
        part = -np.sort(-c, axis=1)[:, : max(k, nq)]
        mean_knn[rows] = part[:, :k].mean(axis=1)
        kth[rows] = 1.0 - part[:, k - 1]
        d = 1.0 - np.where(np.isfinite(c), c, np.nan)
        mu[rows] = np.nanmean(d, axis=1)
        sigma[rows] = np.maximum(np.nanstd(d, axis=1), 1e-12)
        order = np.lexsort((np.broadcast_to(np.arange(n), c.shape), -c), axis=1)
        topn[rows] = order[:, :nq]
    return TrackStats(mean_knn, np.maximum(kth, 1e-12), mu, sigma, topn)


def _phi_sf(z: np.ndarray) -> np.ndarray:
    """1 - Phi(z), the standard normal survival function."""
    from scipy.special import ndtr

    return ndtr(-z)


def scores(vectors: np.ndarray, rows: np.ndarray, spec: Rerank, stats: TrackStats | None) -> np.ndarray:
    """Re-scored similarities of the query ``rows`` to every track, float64 [len(rows), N]; the query's own column
    is -inf. ``none`` is the plain cosine.

    Raises:
        ConfigError: a method that needs statistics called without them.
    """
    x = np.asarray(vectors, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    if spec.method != "none" and stats is None:
        raise ConfigError(f"re-ranking {spec.method!r} needs track_stats()")
    if spec.method in ("qe_avg", "qe_alpha"):
        assert stats is not None
        nb = stats.topn[rows]
        members = np.concatenate([rows[:, None], nb], axis=1)
        w = np.ones(members.shape)
        if spec.method == "qe_alpha":
            w[:, 1:] = np.maximum(np.einsum("bd,bnd->bn", x[rows], x[nb]), 0.0) ** spec.alpha
        q = np.einsum("bn,bnd->bd", w, x[members])
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        c = q @ x.T
    else:
        c = x[rows] @ x.T
    if spec.method == "csls":
        assert stats is not None
        c = 2.0 * c - stats.mean_knn[rows][:, None] - stats.mean_knn[None, :]
    elif spec.method == "mutual_proximity":
        assert stats is not None
        d = 1.0 - c
        c = _phi_sf((d - stats.mu[rows][:, None]) / stats.sigma[rows][:, None]) * _phi_sf(
            (d - stats.mu[None, :]) / stats.sigma[None, :]
        )
    elif spec.method == "local_scaling":
        assert stats is not None
        d = 1.0 - c
        c = np.exp(-(d**2) / (stats.kth_dist[rows][:, None] * stats.kth_dist[None, :]))
    c[np.arange(rows.size), rows] = -np.inf
    return c


def topk(vectors: np.ndarray, k: int, spec: Rerank, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Every track's top-``k`` other tracks under ``spec``: (int32 rows [N, k], -1 pads; float64 scores [N, k]).
    Ties by ascending row, the track itself never listed."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    stats = track_stats(x, spec, batch) if spec.method != "none" else None
    kk = min(k, n - 1)
    out_rows = np.full((n, k), -1, np.int32)
    out_scores = np.full((n, k), -np.inf)
    for s in range(0, n, batch):
        rows = np.arange(s, min(n, s + batch))
        c = scores(x, rows, spec, stats)
        order = np.lexsort((np.broadcast_to(np.arange(n), c.shape), -c), axis=1)[:, :kk]
        out_rows[rows, :kk] = order
        out_scores[rows, :kk] = np.take_along_axis(c, order, axis=1)
    return out_rows, out_scores
