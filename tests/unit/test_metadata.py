"""Unit tests of research_job.metadata: composer standardisation, id checks, normalisation, CSV round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research_job.errors import MetadataError
from research_job.metadata import (
    CSV_COLUMNS,
    TrackRow,
    check_safe_id,
    key_extension,
    load_aliases,
    normalize_composer,
    normalize_records,
    read_tracks_csv,
    standardize_composer,
    tracks_csv_text,
    unsafe_id_reason,
    write_tracks_csv,
)

COLS = ["track_id", "album_id", "track_no", "title", "composer", "audio_s3_key", "duration_sec"]


def rec(tid: str, composer: str | None = "Bach, Johann Sebastian", album: str = "alb", **kw: object) -> dict:
    base = {
        "track_id": tid,
        "album_id": album,
        "track_no": 1,
        "title": f"Title {tid}",
        "composer": composer,
        "audio_s3_key": f"cat/{album}/{tid}.m4a",
        "duration_sec": 30.5,
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    "raw",
    [
        "Bach, Johann Sebastian",
        "Johann Sebastian Bach",
        "  johann   SEBASTIAN\tbach ",
        "BACH,JOHANN SEBASTIAN",
        "Johann\u00a0Sebastian Bach",  # no-break space is whitespace too
    ],
)
def test_composer_variants_standardise_to_one_name(raw: str) -> None:
    assert standardize_composer(raw) == "johann sebastian bach"


def test_composer_unicode_nfc_and_casefold() -> None:
    decomposed = "Dvor\u030ca\u0301k, Antoni\u0301n"  # combining marks
    composed = "Antonín Dvořák"
    assert standardize_composer(decomposed) == standardize_composer(composed) == "antonín dvořák"
    assert standardize_composer("STRAUSS") == standardize_composer("Strauß") == "strauss"


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n", ","])
def test_blank_composer_is_missing(raw: str | None) -> None:
    assert standardize_composer(raw) is None


def test_multi_comma_composer_not_reordered() -> None:
    assert normalize_composer("Williams, John, Jr.") == "williams, john, jr."


def test_alias_file_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "aliases.yaml"
    y.write_text("'J. S. Bach': 'Bach, Johann Sebastian'\n'Tchaikovsky, P.I.': Pyotr Ilyich Tchaikovsky\n")
    j = tmp_path / "aliases.json"
    j.write_text(json.dumps({"  j. s.   BACH ": "Johann Sebastian Bach"}))
    for path in (y, j):
        aliases = load_aliases(path)
        assert standardize_composer("J. S. Bach", aliases) == "johann sebastian bach"
        assert standardize_composer("Bach, Johann Sebastian", aliases) == "johann sebastian bach"
    assert standardize_composer("P.I. Tchaikovsky", load_aliases(y)) == "pyotr ilyich tchaikovsky"


def test_alias_file_conflict_and_bad_type(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"JS Bach": "Bach", "js  bach": "Handel"}))
    with pytest.raises(MetadataError, match="already mapped"):
        load_aliases(p)
    p.write_text("[1, 2]")
    with pytest.raises(MetadataError, match="mapping"):
        load_aliases(p)
    with pytest.raises(MetadataError, match=r"\.txt"):
        q = tmp_path / "a.txt"
        q.write_text("{}")
        load_aliases(q)


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "a\\b", "a\x00b", "tab\there", "", "x" * 257, "del\x7f"])
def test_unsafe_ids(bad: str) -> None:
    assert unsafe_id_reason(bad) is not None
    with pytest.raises(MetadataError, match="unsafe as a path component"):
        check_safe_id("track_id", bad)


@pytest.mark.parametrize("good", ["a", "a.b", "...", "..a", "Bach BWV 253", "ümlaut-ß", "x" * 256])
def test_safe_ids(good: str) -> None:
    assert unsafe_id_reason(good) is None


def test_key_extension() -> None:
    assert key_extension("a/b/c.M4A") == "m4a"
    assert key_extension("a/b.c/noext") == "bin"
    assert key_extension(".hidden") == "bin"


def test_normalize_reports_all_problems_at_once() -> None:
    records = [
        rec("t1"),
        rec("..", album="alb"),
        rec("a/b"),
        rec("t1", title="again"),
        rec("ctl\x01", album="x/y"),
        rec("t5", track_no="two"),
        rec("t6", duration_sec=-1),
        rec("t7", audio_s3_key=" "),
        rec("t1", title="third"),
    ]
    with pytest.raises(MetadataError) as ei:
        normalize_records(COLS, records, source="test")
    msg = str(ei.value)
    assert "row 2: track_id '..' is" in msg
    assert "row 3: track_id 'a/b'" in msg
    assert "row 5: track_id 'ctl\\x01' contains a control character" in msg
    assert "row 5: album_id 'x/y'" in msg
    assert "row 6 (track_id 't5'): track_no 'two'" in msg
    assert "row 7 (track_id 't6'): duration_sec -1" in msg
    assert "row 8 (track_id 't7'): audio_s3_key is empty" in msg
    # every duplicate row listed, with its content
    assert "duplicate track_id 't1' in 3 rows: row 1:" in msg and "row 4:" in msg and "row 9:" in msg
    assert "title='again'" in msg and "title='third'" in msg
    assert msg.startswith("8 problem(s) in test")  # 7 row problems + 1 duplicate group


def test_missing_columns_lists_missing_and_found() -> None:
    with pytest.raises(MetadataError) as ei:
        normalize_records(["track_id", "name", "composer"], [], source="src")
    msg = str(ei.value)
    assert "Missing required column(s) in src: album_id, title, audio_s3_key" in msg
    assert "Found: track_id, name, composer" in msg


def test_missing_composer_kept_and_marked() -> None:
    rows, stats = normalize_records(
        COLS, [rec("a"), rec("b", composer=None), rec("c", composer="  ")], source="s"
    )
    assert [r.composer_missing for r in rows] == [False, True, True]
    assert rows[1].composer is None and rows[1].composer_raw is None
    assert rows[2].composer is None and rows[2].composer_raw == "  "
    assert stats.composer_missing == 2 and stats.composers == 1 and stats.rows_read == 3


def test_optional_columns_and_numeric_ids() -> None:
    cols = ["track_id", "album_id", "title", "composer", "audio_s3_key"]
    rows, _ = normalize_records(
        cols,
        [{"track_id": 12, "album_id": 3.0, "title": None, "composer": "X", "audio_s3_key": "k.mp3"}],
        source="s",
    )
    assert rows[0].track_id == "12" and rows[0].album_id == "3"
    assert rows[0].track_no is None and rows[0].duration_sec is None and rows[0].title == ""


def test_csv_round_trip(tmp_path: Path) -> None:
    rows, _ = normalize_records(
        COLS,
        [
            rec("a", title='Quote "and", comma'),
            rec("b", composer=None, track_no=None, duration_sec=None),
            rec("ü-c", composer="Dvořák, Antonín", title="", duration_sec=1 / 3),
        ],
        source="s",
    )
    path = tmp_path / "m" / "tracks_metadata.csv"
    write_tracks_csv(path, rows)
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert read_tracks_csv(path) == rows
    assert not list(path.parent.glob("*.tmp"))


def test_read_tracks_csv_lists_every_bad_line(tmp_path: Path) -> None:
    good = TrackRow("a", "alb", 1, "t", "x", "k.m4a", 1.0, "X", False)
    text = tracks_csv_text([good])
    text += "b,alb,1,t,,k.m4a,1.0,,false\n"  # composer missing but not marked
    text += "c,a/b,1,t,x,k.m4a,1.0,X,false\n"  # unsafe album id
    text += "a,alb,1,t,x,k.m4a,1.0,X,false\n"  # duplicate
    text += "d,alb,one,t,x,k.m4a,1.0,X,false\n"  # bad int
    p = tmp_path / "tracks_metadata.csv"
    p.write_text(text)
    with pytest.raises(MetadataError) as ei:
        read_tracks_csv(p)
    msg = str(ei.value)
    for line in ("line 3", "line 4", "line 5", "line 6"):
        assert line in msg
    assert "duplicate track_id 'a'" in msg


def test_read_tracks_csv_wrong_header(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("track_id,album_id\n")
    with pytest.raises(MetadataError, match="expected track_id, album_id, track_no"):
        read_tracks_csv(p)
    with pytest.raises(MetadataError, match="run export-metadata first"):
        read_tracks_csv(tmp_path / "missing.csv")


def test_fast_row_check_never_accepts_what_the_schema_rejects() -> None:
    """``_row_surely_valid`` may skip jsonschema only for rows the schema accepts: checked on seeded random rows
    built from valid and invalid values of every column, and it must accept the ordinary rows (or it is useless)."""
    import random

    from jsonschema import Draft202012Validator

    from research_job.metadata import _row_surely_valid
    from research_job.schema import load_schema

    check = Draft202012Validator(load_schema("tracks_metadata_row"))
    ids = ["t1", "a b", "é", "x" * 256, "x" * 257, "", ".", "..", "...", ".a", "a/b", "a\\b", "a\x00", "a\x1f",
           "a\x7f", "a\n", 5, None]  # fmt: skip
    values = {
        "track_id": ids,
        "album_id": ids,
        "track_no": [3, None, 0, -1, 2.5, True, "3"],
        "title": ["Song", "", None, 3],
        "composer": ["bach, j.s.", None, "", 7],
        "audio_s3_key": ["k.mp3", "", None],
        "duration_sec": [12.5, None, 0.0, -1.0, float("nan"), float("inf"), 3, True, "1.0"],
        "composer_raw": ["Bach", None, "", 1],
        "composer_missing": [False, True, None, "true", 0],
    }
    rng = random.Random(0)
    accepted = 0
    for _ in range(4000):
        # mostly the first (ordinary) value of each column, so that single defects and their mixes both occur
        row = {c: (v[0] if rng.random() < 0.8 else rng.choice(v)) for c, v in values.items()}
        if _row_surely_valid(row):
            accepted += 1
            assert check.is_valid(row), row
    assert 200 < accepted < 4000
    ordinary = {"track_id": "t1", "album_id": "a1", "track_no": 1, "title": "T", "composer": "bach",
                "audio_s3_key": "a1/t1.mp3", "duration_sec": 30.0, "composer_raw": "Bach", "composer_missing": False}  # fmt: skip
    assert _row_surely_valid(ordinary)
