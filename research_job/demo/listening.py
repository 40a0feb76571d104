"""A seeded synthetic listening log for the demo catalogue (table ``listening_events``, origin ``synthetic-demo``).

Each listener has a taste: one to three favourite composers and an era (:data:`COMPOSER_ERA`; usually the era
of the first favourite). A track's affinity for a listener is 2 (a favourite composer), 1 (the listener's era)
or 0 (neither). Listening happens in sessions, days apart over :data:`DEFAULT_DAYS` days ending at the fixed
:data:`END` (so reruns give the same log whatever the clock says): within a session the plays follow each other
within minutes. Which track is played mixes a catalogue-wide popularity skew (Zipf over a seeded ranking of the
tracks) with the listener's affinity. A play may be skipped (likelier off-taste), liked (likelier on-taste) or,
rarely, disliked. Listeners differ in how much they listen (a heavy-tailed number of sessions), so some are
light users with only a few events.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same tracks and seed give the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from research_job.errors import ConfigError

ORIGIN = "synthetic-demo"
DEFAULT_USERS = 300
DEFAULT_DAYS = 90
#: the log ends here (a fixed date in the past, so that no event is ever "in the future")
END = datetime(2025, 6, 1, tzinfo=UTC)
LISTENING_COLUMNS: tuple[str, ...] = ("user_id", "track_id", "event", "ts", "duration_sec", "origin")
#: the era of each demo composer (:data:`research_job.demo.corpus.COMPOSER_KEYS`)
COMPOSER_ERA: dict[str, str] = {
    "ciconia": "medieval",
    "anonymous": "medieval",  # the trecento mass movements
    "josquin": "renaissance",
    "palestrina": "renaissance",
    "monteverdi": "renaissance",  # the madrigal books
    "bach": "baroque",
    "haydn": "classical",
    "mozart": "classical",
    "beethoven": "classical",
    "schumann-robert": "romantic",
    "schumann-clara": "romantic",
}
#: one row of the log: user_id, track_id, event, ts, duration_sec (None for a like or dislike), origin
Row = tuple[str, str, str, str, float | None, str]
#: Zipf exponent of the popularity skew
ZIPF_S = 1.0
#: how much likelier a track of affinity 0, 1, 2 is to be chosen (times its popularity)
AFFINITY_WEIGHT = (1.0, 4.0, 20.0)
#: P(skip), P(like | played through), P(dislike | skipped) by affinity 0, 1, 2
P_SKIP = (0.45, 0.2, 0.05)
P_LIKE = (0.02, 0.1, 0.3)
P_DISLIKE = (0.08, 0.02, 0.005)


@dataclass(frozen=True)
class Taste:
    """One synthetic listener's taste."""

    user_id: str
    favourites: tuple[str, ...]
    era: str


def _era(composer_key: str) -> str:
    return COMPOSER_ERA.get(composer_key, "other")


def make_tastes(composer_keys: Sequence[str], n_users: int, rng: np.random.Generator) -> list[Taste]:
    """Draw each listener's favourite composers (1-3 of ``composer_keys``) and era."""
    keys = sorted(set(composer_keys))
    eras = sorted({_era(k) for k in keys})
    out = []
    for u in range(n_users):
        n_fav = int(rng.integers(1, min(3, len(keys)) + 1))
        favs = tuple(str(k) for k in rng.choice(keys, size=n_fav, replace=False))
        era = _era(favs[0]) if rng.random() < 0.8 else str(rng.choice(eras))
        out.append(Taste(f"listener-{u + 1:04d}", favs, era))
    return out


def affinity(taste: Taste, composer_keys: Sequence[str]) -> np.ndarray:
    """int8 affinity of ``taste`` for each track (by its composer key): 2 favourite, 1 same era, 0 neither."""
    fav = np.array([k in taste.favourites for k in composer_keys])
    era = np.array([_era(k) == taste.era for k in composer_keys])
    return np.where(fav, 2, np.where(era, 1, 0)).astype(np.int8)


@dataclass(frozen=True)
class ListeningLog:
    """A generated log: its rows, and the hidden truth behind them (for tests and for reading the demo)."""

    #: ``(user_id, track_id, event, ts, duration_sec, origin)`` in time order (:data:`LISTENING_COLUMNS`)
    rows: list[Row]
    tastes: list[Taste]
    #: popularity rank of each track (0 = most popular), in the order of the ``tracks`` argument
    popularity_rank: np.ndarray


def generate_listening(
    tracks: Sequence[tuple[str, str]],
    *,
    durations: Mapping[str, float] | None = None,
    n_users: int = DEFAULT_USERS,
    seed: int = 0,
    days: int = DEFAULT_DAYS,
    end: datetime = END,
) -> ListeningLog:
    """The listening log of ``n_users`` synthetic listeners over ``tracks``.

    Args:
        tracks: ``(track_id, composer_key)`` of every track of the catalogue.
        durations: track length in seconds by track id (30 s where absent).
        n_users: how many listeners; seed: the log's seed; days, end: the span of the log.

    Returns:
        The log; its rows are ``(user_id, track_id, event, ts, duration_sec, origin)`` in time order, ``ts`` as
        ``YYYY-MM-DDTHH:MM:SSZ``, origin :data:`ORIGIN`, duration_sec the seconds listened (None for a like or
        dislike, which come a moment after their play or skip).

    Raises:
        ConfigError: no track, or ``n_users`` / ``days`` below 1.
    """
    if not tracks:
        raise ConfigError("The synthetic listening log needs at least one track")
    if n_users < 1 or days < 1:
        raise ConfigError(f"n_users and days must be >= 1, got n_users={n_users}, days={days}")
    rng = np.random.default_rng(seed)
    ids = [t for t, _ in tracks]
    comps = [c for _, c in tracks]
    dur = np.array([float((durations or {}).get(t, 30.0)) for t in ids])
    # popularity: a seeded ranking of the tracks, Zipf weights over the ranks
    rank = rng.permutation(len(ids))
    popularity = 1.0 / (rank + 1.0) ** ZIPF_S
    start = end - timedelta(days=days)
    rows: list[Row] = []
    tastes = make_tastes(comps, n_users, rng)
    for taste in tastes:
        aff = affinity(taste, comps)
        weight = popularity * np.asarray(AFFINITY_WEIGHT)[aff]
        p = weight / weight.sum()
        n_sessions = min(days, 1 + int(rng.geometric(0.12)))  # heavy-tailed: a few light, some heavy
        session_days = np.sort(rng.choice(days, size=n_sessions, replace=False))
        for day in session_days:
            t = start + timedelta(
                days=int(day), hours=int(rng.integers(7, 23)), minutes=int(rng.integers(0, 60))
            )
            n_plays = min(len(ids), int(rng.integers(3, 13)))
            for i in rng.choice(len(ids), size=n_plays, replace=False, p=p):
                a = int(aff[i])
                length = float(dur[i])
                if rng.random() < P_SKIP[a]:
                    listened = round(float(rng.uniform(1.0, max(1.0, 0.3 * length))), 1)
                    rows.append((taste.user_id, ids[i], "skip", _ts(t), listened, ORIGIN))
                    if rng.random() < P_DISLIKE[a]:
                        rows.append(
                            (taste.user_id, ids[i], "dislike", _ts(t + timedelta(seconds=2)), None, ORIGIN)
                        )
                else:
                    listened = round(length, 1)
                    rows.append((taste.user_id, ids[i], "play", _ts(t), listened, ORIGIN))
                    if rng.random() < P_LIKE[a]:
                        like_at = t + timedelta(seconds=max(1, int(length) - 1))
                        rows.append((taste.user_id, ids[i], "like", _ts(like_at), None, ORIGIN))
                t += timedelta(seconds=int(np.ceil(listened)) + int(rng.integers(1, 90)))
    rows.sort(key=lambda r: (r[3], r[0], r[1], r[2]))
    return ListeningLog(rows, tastes, rank)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
