"""export-metadata against a real PostgreSQL (pgserver), a real SQLite file and a CSV."""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
from pathlib import Path

import pytest

from research_job.config import CommonConfig
from research_job.errors import ConfigError, MetadataError
from research_job.io.database import redact_text, redact_url
from research_job.metadata import read_tracks_csv
from research_job.schema import read_artifact
from research_job.steps import export_metadata
from research_job.steps.export_metadata import ExportMetadataConfig

COLS = ("track_id", "album_id", "track_no", "title", "composer", "audio_s3_key", "duration_sec")
CATALOGUE = [
    ("t3", "alb1", 3, "Chorale 3", "Bach, Johann Sebastian", "cat/alb1/t3.m4a", 31.5),
    ("t1", "alb1", 1, "Chorale 1", "Johann  Sebastian BACH", "cat/alb1/t1.m4a", 30.0),
    ("t2", "alb2", 1, "Sonata", "Mozart, Wolfgang Amadeus", "cat/alb2/t2.mp3", None),
    ("t4", "alb2", 2, "Unknown piece", None, "cat/alb2/t4.mp3", 12.25),
    ("t5", "alb3", None, "Blank composer", "   ", "cat/alb3/t5.flac", 5.0),
    ("t6", "alb3", 2, "JSB", "J. S. Bach", "cat/alb3/t6.ogg", 8.0),
]
CREATE = (
    "CREATE TABLE {t} (track_id TEXT, album_id TEXT, track_no INTEGER, title TEXT, composer TEXT, "
    "audio_s3_key TEXT, duration_sec DOUBLE PRECISION, extra TEXT)"
)


def cfg(tmp_path: Path, **kw: object) -> ExportMetadataConfig:
    return ExportMetadataConfig(common=CommonConfig(version_dir=tmp_path / "v1_model_test"), **kw)  # type: ignore[arg-type]


def make_sqlite(path: Path, rows: list[tuple], table: str = "tracks") -> str:
    con = sqlite3.connect(path)
    con.execute(CREATE.format(t=table).replace("DOUBLE PRECISION", "REAL"))
    con.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?,'x')", rows)
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def check_output(tmp_path: Path, report: dict) -> dict[str, object]:
    layout = cfg(tmp_path).common.layout
    assert read_artifact(layout.export_report, "export_report") == report
    rows = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    assert set(rows) == {"t1", "t2", "t3", "t4", "t5", "t6"}
    assert rows["t1"].composer == rows["t3"].composer == "johann sebastian bach"
    assert rows["t2"].composer == "wolfgang amadeus mozart" and rows["t2"].duration_sec is None
    assert rows["t4"].composer is None and rows["t4"].composer_missing and rows["t4"].composer_raw is None
    assert rows["t5"].composer is None and rows["t5"].composer_missing and rows["t5"].track_no is None
    assert rows["t3"].composer_raw == "Bach, Johann Sebastian" and rows["t3"].track_no == 3
    c = report["counts"]
    assert (c["rows_read"], c["rows_written"], c["composer_missing"], c["albums"]) == (6, 6, 2, 3)
    assert not list(layout.metadata_dir.glob("*.tmp"))
    return rows


def test_sqlite_table(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "cat.sqlite", CATALOGUE)
    report = export_metadata.run(cfg(tmp_path, database_url=url))
    rows = check_output(tmp_path, report)
    assert report["source"] == {
        "kind": "sqlite",
        "url": url,
        "table": "tracks",
        "query": None,
        "composer_aliases": None,
    }
    assert report["counts"]["composers"] == 3  # bach, mozart, "j. s. bach" (no alias file)
    # table mode sorts by track_id for a deterministic file
    assert list(rows) == ["t1", "t2", "t3", "t4", "t5", "t6"]


def test_sqlite_query_and_alias_file(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "cat.sqlite", CATALOGUE, table="catalogue_v2")
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("'J.  S. BACH': 'Bach, Johann Sebastian'\n")
    query = f"SELECT {', '.join(COLS)} FROM catalogue_v2 WHERE track_id <> 't2' ORDER BY track_id DESC"
    report = export_metadata.run(cfg(tmp_path, database_url=url, query=query, composer_aliases=aliases))
    rows = read_tracks_csv(cfg(tmp_path).common.layout.tracks_csv)
    assert [r.track_id for r in rows] == ["t6", "t5", "t4", "t3", "t1"]  # query order kept
    assert rows[0].composer == "johann sebastian bach" and rows[0].composer_raw == "J. S. Bach"
    assert report["counts"]["composers"] == 1 and report["counts"]["aliases_applied"] == 1
    assert report["source"]["query"] == query and report["source"]["table"] is None


def test_sqlite_missing_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="not found"):
        export_metadata.run(cfg(tmp_path, database_url=f"sqlite:///{tmp_path / 'nope.sqlite'}"))
    assert not (tmp_path / "nope.sqlite").exists()


def test_bad_table_name_and_scheme(tmp_path: Path) -> None:
    url = make_sqlite(tmp_path / "cat.sqlite", CATALOGUE)
    with pytest.raises(ConfigError, match="Bad table name"):
        export_metadata.run(cfg(tmp_path, database_url=url, table="tracks; DROP TABLE tracks"))
    with pytest.raises(ConfigError, match="Known: postgres, postgresql, sqlite"):
        export_metadata.run(cfg(tmp_path, database_url="mysql://u:pw@h/db"))
    with pytest.raises(ConfigError, match="exactly one"):
        export_metadata.run(cfg(tmp_path))


@pytest.mark.network_services
def test_postgres_table_and_query(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    postgres.execute("DROP TABLE IF EXISTS pg_tracks")
    postgres.execute(CREATE.format(t="pg_tracks"))
    postgres.executemany(
        "INSERT INTO pg_tracks VALUES (%s,%s,%s,%s,%s,%s,%s,'x')", [tuple(r) for r in CATALOGUE]
    )
    url = postgres.url_with_password("hunter2-secret")
    report = export_metadata.run(cfg(tmp_path, database_url=url, table="pg_tracks"))
    check_output(tmp_path, report)
    assert report["source"]["kind"] == "postgresql"
    assert "hunter2-secret" not in json.dumps(report) and "postgres:***@" in report["source"]["url"]

    q = "SELECT track_id, album_id, title, composer, audio_s3_key FROM pg_tracks WHERE album_id = 'alb1'"
    report = export_metadata.run(cfg(tmp_path, database_url=postgres.uri, query=q))
    rows = read_tracks_csv(cfg(tmp_path).common.layout.tracks_csv)
    assert {r.track_id for r in rows} == {"t1", "t3"} and all(r.track_no is None for r in rows)


@pytest.mark.network_services
def test_postgres_errors_name_table_without_password(
    tmp_path: Path, postgres, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    url = postgres.url_with_password("pw-in-url-42")
    with pytest.raises(MetadataError) as ei:
        export_metadata.run(cfg(tmp_path, database_url=url, table="no_such_table"))
    assert "no_such_table" in str(ei.value)
    out = capsys.readouterr()
    for text in (str(ei.value), caplog.text, out.out, out.err):
        assert "pw-in-url-42" not in text


@pytest.mark.network_services
def test_postgres_duplicates_and_unsafe_ids(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    postgres.execute("DROP TABLE IF EXISTS pg_bad")
    postgres.execute(CREATE.format(t="pg_bad"))
    bad = [
        *CATALOGUE,
        ("t1", "alb9", 9, "dup of t1", "X", "k/t1.m4a", 1.0),
        ("..", "alb1", 1, "dots", "X", "k/dots.m4a", 1.0),
        ("a/b", "alb1", 1, "slash", "X", "k/ab.m4a", 1.0),
        ("ctl\x07", "alb1", 1, "bell", "X", "k/c.m4a", 1.0),
        ("t7", "..", 1, "album dots", "X", "k/t7.m4a", 1.0),
        ("t2", "alb2", 5, "dup of t2", "Y", "k/t2b.m4a", 1.0),
    ]
    postgres.executemany("INSERT INTO pg_bad VALUES (%s,%s,%s,%s,%s,%s,%s,'x')", bad)
    q = "SELECT track_id, album_id, track_no, title, composer, audio_s3_key, duration_sec FROM pg_bad"
    with pytest.raises(MetadataError) as ei:
        export_metadata.run(cfg(tmp_path, database_url=postgres.uri, query=q))
    msg = str(ei.value)
    assert "row 8: track_id '..'" in msg
    assert "row 9: track_id 'a/b'" in msg
    assert "row 10: track_id 'ctl\\x07' contains a control character" in msg
    assert "row 11: album_id '..'" in msg
    assert "duplicate track_id 't1' in 2 rows: row 2:" in msg and "row 7:" in msg
    assert "duplicate track_id 't2' in 2 rows: row 3:" in msg and "row 12:" in msg
    assert not cfg(tmp_path).common.layout.tracks_csv.exists()


def test_failing_connection_never_shows_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    # port 9 on localhost: nothing listens there, the connection is refused at once
    url = "postgresql://scott:Tiger%21Secret@127.0.0.1:9/catalogue?connect_timeout=2"
    with pytest.raises(MetadataError) as ei:
        export_metadata.run(cfg(tmp_path, database_url=url))
    msg = str(ei.value)
    assert "Cannot connect to catalogue postgresql://scott:***@127.0.0.1:9/catalogue" in msg
    out = capsys.readouterr()
    for text in (msg, repr(ei.value), caplog.text, out.out, out.err):
        assert "Tiger" not in text and "Secret" not in text
    assert ei.value.__cause__ is None and ei.value.__suppress_context__
    assert not cfg(tmp_path).common.layout.export_report.exists()


def test_redaction_helpers() -> None:
    url = "postgresql://u:p%40ss@host:5432/db?sslmode=require&password=qp"
    assert redact_url(url) == "postgresql://u:***@host:5432/db?sslmode=require&password=***"
    assert redact_text("failed for p@ss and p%40ss and qp", url) == "failed for *** and *** and ***"
    assert redact_url("sqlite:///a/b.sqlite") == "sqlite:///a/b.sqlite"
    assert (
        redact_url("postgresql://postgres:@/postgres?host=/tmp/x")
        == "postgresql://postgres:***@/postgres?host=/tmp/x"
    )


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_input(tmp_path: Path) -> None:
    # columns in another order, plus an extra column, go through the same checks
    header = ["title", "extra", *[c for c in COLS if c != "title"]]
    rows = [(r[3], "x", *[v for i, v in enumerate(r) if i != 3]) for r in CATALOGUE]
    src = write_csv(tmp_path / "cat.csv", header, rows)
    report = export_metadata.run(cfg(tmp_path, csv_path=src))
    check_output(tmp_path, report)
    assert report["source"]["kind"] == "csv" and report["source"]["url"] == str(src)


def test_csv_missing_columns(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "cat.csv", ["id", "album_id", "name"], [("1", "a", "b")])
    with pytest.raises(MetadataError) as ei:
        export_metadata.run(cfg(tmp_path, csv_path=src))
    msg = str(ei.value)
    assert "Missing required column(s)" in msg and "track_id, title, composer, audio_s3_key" in msg
    assert "Found: id, album_id, name" in msg


def test_csv_duplicates_all_listed_and_unsafe_ids(tmp_path: Path) -> None:
    rows = [
        *CATALOGUE,
        ("t3", "alb1", 4, "dup", "X", "k.m4a", 1.0),
        ("t3", "alb1", 5, "dup2", "X", "k.m4a", 1.0),
    ]
    rows += [("ok", "a/b", 1, "slash album", "X", "k.m4a", 1.0)]
    src = write_csv(tmp_path / "cat.csv", list(COLS), rows)
    with pytest.raises(MetadataError) as ei:
        export_metadata.run(cfg(tmp_path, csv_path=src))
    msg = str(ei.value)
    assert "duplicate track_id 't3' in 3 rows: row 1:" in msg and "row 7:" in msg and "row 8:" in msg
    assert "row 9: album_id 'a/b' contains a path separator" in msg
    assert msg.startswith("2 problem(s)")
