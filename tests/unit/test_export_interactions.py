"""export-interactions: every drop reason, timestamp normalisation, SQLite / PostgreSQL (+ feedback) / CSV sources,
errors that name the bad value, redaction, and a byte-identical rerun."""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.errors import ArtifactError, ConfigError, MetadataError
from research_job.interactions import (
    CSV_COLUMNS,
    DROP_REASONS,
    SourceRows,
    normalize_events,
    parse_timestamp,
    read_interactions,
)
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, write_tracks_csv
from research_job.schema import read_artifact, validate
from research_job.steps import export_interactions
from research_job.steps.export_interactions import ExportInteractionsConfig

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
COLS = ("user_id", "track_id", "event", "ts", "duration_sec", "origin")
TRACKS = ("t1", "t2", "t3", "t,4")
EVENTS = [
    ("u1", "t1", "play", "2025-03-01T10:00:00Z", 30.0, "synthetic-test"),
    ("u1", "t1", "like", "2025-03-01T10:00:29Z", None, "synthetic-test"),
    ("u2", "t2", "skip", "2025-03-01T09:00:00+01:00", 4.5, "synthetic-test"),  # 08:00 UTC
    ("u2", "t,4", "play", 1740819600, 12, "synthetic-test"),  # epoch: 2025-03-01T09:00:00Z
    ("u3", "t3", "dislike", "2025-02-28T23:30:00-05:00", None, "synthetic-test"),  # 03-01T04:30 UTC
    ("u1", "t1", "play", "2025-03-01T10:00:00Z", 31.0, "synthetic-test"),  # duplicate of row 1
    ("u/4", "t1", "play", "2025-03-01T10:00:00Z", None, "synthetic-test"),  # unsafe_id
    ("u5", "nope", "play", "2025-03-01T10:00:00Z", None, "synthetic-test"),  # unknown_track
]
#: the file EVENTS export to (sorted by ts, user_id, track_id, event; the duplicate dropped)
EXPECTED_CSV = (
    "user_id,track_id,event,ts,duration_sec,origin\n"
    "u3,t3,dislike,2025-03-01T04:30:00Z,,synthetic-test\n"
    "u2,t2,skip,2025-03-01T08:00:00Z,4.5,synthetic-test\n"
    'u2,"t,4",play,2025-03-01T09:00:00Z,12.0,synthetic-test\n'
    "u1,t1,play,2025-03-01T10:00:00Z,30.0,synthetic-test\n"
    "u1,t1,like,2025-03-01T10:00:29Z,,synthetic-test\n"
)
CREATE = "CREATE TABLE {t} (user_id TEXT, track_id TEXT, event TEXT, ts TEXT, duration_sec REAL, origin TEXT, x TEXT)"


def make_version(tmp_path: Path, tracks: tuple[str, ...] = TRACKS) -> ArtifactLayout:
    layout = ArtifactLayout(tmp_path / "v1_model_test")
    rows = [TrackRow(t, "alb", i, t, "bach", f"k/{i}.wav", 30.0, "Bach", False) for i, t in enumerate(tracks)]
    write_tracks_csv(layout.tracks_csv, rows)
    return layout


def cfg(layout: ArtifactLayout, **kw: object) -> ExportInteractionsConfig:
    return ExportInteractionsConfig(common=CommonConfig(version_dir=layout.version_dir), **kw)  # type: ignore[arg-type]


def make_sqlite(path: Path, rows: list[tuple], table: str = "listening_events") -> str:
    con = sqlite3.connect(path)
    con.execute(CREATE.format(t=table))
    con.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?,?,'extra')", rows)
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def src(rows: list[tuple], name: str = "events", columns: tuple[str, ...] = COLS, **kw: object) -> SourceRows:
    return SourceRows(name, f"<{name}>", columns, rows, **kw)  # type: ignore[arg-type]


# --- the library -------------------------------------------------------------------------------------------


def test_every_drop_reason_is_counted_with_examples() -> None:
    good = ("u1", "t1", "play", "2025-03-01T10:00:00Z", 30, "o")
    rows = [
        good,
        ("u/1", "t1", "play", "2025-03-01T10:00:00Z", 1, "o"),  # 2 unsafe user
        ("..", "t1", "play", "2025-03-01T10:00:00Z", 1, "o"),  # 3 unsafe user
        ("u1", "a\\b", "play", "2025-03-01T10:00:00Z", 1, "o"),  # 4 unsafe track (backslash)
        (None, "t1", "play", "2025-03-01T10:00:00Z", 1, "o"),  # 5 missing user
        ("u" * 257, "t1", "play", "2025-03-01T10:00:00Z", 1, "o"),  # 6 too long
        ("u1", "t99", "play", "2025-03-01T10:00:00Z", 1, "o"),  # 7 unknown track
        ("u1", "t1", "love", "2025-03-01T10:00:00Z", 1, "o"),  # 8 bad event
        ("u1", "t1", None, "2025-03-01T10:00:00Z", 1, "o"),  # 9 no event
        ("u1", "t1", "play", "yesterday", 1, "o"),  # 10 unparseable
        ("u1", "t1", "play", "1999-12-31T23:59:59Z", 1, "o"),  # 11 before 2000
        ("u1", "t1", "play", "2026-06-02T13:00:00Z", 1, "o"),  # 12 > 1 day ahead of NOW
        ("u1", "t1", "play", 1e30, 1, "o"),  # 13 absurd epoch
        ("u1", "t1", "play", "2025-03-01T10:00:00Z", -1, "o"),  # 14 negative duration
        ("u1", "t1", "play", "2025-03-01T10:00:00Z", "long", "o"),  # 15 not a number
        ("u1", "t1", "play", "2025-03-01T10:00:00Z", float("nan"), "o"),  # 16 NaN
        ("u1", "t1", "play", "2025-03-01T10:00:00Z", 1, "with space"),  # 17 bad origin
        ("u1", "t1", "play", "2025-03-01T10:00:00Z", 1, "x" * 65),  # 18 origin too long
        ("u1", "t1", "play", "2025-03-01T11:00:00+01:00", 99, "o"),  # 19 duplicate of row 1 (same instant)
        ("u1", "t1", "play", "2026-06-02T11:59:59Z", None, None),  # 20 kept: within the day of slack
    ]
    out = normalize_events([src(rows)], ["t1"], now=NOW)
    assert out.dropped == {
        "unsafe_id": 5,
        "unknown_track": 1,
        "bad_event": 2,
        "bad_timestamp": 4,
        "bad_duration": 3,
        "bad_origin": 2,
        "duplicate": 1,
    }
    assert list(out.dropped) == list(DROP_REASONS)
    assert out.rows_read == 20 and len(out.rows) == 2
    assert out.rows_read == len(out.rows) + sum(out.dropped.values())
    ex = out.examples
    assert [(e["row"], e["column"], e["value"]) for e in ex["unsafe_id"]] == [
        (2, "user_id", "u/1"),
        (3, "user_id", ".."),
        (4, "track_id", "a\\b"),
        (5, "user_id", None),
        (6, "user_id", "u" * 257),
    ]
    assert ex["unknown_track"] == [{"row": 7, "source": "events", "column": "track_id", "value": "t99"}]
    assert [e["value"] for e in ex["bad_event"]] == ["love", None]
    assert [e["value"] for e in ex["bad_timestamp"]] == [
        "yesterday",
        "1999-12-31T23:59:59Z",
        "2026-06-02T13:00:00Z",
        "1e+30",
    ]
    assert [e["value"] for e in ex["bad_duration"]] == ["-1", "long", "nan"]
    assert [e["row"] for e in ex["bad_origin"]] == [17, 18]
    assert ex["duplicate"][0]["row"] == 19 and "(first: row 1)" in ex["duplicate"][0]["value"]
    assert out.rows[0].duration_sec == 30.0  # the first of the duplicates is the one kept


def test_examples_stop_at_five_but_counts_do_not() -> None:
    rows = [(f"u{i}", "t1", "hum", "2025-03-01T10:00:00Z", None, None) for i in range(9)]
    rows.append(("u1", "t1", "like", "2025-03-01T10:00:00Z", None, None))
    out = normalize_events([src(rows)], ["t1"], now=NOW)
    assert out.dropped["bad_event"] == 9 and [e["row"] for e in out.examples["bad_event"]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("value", "seconds", "assumed_utc"),
    [
        ("2025-03-01T10:00:00Z", 1740823200, False),
        ("2025-03-01T12:00:00+02:00", 1740823200, False),
        ("2025-03-01T04:30:00-05:30", 1740823200, False),
        ("2025-03-01T10:00:00.999Z", 1740823200, False),  # the fraction is cut
        ("20250301T100000Z", 1740823200, False),
        (" 2025-03-01 10:00:00 ", 1740823200, True),  # no offset: read as UTC, and counted
        ("1740823200", 1740823200, False),
        ("1740823200.75", 1740823200, False),
        (1740823200, 1740823200, False),
        (1740823200.5, 1740823200, False),
        (Decimal("1740823200"), 1740823200, False),
        (
            datetime(2025, 3, 1, 11, tzinfo=datetime.fromisoformat("2025-01-01T00:00+01:00").tzinfo),
            1740823200,
            False,
        ),
        (datetime(2025, 3, 1, 10), 1740823200, True),
        (date(2025, 3, 1), 1740787200, True),
    ],
)
def test_timestamps_with_offsets_and_epochs_are_normalised(
    value: object, seconds: int, assumed_utc: bool
) -> None:
    assert parse_timestamp(value) == (seconds, assumed_utc)


@pytest.mark.parametrize("value", ["", "soon", "2025-13-01T00:00:00Z", "2025-02-30", "nan", True, None, [1]])
def test_non_timestamps_are_refused(value: object) -> None:
    assert parse_timestamp(value) is None


def test_naive_timestamps_are_counted_and_written_as_utc() -> None:
    rows = [
        ("u1", "t1", "play", "2025-03-01 10:00:00", None, None),
        ("u2", "t1", "play", "2025-03-01T10:00Z", None, None),
    ]
    out = normalize_events([src(rows)], ["t1"], now=NOW)
    assert [r.ts for r in out.rows] == ["2025-03-01T10:00:00Z", "2025-03-01T10:00:00Z"]
    assert out.ts_assumed_utc == 1


def test_sort_order_is_ts_then_user_then_track_then_event() -> None:
    ts = "2025-03-01T10:00:00Z"
    rows = [
        ("b", "t2", "skip", ts, None, None),
        ("b", "t2", "like", ts, None, None),
        ("b", "t1", "play", ts, None, None),
        ("a", "t2", "play", ts, None, None),
        ("a", "t1", "play", "2025-03-01T11:00:00+02:00", None, None),  # 09:00 UTC: first
        ("c", "t1", "dislike", "2025-03-01T10:00:01Z", None, None),
    ]
    out = normalize_events([src(rows)], ["t1", "t2"], now=NOW)
    assert [(r.user_id, r.track_id, r.event) for r in out.rows] == [
        ("a", "t1", "play"),
        ("a", "t2", "play"),
        ("b", "t1", "play"),
        ("b", "t2", "like"),
        ("b", "t2", "skip"),
        ("c", "t1", "dislike"),
    ]


def test_numeric_ids_become_text_and_event_case_is_forgiven() -> None:
    out = normalize_events(
        [src([(7, 3, " Like ", "2025-03-01T10:00:00Z", Decimal("2.5"), None)])], ["3"], now=NOW
    )
    r = out.rows[0]
    assert (r.user_id, r.track_id, r.event, r.duration_sec) == ("7", "3", "like", 2.5)


def test_missing_columns_are_named() -> None:
    with pytest.raises(MetadataError, match=r"Missing required column\(s\) in <events>: ts\. Found: user_id"):
        normalize_events([src([], columns=("user_id", "track_id", "event"))], ["t1"])


def test_read_interactions_names_bad_lines(tmp_path: Path) -> None:
    p = tmp_path / "interactions.csv"
    p.write_text("user_id,track_id,event\n")
    with pytest.raises(ArtifactError, match="header is"):
        read_interactions(p)
    header = ",".join(CSV_COLUMNS)
    p.write_text(
        f"{header}\n"
        "u1,t1,play,2025-03-01T10:00:00Z,,\n"
        "u1,t1,play,2025-03-01T09:00:00Z,,\n"  # out of order
        "u1,t1,hum,2025-03-01T11:00:00Z,,\n"
        "u1,t1,play,2025-03-01T12:00:00+01:00,,\n"
        "u1,t1,play,2025-03-01T13:00:00Z,-2,\n"
        "u1,t1,play,2025-03-01T14:00:00Z,,bad origin\n"
        "u1,t1,play,2025-03-01T15:00:00Z,inf,\n"
    )
    with pytest.raises(ArtifactError) as ei:
        read_interactions(p)
    msg = str(ei.value)
    assert "6 bad line(s)" in msg
    for line in ("line 3: out of", "line 4:", "line 5:", "line 6:", "line 7:", "line 8: duration_sec 'inf'"):
        assert line in msg
    with pytest.raises(ArtifactError, match="run research-job export-interactions first"):
        read_interactions(tmp_path / "missing.csv")


def test_read_interactions_timestamps_are_strptimes_and_impossible_dates_are_named(tmp_path: Path) -> None:
    """The column parse (numpy) equals datetime.strptime on seeded stamps across 1970-2099, leap days included;
    a well-formed but impossible date (2026-02-30, year 0000) is a bad line named by number."""
    rng = np.random.default_rng(5)
    secs = np.sort(rng.integers(0, 4_102_444_800, 500))
    stamps = [datetime.fromtimestamp(int(x), UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for x in secs]
    stamps = sorted([*stamps, "2024-02-29T23:59:59Z", "2100-01-01T00:00:00Z"])
    header = ",".join(CSV_COLUMNS)
    p = tmp_path / "interactions.csv"
    p.write_text(header + "\n" + "".join(f"u{i:04d},t1,play,{t},,\n" for i, t in enumerate(stamps)))
    got = read_interactions(p)
    want = [int(datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()) for t in stamps]
    assert got.ts.tolist() == want
    for bad in ("2026-02-30T10:00:00Z", "0000-01-01T00:00:00Z"):
        p.write_text(f"{header}\nu0,t1,play,{bad},,\nu1,t1,play,2026-12-01T00:00:00Z,,\n")
        with pytest.raises(
            ArtifactError, match=rf"1 bad line\(s\).*\n  - line 2: ts '{bad}' is not a real date-time"
        ):
            read_interactions(p)


# --- the step ----------------------------------------------------------------------------------------------


def test_sqlite_source_report_and_byte_identical_rerun(tmp_path: Path) -> None:
    layout = make_version(tmp_path)
    url = make_sqlite(tmp_path / "cat.sqlite", EVENTS)
    report = export_interactions.run(cfg(layout, database_url=url))
    out = layout.path("interactions_csv")
    assert out.read_text(encoding="utf-8") == EXPECTED_CSV
    assert read_artifact(layout.path("interactions_report"), "interactions_report") == report
    assert report["source"] == {
        "kind": "sqlite",
        "url": url,
        "table": "listening_events",
        "query": None,
        "rows_read": 8,
        "feedback": None,
    }
    c = report["counts"]
    assert (c["rows_read"], c["rows_written"], c["users"], c["tracks"], c["known_tracks"]) == (8, 5, 3, 4, 4)
    assert c["by_event"] == {"play": 2, "like": 1, "skip": 1, "dislike": 1}
    assert c["by_origin"] == {"synthetic-test": 5}
    assert report["dropped"] == dict.fromkeys(DROP_REASONS, 0) | {
        "unsafe_id": 1,
        "unknown_track": 1,
        "duplicate": 1,
    }
    assert report["span"] == {"first_ts": "2025-03-01T04:30:00Z", "last_ts": "2025-03-01T10:00:29Z"}
    assert report["synthetic"] is True
    # every written row matches the row schema, and the reader gives the same rows back
    with out.open(encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f):
            validate(
                "interactions_row",
                {
                    **rec,
                    "duration_sec": float(rec["duration_sec"]) if rec["duration_sec"] else None,
                    "origin": rec["origin"] or None,
                },
            )
    got = read_interactions(out)
    assert len(got) == 5 and got.track_id.tolist()[2] == "t,4" and got.ts[0] == 1740803400
    assert got.sha256 == report["output"]["sha256"]
    frame = got.to_frame()
    assert str(frame["ts"].dt.tz) == "UTC" and frame["ts"].iloc[-1].isoformat() == "2025-03-01T10:00:29+00:00"
    first = out.read_bytes()
    again = export_interactions.run(cfg(layout, database_url=url))
    assert out.read_bytes() == first and again["output"]["sha256"] == report["output"]["sha256"]
    assert not list(out.parent.glob("*.tmp"))


def test_query_source_and_not_synthetic(tmp_path: Path) -> None:
    layout = make_version(tmp_path)
    rows = [(*r[:5], None if i == 0 else r[5]) for i, r in enumerate(EVENTS)]
    url = make_sqlite(tmp_path / "cat.sqlite", rows, table="plays")
    q = "SELECT user_id, track_id, event, ts FROM plays WHERE user_id = 'u1'"
    report = export_interactions.run(cfg(layout, database_url=url, query=q))
    assert report["source"]["query"] == q and report["source"]["table"] is None
    assert report["counts"]["rows_written"] == 2 and report["counts"]["by_origin"] == {"": 2}
    assert report["synthetic"] is False


def test_csv_source(tmp_path: Path) -> None:
    layout = make_version(tmp_path)
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ts", "event", "track_id", "user_id", "origin", "duration_sec", "ignored"])
        for u, t, e, ts, d, o in EVENTS:
            w.writerow([ts, e, t, u, o, "" if d is None else d, "x"])
    report = export_interactions.run(cfg(layout, csv_path=path))
    assert layout.path("interactions_csv").read_text(encoding="utf-8") == EXPECTED_CSV
    assert report["source"]["kind"] == "csv" and report["source"]["url"] == str(path)


def test_errors_name_the_bad_value(tmp_path: Path) -> None:
    layout = make_version(tmp_path)
    url = make_sqlite(tmp_path / "cat.sqlite", EVENTS)
    with pytest.raises(MetadataError, match="no_such_events"):
        export_interactions.run(cfg(layout, database_url=url, table="no_such_events"))
    with pytest.raises(ConfigError, match="Bad table name 'x; DROP TABLE y'"):
        export_interactions.run(cfg(layout, database_url=url, table="x; DROP TABLE y"))
    with pytest.raises(ConfigError, match="exactly one of database_url or csv_path"):
        export_interactions.run(cfg(layout))
    with pytest.raises(ConfigError, match="Known: postgres, postgresql, sqlite"):
        export_interactions.run(cfg(layout, database_url=url, feedback_database_url="mysql://u:pw@h/db"))
    bare = ArtifactLayout(tmp_path / "v1_model_bare")
    with pytest.raises(ArtifactError, match=r"tracks_metadata\.csv not found.*export-metadata"):
        export_interactions.run(cfg(bare, database_url=url))
    other = make_version(tmp_path / "other", tracks=("z1",))
    with pytest.raises(MetadataError) as ei:
        export_interactions.run(cfg(other, database_url=url))
    msg = str(ei.value)
    assert "No listening event" in msg and "8 row(s) read" in msg and "unknown_track=7" in msg
    assert "unsafe_id=1" in msg and "'t1'" in msg and "1 known tracks" in msg
    assert not other.path("interactions_csv").exists()


def test_cli_runs_and_reports_errors_in_one_line(tmp_path: Path) -> None:
    layout = make_version(tmp_path)
    url = make_sqlite(tmp_path / "cat.sqlite", EVENTS)
    vdir = str(layout.version_dir)
    res = CliRunner().invoke(cli, ["export-interactions", "--version-dir", vdir, "--database-url", url])
    assert res.exit_code == 0, res.output
    assert layout.path("interactions_csv").read_text(encoding="utf-8") == EXPECTED_CSV
    res = CliRunner().invoke(
        cli, ["export-interactions", "--version-dir", vdir, "--database-url", url, "--table", "missing_t"]
    )
    assert res.exit_code == 2 and "missing_t" in res.output


@pytest.mark.network_services
def test_postgres_source_merges_the_feedback_table_without_showing_the_password(
    tmp_path: Path, postgres, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    postgres.execute("DROP TABLE IF EXISTS ix_events")
    postgres.execute("DROP TABLE IF EXISTS ix_feedback")
    postgres.execute(
        "CREATE TABLE ix_events (user_id TEXT, track_id TEXT, event TEXT, ts TIMESTAMPTZ, "
        "duration_sec DOUBLE PRECISION, origin TEXT)"
    )
    postgres.executemany(
        "INSERT INTO ix_events VALUES (%s,%s,%s,%s,%s,%s)",
        [
            ("u1", "t1", "play", "2025-03-01T10:00:00Z", 30.0, "synthetic-test"),
            ("u2", "t2", "skip", "2025-03-01T09:00:00+01:00", 4.5, "synthetic-test"),
        ],
    )
    # the shape the Node API's POST /feedback writes: extras, origin defaulting to 'feedback', numeric duration
    postgres.execute(
        "CREATE TABLE ix_feedback (idempotency_key TEXT PRIMARY KEY, user_id TEXT, track_id TEXT, event TEXT, "
        "ts TIMESTAMPTZ, duration_sec NUMERIC, origin TEXT DEFAULT 'feedback', received_at TIMESTAMPTZ DEFAULT now())"
    )
    postgres.executemany(
        "INSERT INTO ix_feedback (idempotency_key, user_id, track_id, event, ts, duration_sec) "
        "VALUES (%s,%s,%s,%s,%s,%s)",
        [
            ("k-00000001", "new-1", "t3", "like", "2025-03-02T08:00:00Z", None),
            (
                "k-00000002",
                "u1",
                "t1",
                "play",
                "2025-03-01T11:00:00+01:00",
                12,
            ),  # duplicate of the catalogue's
            ("k-00000003", "new-1", "t9", "play", "2025-03-02T08:01:00Z", 3),  # unknown track
        ],
    )
    postgres.execute("UPDATE ix_feedback SET origin = NULL WHERE idempotency_key = 'k-00000003'")
    layout = make_version(tmp_path)
    secret = "s3cr3t-pg-pass"
    url = postgres.url_with_password(secret)
    report = export_interactions.run(
        cfg(
            layout,
            database_url=url,
            table="ix_events",
            feedback_database_url=url,
            feedback_table="ix_feedback",
        )
    )
    assert report["source"]["kind"] == "postgresql" and "postgres:***@" in report["source"]["url"]
    assert report["source"]["feedback"] == {
        "kind": "postgresql",
        "url": report["source"]["url"],
        "table": "ix_feedback",
        "rows_read": 3,
    }
    assert report["counts"]["by_origin"] == {"feedback": 1, "synthetic-test": 2}
    assert report["dropped"]["duplicate"] == 1 and report["dropped"]["unknown_track"] == 1
    dup = report["examples"]["duplicate"][0]
    assert dup["source"] == "feedback" and "first: row 1 of events" in dup["value"]
    assert report["examples"]["unknown_track"][0] == {
        "row": 3,
        "source": "feedback",
        "column": "track_id",
        "value": "t9",
    }
    assert report["synthetic"] is False
    assert layout.path("interactions_csv").read_text(encoding="utf-8") == (
        "user_id,track_id,event,ts,duration_sec,origin\n"
        "u2,t2,skip,2025-03-01T08:00:00Z,4.5,synthetic-test\n"
        "u1,t1,play,2025-03-01T10:00:00Z,30.0,synthetic-test\n"
        "new-1,t3,like,2025-03-02T08:00:00Z,,feedback\n"
    )
    with pytest.raises(MetadataError) as ei:
        export_interactions.run(cfg(layout, database_url=url, table="ix_events", feedback_database_url=url))
    assert "feedback_events" in str(ei.value)
    out = capsys.readouterr()
    written = layout.path("interactions_report").read_text() + layout.path("interactions_csv").read_text()
    for text in (json.dumps(report), written, str(ei.value), caplog.text, out.out, out.err):
        assert secret not in text
