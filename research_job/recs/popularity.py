"""Popularity recommenders: global (positive-event count) and trending (time-decayed positive weight).

Trending score of a track = sum over its positive events of weight * 0.5 ** (age_days / half_life_days), the age
measured from ``as_of`` (the last event). Each list keeps the top :data:`TOP_N` tracks with a score > 0, ordered
by score descending, then track row ascending; a track off the list scores 0 when served.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from research_job.recs.data import Events

TOP_N = 500


def global_scores(events: Events, mask: np.ndarray | None = None) -> np.ndarray:
    """float64 [n_tracks]: number of positive events (play, like) of each track."""
    keep = np.ones(events.weights.size, dtype=bool) if mask is None else mask
    pos = keep & (events.weights > 0)
    return np.bincount(events.tracks[pos], minlength=events.n_tracks).astype(np.float64)


def trending_scores(
    events: Events, as_of: int, half_life_days: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """float64 [n_tracks]: decayed sum of positive event weights (see the module docstring)."""
    keep = np.ones(events.weights.size, dtype=bool) if mask is None else mask
    pos = keep & (events.weights > 0)
    age_days = (as_of - events.ts[pos]).astype(np.float64) / 86400.0
    w = events.weights[pos].astype(np.float64) * np.power(0.5, age_days / half_life_days)
    return np.bincount(events.tracks[pos], weights=w, minlength=events.n_tracks)


def top_rows(scores: np.ndarray, n: int = TOP_N) -> np.ndarray:
    """Rows of the ``n`` best tracks with a score > 0: score descending, then row ascending."""
    cand = np.flatnonzero(scores > 0)
    order = np.lexsort((cand, -scores[cand]))
    return cand[order[:n]]


def entries(scores: np.ndarray, track_ids: list[str], n: int = TOP_N) -> list[dict[str, Any]]:
    """The ``[{track_id, score}]`` list of popularity.json for ``scores``."""
    return [{"track_id": track_ids[int(r)], "score": float(scores[r])} for r in top_rows(scores, n)]


def served_vector(scores: np.ndarray, n: int = TOP_N) -> np.ndarray:
    """float64 [n_tracks]: the served scores, the top-``n`` list's and 0 for every other track."""
    out = np.zeros(scores.size, dtype=np.float64)
    rows = top_rows(scores, n)
    out[rows] = scores[rows]
    return out
