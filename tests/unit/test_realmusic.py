"""The real-music corpus builder on hand-made "extracted packages": labels, ids, skips, catalogue, sha256 refusal.

No apt and no network: the trees mimic the real packages' layouts (so the real recipes in
``research_job.realmusic.sources`` are what is tested) with a few seconds of seeded, generated audio each.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.errors import ConfigError
from research_job.metadata import read_tracks_csv, unsafe_id_reason
from research_job.provenance import sha256_file
from research_job.realmusic import ChecksumError, RealMusicError, debs
from research_job.realmusic.build import (
    LABEL_COLUMNS,
    TRACK_COLUMNS,
    build_from_trees,
    build_realmusic_corpus,
)
from research_job.realmusic.scan import bounded_id, clean_holder, copyright_for, parse_dep5, slug
from research_job.realmusic.sources import DebPackage
from research_job.steps import export_metadata
from tests.helpers.audio_fixtures import make_signal

SR = 16000
MIN_SEC = 2.0  # the real default is 10 s; shorter clips keep the test fast


def write_ogg(
    path: Path, seconds: float, seed: int, tags: dict[str, str] | None = None, opus: bool = False
) -> Path:
    """A stereo Ogg Vorbis (or Opus) file of the seeded test tone, with Vorbis-comment ``tags``."""
    rate = 48000 if opus else SR
    x = make_signal(seconds, rate, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus" if opus else "vorbis", rate=rate)
        stream.codec_context.layout = "stereo"
        stream.codec_context.format = "s16" if opus else "fltp"
        if not opus:
            stream.codec_context.options = {"strict": "experimental"}
        for k, v in (tags or {}).items():
            stream.metadata[k] = v
        block = 960 if opus else 4096
        for start in range(0, len(x), block):
            planes = np.repeat(x[None, start : start + block], 2, axis=0)
            if opus:
                data = np.round(planes * 32767).astype(np.int16).T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
            else:
                frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


HYPERROGUE_COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hyperrogue

Files: *
Copyright: 2011-2021 Zeno Rogue <zeno@attnam.com>
License: GPL-2+

Files: music/hr3-caves.ogg
       music/hr3-short.ogg
       music/hr3-broken.ogg
Copyright: Shawn Parrotte (http://www.shawnparrotte.com)
License: CC-BY-SA-3.0

Files: music/hr-domina-hunting.ogg
Copyright: Lincoln Domina
License: CC-BY-SA-3.0

Files: sounds/*
Copyright: Brett Cornwall
           Zeno Rogue
License: CC-BY-SA-4.0
"""


def make_trees(root: Path) -> dict[str, Path]:
    """Three fake extracted packages: hyperrogue (tags + DEP-5), ufoai (a .pk3), warzone2100 (album.json)."""
    hr = root / "hyperrogue"
    music = hr / "usr/share/hyperrogue/music"
    write_ogg(music / "hr3-caves.ogg", 3.0, 1, {"ARTIST": "NeonCorridor", "TITLE": "Living Caves;Crossroads"})
    write_ogg(music / "hr-domina-hunting.ogg", 2.5, 2)  # untagged: the artist comes from debian/copyright
    write_ogg(music / "hr3-short.ogg", 1.0, 3, {"ARTIST": "NeonCorridor"})  # too short
    (music / "hr3-broken.ogg").write_bytes(np.random.default_rng(4).bytes(3000))  # not audio
    write_ogg(hr / "usr/share/hyperrogue/sounds/click.ogg", 2.5, 5)  # a sound effect
    (hr / "usr/share/hyperrogue/hyperrogue-music.txt").write_text("[02] */music/hr3-caves.ogg\n")
    doc = hr / "usr/share/doc/hyperrogue-music"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(HYPERROGUE_COPYRIGHT)

    ufo = root / "ufoai"
    tmp = root / "ufo-src"
    members = {
        "music/Crystan-Battlescape01.ogg": write_ogg(tmp / "a.ogg", 2.5, 6, {"ENCODER": "FL Studio"}),
        "music/van_theme.ogg": write_ogg(tmp / "b.ogg", 2.5, 7, {"ARTIST": "Manuel 'Vanethian' Marino"}),
        "music/PsymongR1.ogg": write_ogg(tmp / "c.ogg", 2.5, 8, {"ARTIST": "<Unknown>"}),
        "music/returnjourney.ogg": write_ogg(tmp / "d.ogg", 2.5, 9),
        "music/dynamictest-battle-41-74sec.ogg": write_ogg(tmp / "e.ogg", 2.5, 10),
    }
    pk3 = ufo / "usr/share/games/ufoai/base/0music.pk3"
    pk3.parent.mkdir(parents=True)
    with zipfile.ZipFile(pk3, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("music/", "")
        for name, src in members.items():
            z.write(src, name)
        z.writestr("music/readme.txt", "not audio")

    wz = root / "warzone2100"
    albums = wz / "usr/share/games/warzone2100/music/albums"
    osd = albums / "original_soundtrack"
    write_ogg(osd / "track1.opus", 2.5, 11, opus=True)
    write_ogg(osd / "track2.opus", 2.5, 12, opus=True)
    write_ogg(osd / "bonus.opus", 2.5, 13, opus=True)  # in the folder, not in album.json
    album = {
        "title": "Warzone 2100 OST",
        "author": "Martin Severn",
        "tracks": [
            {"filename": "track2.opus", "title": "Track 2", "author": "Martin Severn"},
            {"filename": "track1.opus", "title": "Track 1"},  # no author: the album's
        ],
    }
    (osd / "album.json").write_text(json.dumps(album))
    aft = albums / "aftermath_soundtrack"
    write_ogg(aft / "track17.opus", 2.5, 14, opus=True)
    (aft / "album.json").write_text(
        json.dumps(
            {
                "title": "Aftermath",
                "author": "LupusMechanicus",
                "tracks": [
                    {"filename": "track17.opus", "title": "Nuclear Heartbeat", "author": "LupusMechanicus"}
                ],
            }
        )
    )
    write_ogg(wz / "usr/share/games/warzone2100/music/menu.opus", 2.5, 15, opus=True)  # in no album
    return {"hyperrogue-music": hr, "ufoai-music": ufo, "warzone2100-music": wz}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("realmusic")
    trees = make_trees(root / "trees")
    corpus = build_from_trees(trees, root / "out", min_duration_sec=MIN_SEC)
    return root, trees, corpus


def query(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


EXPECTED = {
    # track_id: (album_id, track_no, title, composer, artist_source)
    "hyperrogue-hr-domina-hunting": ("hyperrogue", 1, "Hunting", "Lincoln Domina", "debian/copyright"),
    "hyperrogue-hr3-caves": ("hyperrogue", 2, "Caves", "Shawn Parrotte", "tag:ARTIST"),
    "ufoai-crystan-battlescape01": (
        "ufoai",
        1,
        "Crystan Battlescape01",
        'Christian "Crystan" Hoffmann',
        "filename rule",
    ),
    "ufoai-psymongr1": ("ufoai", 2, "PsymongR1", "Simon Green (Psymong)", "filename rule"),
    "ufoai-returnjourney": ("ufoai", 3, "Returnjourney", None, "none"),
    "ufoai-van-theme": ("ufoai", 4, "Van theme", 'Manuel "Vanethian" Marino', "tag:ARTIST"),
    "warzone2100-aftermath-soundtrack-track17": (
        "warzone2100-aftermath-soundtrack",
        1,
        "Nuclear Heartbeat",
        "LupusMechanicus",
        "album.json:author",
    ),
    "warzone2100-original-soundtrack-track2": (
        "warzone2100-original-soundtrack",
        1,
        "Track 2",
        "Martin Severn",
        "album.json:author",
    ),
    "warzone2100-original-soundtrack-track1": (
        "warzone2100-original-soundtrack",
        2,
        "Track 1",
        "Martin Severn",
        "album.json:author",
    ),
}


def test_catalogue_rows_and_labels(built) -> None:  # type: ignore[no-untyped-def]
    root, trees, corpus = built
    db = corpus.db_path
    cols = [r[1] for r in query(db, "PRAGMA table_info(tracks)")]
    assert tuple(cols) == TRACK_COLUMNS
    from research_job.demo.build import TRACK_COLUMNS as DEMO_COLUMNS

    assert TRACK_COLUMNS == DEMO_COLUMNS  # the pipeline reads both the same way
    rows = {r[0]: r for r in query(db, "SELECT * FROM tracks")}
    assert set(rows) == set(EXPECTED)
    for tid, (album, no, title, composer, _) in EXPECTED.items():
        r = rows[tid]
        assert (r[1], r[2], r[3], r[4]) == (album, no, title, composer), tid
        assert r[5] == f"audio/{album}/{tid}.{'opus' if 'warzone' in tid else 'ogg'}"
        assert r[6] == pytest.approx(2.5 if "caves" not in tid else 3.0, abs=0.05)
    labels = {r[0]: dict(zip(LABEL_COLUMNS, r, strict=True)) for r in query(db, "SELECT * FROM labels")}
    assert set(labels) == set(EXPECTED)
    for tid, (album, _, _, composer, source) in EXPECTED.items():
        lab = labels[tid]
        assert (lab["soundtrack"], lab["artist"], lab["artist_source"]) == (album, composer, source), tid
    caves = labels["hyperrogue-hr3-caves"]
    assert caves["package"] == "hyperrogue-music" and caves["license"] == "CC-BY-SA-3.0"
    assert caves["source_path"] == "usr/share/hyperrogue/music/hr3-caves.ogg"
    assert json.loads(caves["evidence"]) == {
        "tag:ARTIST": "NeonCorridor",
        "debian/copyright": "Shawn Parrotte",
    }
    psy = labels["ufoai-psymongr1"]
    assert psy["source_path"] == "usr/share/games/ufoai/base/0music.pk3/music/PsymongR1.ogg"
    assert "tag:ARTIST" not in json.loads(psy["evidence"])  # '<Unknown>' names nobody
    assert labels["warzone2100-aftermath-soundtrack-track17"]["license"].startswith("CC-BY-SA-3.0+ or GPL-2+")
    assert corpus.report["soundtracks_with_several_artists"] == {
        "hyperrogue": {"Lincoln Domina": 1, "Shawn Parrotte": 1},
        "ufoai": {
            'Christian "Crystan" Hoffmann': 1,
            "(unknown)": 1,
            'Manuel "Vanethian" Marino': 1,
            "Simon Green (Psymong)": 1,
        },
    }
    assert corpus.report["n_artists"] == 7 and corpus.report["conflicts"] == []


def test_store_holds_the_original_bytes(built) -> None:  # type: ignore[no-untyped-def]
    root, trees, corpus = built
    with zipfile.ZipFile(trees["ufoai-music"] / "usr/share/games/ufoai/base/0music.pk3") as z:
        member = z.read("music/van_theme.ogg")
    assert (corpus.store_dir / "audio/ufoai/ufoai-van-theme.ogg").read_bytes() == member
    src = trees["hyperrogue-music"] / "usr/share/hyperrogue/music/hr3-caves.ogg"
    assert (corpus.store_dir / "audio/hyperrogue/hyperrogue-hr3-caves.ogg").read_bytes() == src.read_bytes()
    objects = sorted(
        p.relative_to(corpus.store_dir).as_posix() for p in corpus.store_dir.rglob("*") if p.is_file()
    )
    assert objects == sorted(r[0] for r in query(corpus.db_path, "SELECT audio_s3_key FROM tracks"))


def test_skipped_files_and_reasons(built) -> None:  # type: ignore[no-untyped-def]
    _, _, corpus = built
    reasons = {(s["package"], s["path"].rsplit("/", 1)[-1]): s["reason"] for s in corpus.report["skipped"]}
    assert set(reasons) == {
        ("hyperrogue-music", "hr3-short.ogg"),
        ("hyperrogue-music", "hr3-broken.ogg"),
        ("hyperrogue-music", "click.ogg"),
        ("ufoai-music", "dynamictest-battle-41-74sec.ogg"),
        ("warzone2100-music", "bonus.opus"),
        ("warzone2100-music", "menu.opus"),
    }
    assert reasons[("hyperrogue-music", "hr3-short.ogg")].startswith("too short: 1.0")
    assert "< 2 s" in reasons[("hyperrogue-music", "hr3-short.ogg")]
    assert reasons[("hyperrogue-music", "hr3-broken.ogg")].startswith("not decodable by FFmpeg")
    assert "sound effect" in reasons[("hyperrogue-music", "click.ogg")]
    assert reasons[("warzone2100-music", "bonus.opus")] == "not listed in original_soundtrack/album.json"
    assert reasons[("warzone2100-music", "menu.opus")].startswith("not part of any album")


def test_ids_safe_unique_and_stable(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, trees, corpus = built
    ids = [t.track_id for t in corpus.tracks]
    assert len(ids) == len(set(ids))
    for t in corpus.tracks:
        assert unsafe_id_reason(t.track_id) is None and unsafe_id_reason(t.album_id) is None
        assert len(t.track_id) <= 128 and t.track_id == slug(t.track_id)
    again = build_from_trees(trees, tmp_path / "again", min_duration_sec=MIN_SEC)
    assert query(again.db_path, "SELECT * FROM tracks ORDER BY track_id") == query(
        corpus.db_path, "SELECT * FROM tracks ORDER BY track_id"
    )
    assert query(again.db_path, "SELECT * FROM labels ORDER BY track_id") == query(
        corpus.db_path, "SELECT * FROM labels ORDER BY track_id"
    )


def test_rerun_reuses_probe_cache_and_store(built) -> None:  # type: ignore[no-untyped-def]
    root, trees, corpus = built
    rerun = build_from_trees(trees, root / "out", min_duration_sec=MIN_SEC)
    # every decoded file is looked up, the too-short and the broken one included (its error is cached too)
    assert rerun.report["probe_cache_hits"] == len(corpus.tracks) + 2
    assert rerun.report["store"] == {"written": 0, "unchanged": len(corpus.tracks), "removed": 0}


def test_export_metadata_reads_the_catalogue(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, corpus = built
    # the step's own name for its config (it is moving out of research_job.config; the step has it either way)
    cfg = export_metadata.ExportMetadataConfig(
        common=CommonConfig(version_dir=tmp_path / "v1_model_test"), database_url=corpus.db_url
    )
    report = export_metadata.run(cfg)
    c = report["counts"]
    assert (c["rows_read"], c["rows_written"], c["composer_missing"], c["albums"]) == (9, 9, 1, 4)
    rows = {r.track_id: r for r in read_tracks_csv(cfg.common.layout.tracks_csv)}
    assert set(rows) == set(EXPECTED)
    assert rows["ufoai-van-theme"].composer == 'manuel "vanethian" marino'
    assert rows["ufoai-van-theme"].composer_raw == 'Manuel "Vanethian" Marino'
    assert rows["ufoai-returnjourney"].composer_missing


def test_colliding_ids_are_refused(tmp_path: Path) -> None:
    tree = tmp_path / "asc"
    music = tree / "usr/share/games/asc/music"
    write_ogg(music / "Machine Wars.ogg", 2.5, 1)
    write_ogg(music / "machine_wars.ogg", 2.5, 2)
    with pytest.raises(RealMusicError, match=r"asc-machine-wars.*Machine Wars\.ogg.*machine_wars\.ogg"):
        build_from_trees({"asc-music": tree}, tmp_path / "out", min_duration_sec=MIN_SEC)


def test_unknown_package_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown package 'asc'\. Known: asc-music, hyperrogue-music"):
        build_from_trees({"asc": tmp_path}, tmp_path / "out")
    with pytest.raises(ConfigError, match="Unknown package 'nope'"):
        build_realmusic_corpus(tmp_path / "out", packages=["nope"])


def test_slug_and_bounded_id() -> None:
    assert slug("Dämmerung – Space (Remix)_02") == "dammerung-space-remix-02"
    assert slug("../..") == "x" and slug("") == "x"
    long = "a" * 200
    b = bounded_id(long)
    assert len(b) == 128 and b != bounded_id("a" * 201) and b == bounded_id(long)


def test_dep5_parsing() -> None:
    paras = parse_dep5(HYPERROGUE_COPYRIGHT)
    assert paras is not None and len(paras) == 4
    assert copyright_for(paras, "music/hr3-caves.ogg").holders == ("Shawn Parrotte",)  # type: ignore[union-attr]
    assert copyright_for(paras, "hyperrogue.cpp").holders == ("Zeno Rogue",)  # type: ignore[union-attr]
    assert copyright_for(paras, "sounds/x.ogg").license == "CC-BY-SA-4.0"  # type: ignore[union-attr]
    assert parse_dep5("This package was debianized by someone.\n") is None
    assert (
        clean_holder('2004, Manuel "Vanethian" Marino (www.manuelmarino.com)') == 'Manuel "Vanethian" Marino'
    )
    assert clean_holder("Gren alchemist_0@sky.com") == "Gren"
    assert clean_holder("3D Realms") == "3D Realms"


# --- the .deb side, without apt ---------------------------------------------------------------------------


def fake_package(data: bytes, sha256: str | None = None) -> DebPackage:
    import hashlib

    return DebPackage("fake-music", "1.0-1", sha256 or hashlib.sha256(data).hexdigest(), len(data))


def test_wrong_sha256_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"not the pinned bytes"
    pkg = fake_package(data, sha256="0" * 64)
    calls = []

    def fake_download(p: DebPackage, dest: Path) -> Path:
        calls.append(p.name)
        (dest / p.filename).write_bytes(data)
        return dest / p.filename

    monkeypatch.setattr(debs, "apt_download", fake_download)
    actual = sha256_file(Path(fake_download(pkg, tmp_path)))
    with pytest.raises(ChecksumError) as err:
        debs.ensure_deb(pkg, tmp_path / "cache")
    msg = str(err.value)
    assert "fake-music" in msg and "0" * 64 in msg and actual in msg
    assert not list((tmp_path / "cache" / "debs").rglob("*.deb"))  # the bad download is not kept


def test_cached_deb_is_verified_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"the pinned bytes"
    pkg = fake_package(data)
    calls = []

    def fake_download(p: DebPackage, dest: Path) -> Path:
        calls.append(p.name)
        (dest / p.filename).write_bytes(data)
        return dest / p.filename

    monkeypatch.setattr(debs, "apt_download", fake_download)
    path, downloaded = debs.ensure_deb(pkg, tmp_path)
    assert downloaded and path.read_bytes() == data and len(calls) == 1
    assert debs.ensure_deb(pkg, tmp_path) == (path, False) and len(calls) == 1  # cached: no download
    path.write_bytes(b"corrupted")  # a damaged cache entry is fetched again
    assert debs.ensure_deb(pkg, tmp_path) == (path, True) and len(calls) == 2 and path.read_bytes() == data


@pytest.mark.skipif(
    subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode != 0, reason="no dpkg"
)
def test_extract_deb_with_dpkg(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "DEBIAN" / "control").write_text(
        "Package: fake-music\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: t\n"
    )
    write_ogg(src / "usr/share/fake/music/a.ogg", 0.5, 1)
    deb = tmp_path / "fake.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", str(src), str(deb)], check=True, capture_output=True)
    pkg = fake_package(deb.read_bytes())
    tree = debs.extract_deb(deb, pkg, tmp_path / "cache")
    assert (tree / "usr/share/fake/music/a.ogg").read_bytes() == (
        src / "usr/share/fake/music/a.ogg"
    ).read_bytes()
    mtime = (tree / ".complete.json").stat().st_mtime_ns
    assert debs.extract_deb(deb, pkg, tmp_path / "cache") == tree  # complete: reused
    assert (tree / ".complete.json").stat().st_mtime_ns == mtime
