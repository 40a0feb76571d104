"""The demo's synthetic listening log: seeded, shaped by taste and popularity, in sessions, and exportable."""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.demo.build import _write_sqlite
from research_job.demo.corpus import COMPOSER_KEYS
from research_job.demo.listening import (
    COMPOSER_ERA,
    DEFAULT_DAYS,
    END,
    LISTENING_COLUMNS,
    ORIGIN,
    affinity,
    generate_listening,
)
from research_job.errors import ConfigError
from research_job.interactions import SourceRows, normalize_events, read_interactions
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, write_tracks_csv
from research_job.steps import export_interactions
from research_job.steps.export_interactions import ExportInteractionsConfig

#: a demo-like catalogue: 10 tracks of every demo composer
TRACKS = [(f"{c}-{i:02d}", c) for c in COMPOSER_KEYS for i in range(10)]


@pytest.fixture(scope="module")
def log():  # type: ignore[no-untyped-def]
    return generate_listening(TRACKS, n_users=300, seed=0)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_every_demo_composer_has_an_era() -> None:
    assert set(COMPOSER_KEYS) <= set(COMPOSER_ERA)
    assert len(set(COMPOSER_ERA.values())) >= 4


def test_same_seed_same_log_other_seed_other_log(log) -> None:  # type: ignore[no-untyped-def]
    again = generate_listening(TRACKS, n_users=300, seed=0)
    assert again.rows == log.rows and again.tastes == log.tastes
    other = generate_listening(TRACKS, n_users=300, seed=1)
    assert other.rows != log.rows


def test_rows_are_well_formed_and_in_the_window(log) -> None:  # type: ignore[no-untyped-def]
    ids = {t for t, _ in TRACKS}
    assert len(log.rows) > 5000
    assert {r[2] for r in log.rows} == {"play", "like", "skip", "dislike"}
    assert all(r[5] == ORIGIN and r[1] in ids for r in log.rows)
    stamps = [r[3] for r in log.rows]
    assert stamps == sorted(stamps)
    assert _ts(stamps[0]) >= END - timedelta(days=DEFAULT_DAYS) and _ts(stamps[-1]) < END
    assert len({r[:4] for r in log.rows}) == len(log.rows)  # no duplicate the export would drop
    assert len({r[0] for r in log.rows}) == 300
    for t in log.tastes:
        assert 1 <= len(t.favourites) <= 3 and len(set(t.favourites)) == len(t.favourites)


def test_taste_shows_more_likes_and_fewer_skips_on_taste(log) -> None:  # type: ignore[no-untyped-def]
    comps = [c for _, c in TRACKS]
    row_of = {t: i for i, (t, _) in enumerate(TRACKS)}
    aff = {t.user_id: affinity(t, comps) for t in log.tastes}
    listens: Counter[int] = Counter()
    likes: Counter[int] = Counter()
    skips: Counter[int] = Counter()
    for user, track, event, *_ in log.rows:
        a = int(aff[user][row_of[track]])
        if event in ("play", "skip"):
            listens[a] += 1
        likes[a] += event == "like"
        skips[a] += event == "skip"
    like_rate = {a: likes[a] / listens[a] for a in (0, 1, 2)}
    skip_rate = {a: skips[a] / listens[a] for a in (0, 1, 2)}
    assert like_rate[2] > 3 * like_rate[0] and like_rate[2] > like_rate[1] > like_rate[0]
    assert skip_rate[2] < skip_rate[0] / 3 and skip_rate[2] < skip_rate[1] < skip_rate[0]
    # and listeners mostly listen on taste: their favourites are a minority of the catalogue, not of the plays
    assert listens[2] > listens[0]


def test_popularity_is_skewed(log) -> None:  # type: ignore[no-untyped-def]
    listens = Counter(r[1] for r in log.rows if r[2] in ("play", "skip"))
    rank = log.popularity_rank
    counts = np.array([listens[t] for t, _ in TRACKS], dtype=float)
    top = counts[rank < len(TRACKS) // 10].sum() / counts.sum()
    assert top > 0.3  # the top tenth of tracks by popularity draws well over a tenth of the listens
    # more popular (lower rank) -> more listens, overall
    assert np.corrcoef(rank, counts)[0, 1] < -0.3


def test_sessions_are_minutes_within_and_days_apart(log) -> None:  # type: ignore[no-untyped-def]
    by_user: dict[str, list[datetime]] = defaultdict(list)
    for r in log.rows:
        by_user[r[0]].append(_ts(r[3]))
    within: list[timedelta] = []
    between: list[timedelta] = []
    for stamps in by_user.values():
        for a, b in zip(stamps, stamps[1:], strict=False):
            (within if b - a < timedelta(hours=2) else between).append(b - a)
    assert max(within) < timedelta(minutes=10)
    assert min(between) > timedelta(hours=8) and len(between) > 300
    sizes = Counter(r[0] for r in log.rows)
    assert min(sizes.values()) < 15 < 100 < max(sizes.values())  # light and heavy listeners


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least one track"):
        generate_listening([])
    with pytest.raises(ConfigError, match="n_users=0"):
        generate_listening(TRACKS, n_users=0)


def test_a_tiny_catalogue_still_works() -> None:
    tiny = generate_listening([("a", "bach"), ("b", "anonymous")], n_users=5, seed=3)
    assert {r[1] for r in tiny.rows} <= {"a", "b"} and len(tiny.rows) > 0


def test_the_demo_catalogue_table_exports_without_a_drop(tmp_path: Path) -> None:
    """The demo build's SQLite writer puts the log beside the tracks, and export-interactions keeps every row."""
    tracks = TRACKS[:40]
    log = generate_listening(tracks, n_users=30, seed=5)
    catalogue = [(t, "alb", i + 1, t, c, f"audio/alb/{t}.wav", 30.0) for i, (t, c) in enumerate(tracks)]
    db = tmp_path / "catalogue.sqlite"
    _write_sqlite(db, catalogue, log.rows)
    con = sqlite3.connect(db)
    tables = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    n = con.execute("SELECT count(*) FROM listening_events").fetchone()[0]
    con.close()
    assert tables == ["listening_events", "tracks"] and n == len(log.rows)
    layout = ArtifactLayout(tmp_path / "v1_model_demo")
    write_tracks_csv(
        layout.tracks_csv, [TrackRow(t, "alb", 1, t, c, f"k/{t}.wav", 30.0, c, False) for t, c in tracks]
    )
    report = export_interactions.run(
        ExportInteractionsConfig(
            common=CommonConfig(version_dir=layout.version_dir), database_url=f"sqlite:///{db}"
        )
    )
    assert report["counts"]["rows_written"] == len(log.rows) == report["counts"]["rows_read"]
    assert set(report["dropped"].values()) == {0} and report["synthetic"] is True
    assert report["counts"]["by_origin"] == {ORIGIN: len(log.rows)}
    got = read_interactions(layout.path("interactions_csv"))
    assert got.user_id.tolist() == [r[0] for r in log.rows] and got.event.tolist() == [r[2] for r in log.rows]
    # the same rows through the library directly: nothing is dropped either
    out = normalize_events(
        [SourceRows("events", "<log>", LISTENING_COLUMNS, log.rows)], [t for t, _ in tracks]
    )
    assert len(out.rows) == len(log.rows) and set(out.dropped.values()) == {0}
