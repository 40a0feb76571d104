"""Hubness reduction and query expansion: the batched implementation equals each method's textbook definition
computed on the full N x N matrix, rankings follow score desc / row asc, and a planted hub loses its hub status."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from research_job.errors import ConfigError
from research_job.rerank import METHODS, Rerank, scores, topk, track_stats
from research_job.retrieval import rank_all, rank_by_scores, summary


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(x: np.ndarray, method: str, k: int = 10, n: int = 2, alpha: float = 3.0) -> np.ndarray:
    """Each method straight from its definition on the full matrix (diagonal excluded)."""
    c = x @ x.T
    off = ~np.eye(len(x), dtype=bool)
    masked = np.where(off, c, -np.inf)
    srt = -np.sort(-masked, axis=1)
    d = 1.0 - c
    if method == "none":
        s = c
    elif method == "csls":
        r = srt[:, :k].mean(axis=1)
        s = 2 * c - r[:, None] - r[None, :]
    elif method == "mutual_proximity":
        dm = np.where(off, d, np.nan)
        mu, sd = np.nanmean(dm, axis=1), np.nanstd(dm, axis=1)
        s = norm.sf((d - mu[:, None]) / sd[:, None]) * norm.sf((d - mu[None, :]) / sd[None, :])
    elif method == "local_scaling":
        kth = 1.0 - srt[:, k - 1]
        s = np.exp(-(d**2) / (kth[:, None] * kth[None, :]))
    else:
        nb = np.argsort(-masked, axis=1, kind="stable")[:, :n]
        q = x.copy()
        for i in range(len(x)):
            w = np.ones(n) if method == "qe_avg" else np.maximum(c[i, nb[i]], 0) ** alpha
            q[i] = x[i] + (w[:, None] * x[nb[i]]).sum(axis=0)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        s = q @ x.T
    return np.where(off, s, -np.inf)


@pytest.mark.parametrize("method", METHODS)
def test_batched_scores_equal_the_definition(method: str) -> None:
    x = _unit(np.random.default_rng(0), 80, 12)
    spec = Rerank(method, k=7, n=3, alpha=2.0)
    stats = track_stats(x, spec, batch=13) if method != "none" else None
    got = np.concatenate([scores(x, np.arange(s, min(80, s + 13)), spec, stats) for s in range(0, 80, 13)])
    np.testing.assert_allclose(got, _reference(x, method, 7, 3, 2.0), rtol=1e-10, atol=1e-12)
    rows, sc = topk(x, 5, spec, batch=13)
    ref = _reference(x, method, 7, 3, 2.0)
    for i in range(80):
        order = sorted(range(80), key=lambda j: (-ref[i, j], j))[:5]
        assert rows[i].tolist() == order and i not in rows[i]
        assert np.all(np.diff(sc[i]) <= 1e-12)


def test_a_planted_hub_is_demoted() -> None:
    rng = np.random.default_rng(1)
    u = np.eye(32)[0]
    x = _unit(rng, 200, 32) + 0.5 * u  # every track leans one way ...
    x[0] = u  # ... and this one sits where they lean: near everybody, a hub
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    occ = {m: int((topk(x, 10, Rerank(m))[0] == 0).sum()) for m in ("none", "csls", "mutual_proximity")}
    assert (
        occ["none"] > 100 and occ["csls"] < occ["none"] / 2 and occ["mutual_proximity"] < occ["none"] / 2
    ), occ


def test_rank_by_scores_equals_the_exact_cosine_path() -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng, 70, 8).astype(np.float32)
    labels, albums = rng.integers(-1, 6, 70), np.arange(70) // 5
    ids = [f"t{i}" for i in range(70)]
    x64 = x.astype(np.float64)
    for ref, got in zip(
        rank_all(x, ids, labels, albums, 5),
        rank_by_scores(lambda r: x64[r] @ x64.T, 70, labels, albums, 5, batch_size=9),
        strict=True,
    ):
        assert np.array_equal(ref.rows, got.rows) and np.array_equal(ref.first_rank, got.first_rank)
        assert summary(ref, labels, 5, 50, 0)[0] == summary(got, labels, 5, 50, 0)[0]


def test_bad_parameters_name_the_value() -> None:
    with pytest.raises(ConfigError, match="Unknown re-ranking method 'hub'"):
        Rerank("hub")
    with pytest.raises(ConfigError, match="k >= 1"):
        Rerank("csls", k=0)
