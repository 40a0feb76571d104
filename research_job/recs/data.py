"""Listening events -> arrays and confidence matrices (the reader of ``interactions/interactions.csv``).

Event weights (recorded in ``recs_meta.json``): play 1, like 4, skip -1, dislike -4. A (user, track) pair's
confidence is the sum of its events' weights; > 0 is a positive, < 0 a negative, 0 is left out. The file is read
by the interactions artifact's own reader (row schema, order, uniqueness: a bad line is an error, the file being
export-interactions' checked output); rows whose track has no embedding row are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from research_job import interactions as checked
from research_job.errors import ArtifactError

#: the weight of each event kind in a pair's confidence
EVENT_WEIGHTS: dict[str, float] = {"play": 1.0, "like": 4.0, "skip": -1.0, "dislike": -4.0}


@dataclass(frozen=True)
class Events:
    """The kept events as parallel arrays (one entry per CSV row kept)."""

    #: sorted unique user ids; ``users`` holds rows into it
    user_ids: list[str]
    users: np.ndarray  # int32 [n]
    #: rows into embeddings/track_ids.json
    tracks: np.ndarray  # int32 [n]
    weights: np.ndarray  # float32 [n]
    #: unix seconds, UTC
    ts: np.ndarray  # int64 [n]
    n_tracks: int
    rows_read: int
    #: rows skipped because their track has no embedding row
    rows_unembedded: int
    #: every kept row's origin starts with "synthetic"
    synthetic: bool

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def read_interactions(path: Path, track_ids: Sequence[str]) -> Events:
    """Read ``interactions.csv`` (through :func:`research_job.interactions.read_interactions`, which checks every
    row against the row schema, the sort order and uniqueness) against the embeddings' track ids.

    Raises:
        ArtifactError: the file is missing or breaks its schema (bad lines listed), or no row has an embedded track.
    """
    got = checked.read_interactions(path)
    read = len(got.track_id)
    row_of = {t: i for i, t in enumerate(track_ids)}
    rows = np.fromiter((row_of.get(str(t), -1) for t in got.track_id), dtype=np.int64, count=read)
    keep = rows >= 0
    if not keep.any():
        raise ArtifactError(f"{path}: no event of {read} rows is on an embedded track")
    kinds, kind_of = np.unique(
        got.event[keep], return_inverse=True
    )  # the row schema allows only EVENT_WEIGHTS' keys
    weight_of = np.array([EVENT_WEIGHTS[str(e)] for e in kinds], dtype=np.float32)
    user_ids, inverse = np.unique(got.user_id[keep], return_inverse=True)
    return Events(
        user_ids=[str(u) for u in user_ids],
        users=inverse.astype(np.int32).reshape(-1),
        tracks=rows[keep].astype(np.int32),
        weights=weight_of[kind_of.reshape(-1)],
        ts=got.ts[keep],
        n_tracks=len(track_ids),
        rows_read=read,
        rows_unembedded=int(read - keep.sum()),
        synthetic=all(str(o).startswith("synthetic") for o in np.unique(got.origin[keep])),
    )


def confidence_matrix(events: Events, mask: np.ndarray | None = None) -> sp.csr_matrix:
    """float32 CSR [n_users, n_tracks] of the summed event weights of the (masked) events; zero sums left out,
    column indices sorted within each row."""
    keep = slice(None) if mask is None else mask
    m = sp.coo_matrix(
        (events.weights[keep].astype(np.float64), (events.users[keep], events.tracks[keep])),
        shape=(events.n_users, events.n_tracks),
    ).tocsr()
    m.sum_duplicates()
    m.data[np.abs(m.data) < 1e-9] = 0.0
    m.eliminate_zeros()
    m.sort_indices()
    out = m.astype(np.float32)
    out.indptr = out.indptr.astype(np.int64)
    out.indices = out.indices.astype(np.int32)
    return out


def iso(ts: int | np.integer) -> str:
    """Unix seconds -> ``YYYY-MM-DDTHH:MM:SSZ``."""
    return str(np.datetime64(int(ts), "s")) + "Z"
