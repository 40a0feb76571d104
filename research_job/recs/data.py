"""Listening events -> arrays and confidence matrices (the reader of ``interactions/interactions.csv``).

Event weights (recorded in ``recs_meta.json``): play 1, like 4, skip -1, dislike -4. A (user, track) pair's
confidence is the sum of its events' weights; > 0 is a positive, < 0 a negative, 0 is left out. Rows whose track
has no embedding row are skipped and counted (every other bad row is an error: the file is export-interactions'
checked output).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from research_job.errors import ArtifactError, unknown_choice

#: the weight of each event kind in a pair's confidence
EVENT_WEIGHTS: dict[str, float] = {"play": 1.0, "like": 4.0, "skip": -1.0, "dislike": -4.0}
HEADER = ("user_id", "track_id", "event", "ts", "duration_sec", "origin")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


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
    """Read ``interactions.csv`` against the embeddings' track ids.

    Raises:
        ArtifactError: the file is missing, its header is not exactly :data:`HEADER`, a row has an unknown event or
            a timestamp not ``YYYY-MM-DDTHH:MM:SSZ``, or no row has an embedded track.
    """
    if not Path(path).is_file():
        raise ArtifactError(f"Missing {path} (run export-interactions first)")
    row_of = {t: i for i, t in enumerate(track_ids)}
    users: list[str] = []
    tracks: list[int] = []
    weights: list[float] = []
    stamps: list[str] = []
    origins: set[str] = set()
    read = unembedded = 0
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header != HEADER:
            raise ArtifactError(f"{path}: header {','.join(header)!r}, expected {','.join(HEADER)!r}")
        for n, rec in enumerate(reader, start=2):
            read += 1
            if len(rec) != len(HEADER):
                raise ArtifactError(f"{path}: line {n} has {len(rec)} fields, expected {len(HEADER)}")
            user, track, event, ts, _, origin = rec
            w = EVENT_WEIGHTS.get(event)
            if w is None:
                raise ArtifactError(f"{path}: line {n}: " + unknown_choice("event", event, EVENT_WEIGHTS))
            if not _TS.match(ts):
                raise ArtifactError(f"{path}: line {n}: timestamp {ts!r} is not YYYY-MM-DDTHH:MM:SSZ")
            row = row_of.get(track)
            if row is None:
                unembedded += 1
                continue
            users.append(user)
            tracks.append(row)
            weights.append(w)
            stamps.append(ts[:-1])
            origins.add(origin)
    if not users:
        raise ArtifactError(f"{path}: no event of {read} rows is on an embedded track")
    user_ids, inverse = np.unique(np.array(users, dtype=object), return_inverse=True)
    try:
        ts_arr = np.array(stamps, dtype="datetime64[s]").astype(np.int64)
    except ValueError as e:
        raise ArtifactError(f"{path}: a timestamp does not parse: {e}") from e
    return Events(
        user_ids=[str(u) for u in user_ids],
        users=inverse.astype(np.int32).reshape(-1),
        tracks=np.asarray(tracks, dtype=np.int32),
        weights=np.asarray(weights, dtype=np.float32),
        ts=ts_arr,
        n_tracks=len(track_ids),
        rows_read=read,
        rows_unembedded=unembedded,
        synthetic=all(o.startswith("synthetic") for o in origins),
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
