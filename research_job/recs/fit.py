"""One fit of every recommender on a subset of the events -> :class:`~research_job.recs.scoring.RecsArtifacts`.

The served artifacts are a fit on all events; the evaluation fits on the training part of its split, and the
hybrid's grid search on the training part of that. Popularity is truncated to its served top list in every fit,
so what is evaluated is what is served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research_job.recs import als, popularity
from research_job.recs.data import Events, confidence_matrix
from research_job.recs.scoring import RecsArtifacts


@dataclass(frozen=True)
class Fitted:
    """A fit's artifacts and the unserved facts about it."""

    arts: RecsArtifacts
    as_of: int
    #: full (untruncated) popularity scores, for the popularity.json lists
    global_scores: np.ndarray
    trending_scores: np.ndarray


def fit_all(
    events: Events,
    track_ids: list[str],
    embeddings: np.ndarray,
    params: als.AlsParams,
    half_life_days: float,
    cf_weight: float,
    light_user_events: float,
    mask: np.ndarray | None = None,
) -> Fitted:
    """Fit popularity, trending and ALS on the (masked) events; content needs no fit."""
    keep = np.ones(events.ts.size, dtype=bool) if mask is None else mask
    as_of = int(events.ts[keep].max())
    conf = confidence_matrix(events, keep)
    users, items = als.fit(conf, params)
    glob = popularity.global_scores(events, keep)
    trend = popularity.trending_scores(events, as_of, half_life_days, keep)
    arts = RecsArtifacts(
        user_ids=events.user_ids,
        track_ids=list(track_ids),
        user_factors=users,
        item_factors=items,
        embeddings=embeddings,
        indptr=conf.indptr.astype(np.int64),
        indices=conf.indices.astype(np.int32),
        weights=conf.data.astype(np.float32),
        trending=popularity.served_vector(trend),
        popular=popularity.served_vector(glob),
        cf_weight=cf_weight,
        light_user_events=light_user_events,
    )
    return Fitted(arts, as_of, glob, trend)
