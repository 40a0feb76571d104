"""THE scoring reference of the recommenders: what the evaluation ranks with and what Node must reproduce.

For a known listener u (a row of ``recs/user_ids.json``): H(u) = their CSR entries, pos(u) those with weight > 0,
n_u = |pos(u)|.

- cf(u, i) = dot(U[u], V[i]) (float32 factors, accumulated in float64);
- content(u, i) = dot(p_u, E[i]), p_u the profile of :mod:`research_job.recs.content`; undefined when pos(u) is
  empty (popularity is used instead, source "popularity");
- hybrid(u, i) = b_u * cf(u, i) / s_u + (1 - b_u) * content(u, i), s_u = max_i |cf(u, i)| over all tracks (1 if
  that is 0), b_u = cf_weight * n_u / (n_u + light_user_events); a cold item (zero factor row) has cf = 0;
- popularity(i) = the trending score of ``recs/popularity.json`` for a listed track, 0 for any other.

Candidates are every track except H(u) and the request's exclusions; ranking is score descending, then track row
ascending. An unknown listener gets popularity (source "popularity").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job.errors import unknown_choice
from research_job.recs.content import profiles

#: the models ``score`` / ``recommend`` take (each pick's ``source`` is one of them)
MODELS = ("hybrid", "cf", "content", "popularity")


@dataclass(frozen=True, eq=False)
class RecsArtifacts:
    """Everything scoring needs, in memory (from ``recs/`` + ``embeddings/``, or a fit in the evaluation)."""

    user_ids: list[str]
    track_ids: list[str]
    user_factors: np.ndarray  # float32 [n_users, F]
    item_factors: np.ndarray  # float32 [n_tracks, F]
    embeddings: np.ndarray  # float32 [n_tracks, D], L2-normalised rows
    indptr: np.ndarray  # int64 [n_users + 1]
    indices: np.ndarray  # int32 [nnz], track rows
    weights: np.ndarray  # float32 [nnz], confidences (> 0 positive, < 0 negative)
    trending: np.ndarray  # float64 [n_tracks], served trending scores (0 off the list)
    popular: np.ndarray  # float64 [n_tracks], served global counts (0 off the list)
    cf_weight: float
    light_user_events: float
    user_row: dict[str, int] = field(init=False)
    track_row: dict[str, int] = field(init=False)
    items64: np.ndarray = field(init=False)
    emb64: np.ndarray = field(init=False)
    n_pos: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_row", {u: i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "track_row", {t: i for i, t in enumerate(self.track_ids)})
        object.__setattr__(self, "items64", self.item_factors.astype(np.float64))
        object.__setattr__(self, "emb64", self.embeddings.astype(np.float64))
        pos = (self.weights > 0).astype(np.int64)
        csum = np.concatenate([[0], np.cumsum(pos)])
        object.__setattr__(self, "n_pos", csum[self.indptr[1:]] - csum[self.indptr[:-1]])

    @property
    def n_tracks(self) -> int:
        return len(self.track_ids)


def check_model(model: str) -> None:
    """Raises ValueError naming ``model`` and the known ones when it is not one of :data:`MODELS`."""
    if model not in MODELS:
        raise ValueError(unknown_choice("model", model, MODELS))


def history(arts: RecsArtifacts, u: int) -> tuple[np.ndarray, np.ndarray]:
    """(track rows, confidences) of listener row ``u``'s CSR entries H(u)."""
    lo, hi = int(arts.indptr[u]), int(arts.indptr[u + 1])
    return arts.indices[lo:hi], arts.weights[lo:hi]


def cf_block(arts: RecsArtifacts, users: np.ndarray) -> np.ndarray:
    """float64 [B, n_tracks]: cf(u, i) for the listener rows ``users``."""
    return arts.user_factors[users].astype(np.float64) @ arts.items64.T


def content_block(arts: RecsArtifacts, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [B, n_tracks] content(u, i), bool [B] whether u has a profile; rows without one are 0)."""
    p, has = profiles(arts.emb64, arts.indptr, arts.indices, arts.weights, users)
    return p @ arts.emb64.T, has


def hybrid_block(
    cf: np.ndarray,
    content: np.ndarray,
    n_pos: np.ndarray,
    cf_weight: float,
    light_user_events: float,
) -> np.ndarray:
    """float64 [B, n_tracks]: hybrid(u, i) from the listeners' cf and content rows and their n_u."""
    s = np.abs(cf).max(axis=1, initial=0.0)
    s[s == 0] = 1.0
    n = n_pos.astype(np.float64)
    denom = n + light_user_events
    b = np.divide(cf_weight * n, denom, out=np.zeros_like(n), where=denom > 0)
    out = content * (1.0 - b)[:, None]
    out += (b / s)[:, None] * cf
    return out


def model_block(
    arts: RecsArtifacts,
    users: np.ndarray,
    model: str,
    *,
    cf_weight: float | None = None,
    light_user_events: float | None = None,
) -> tuple[np.ndarray, list[str]]:
    """(float64 [B, n_tracks] scores of known listener rows ``users`` under ``model``, the source of each row).

    ``cf_weight`` / ``light_user_events`` override the artifacts' (the evaluation's grid search).
    """
    check_model(model)
    users = np.asarray(users, dtype=np.int64)
    b = users.size
    if model == "popularity":
        return np.broadcast_to(arts.trending, (b, arts.n_tracks)).copy(), ["popularity"] * b
    if model == "cf":
        return cf_block(arts, users), ["cf"] * b
    content, has = content_block(arts, users)
    if model == "hybrid":
        cw = arts.cf_weight if cf_weight is None else cf_weight
        light = arts.light_user_events if light_user_events is None else light_user_events
        scores = hybrid_block(cf_block(arts, users), content, arts.n_pos[users], cw, light)
    else:
        scores = content
    scores[~has] = arts.trending
    return scores, [model if h else "popularity" for h in has]


def _score(arts: RecsArtifacts, user_id: str, model: str) -> tuple[np.ndarray, str]:
    check_model(model)
    u = arts.user_row.get(user_id)
    if u is None:
        return arts.trending.copy(), "popularity"
    scores, sources = model_block(arts, np.array([u]), model)
    return scores[0], sources[0]


def score(arts: RecsArtifacts, user_id: str, model: str) -> np.ndarray:
    """float64 [n_tracks]: the score of every track row for ``user_id`` under ``model`` (before exclusions).

    Raises:
        ValueError: an unknown model.
    """
    return _score(arts, user_id, model)[0]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` best finite scores (-inf marks an excluded track): score descending, then row ascending."""
    finite = int(np.isfinite(scores).sum())
    k = min(int(k), finite)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    cand = np.flatnonzero(scores >= kth)
    order = np.lexsort((cand, -scores[cand]))
    return cand[order[:k]].astype(np.int64)


def recommend(
    arts: RecsArtifacts, user_id: str, k: int, model: str = "hybrid", exclude: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The top ``k`` picks ``[{track_id, score, source}]`` for ``user_id`` (see the module docstring).

    Raises:
        ValueError: an unknown model, a ``k`` below 1, or an excluded track id that is not in the catalogue.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    scores, source = _score(arts, user_id, model)
    scores = scores.copy()
    u = arts.user_row.get(user_id)
    if u is not None:
        scores[history(arts, u)[0]] = -np.inf
    for tid in exclude:
        row = arts.track_row.get(tid)
        if row is None:
            raise ValueError(f"Unknown track id {tid!r} in exclude")
        scores[row] = -np.inf
    return [
        {"track_id": arts.track_ids[int(i)], "score": float(scores[i]), "source": source}
        for i in top_k(scores, k)
    ]


def load_recs(version_dir: str | Path) -> RecsArtifacts:
    """Read ``recs/`` and ``embeddings/`` of a version folder (sizes and the track ids' checksum checked).

    Raises:
        ArtifactError: a file is missing, its size disagrees with recs_meta.json, or recs/ was trained on other
            track ids; SchemaValidationError: a JSON file does not match its schema.
    """
    from research_job.recs.artifacts import read_recs

    return read_recs(Path(version_dir))
