"""Tests of the embedded demo corpus: a tiny real build (music21 scores -> audio in five codecs -> SQLite + store).

The shared build uses the additive synthesiser so no apt package is needed; the FluidSynth tests run only when
``fluidsynth`` and a GM soundfont are installed. Everything decoded here is decoded with PyAV directly.
"""

from __future__ import annotations

import hashlib
import io
import re
import sqlite3
import unicodedata
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

pytest.importorskip("music21")
pretty_midi = pytest.importorskip("pretty_midi")

from research_job.demo import DemoCorpusError, RenderError  # noqa: E402
from research_job.demo import corpus as demo_corpus  # noqa: E402
from research_job.demo.build import TRACK_COLUMNS, assign_codecs, build_demo_corpus  # noqa: E402
from research_job.demo.encode import CODEC_ORDER, decode_mono, encode_audio  # noqa: E402
from research_job.demo.render import (  # noqa: E402
    TAIL_SEC,
    clean_midi,
    fluidsynth_available,
    render_additive,
    render_fluidsynth,
    render_waveform,
)
from research_job.errors import ConfigError  # noqa: E402

CLIP = 6.0
TINY = {
    "n_tracks": 6,
    "composers": ["bach", "josquin", "anonymous"],
    "max_clip_sec": CLIP,
    "synth": "additive",
}
SAFE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
needs_fluidsynth = pytest.mark.skipif(
    not fluidsynth_available(), reason="fluidsynth + GM soundfont not installed"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    corpus = build_demo_corpus(out, workers=2, **TINY)
    con = sqlite3.connect(corpus.db_path)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM tracks ORDER BY track_id")]
    con.close()
    return corpus, rows


def _decode(path: Path) -> tuple[np.ndarray, int, str]:
    """Mono float32 (channel mean), sample rate and codec name, with PyAV."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        codec, rate = stream.codec_context.name, stream.codec_context.sample_rate
        codec = "mp3" if codec.startswith("mp3") else codec  # the decoder may be called mp3float
        rs = av.AudioResampler(format="fltp")
        parts = [o.to_ndarray().mean(axis=0) for f in c.decode(stream) for o in rs.resample(f)]
        parts += [o.to_ndarray().mean(axis=0) for o in rs.resample(None)]
    return np.concatenate(parts).astype(np.float32), rate, codec


def _standardise(name: str) -> str:
    """The export step's documented standardisation: NFC, whitespace, 'Last, First' -> 'First Last', casefold."""
    s = re.sub(r"\s+", " ", unicodedata.normalize("NFC", name)).strip()
    if s.count(",") == 1:
        last, first = (p.strip() for p in s.split(","))
        s = f"{first} {last}"
    return s.casefold()


def _aliases() -> dict[str, str]:
    raw = yaml.safe_load(demo_corpus.ALIASES_PATH.read_text(encoding="utf-8"))
    assert isinstance(raw, dict) and raw
    return {_standardise(k): v for k, v in raw.items()}


def test_catalogue_has_the_expected_columns_and_rows(tiny) -> None:
    corpus, rows = tiny
    assert corpus.db_url == f"sqlite:///{corpus.db_path}" and corpus.db_url.startswith("sqlite:////")
    con = sqlite3.connect(corpus.db_path)
    cols = [(r[1], r[2]) for r in con.execute("PRAGMA table_info(tracks)")]
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    con.close()
    assert tables == ["tracks", "listening_events"]
    assert cols == list(
        zip(TRACK_COLUMNS, ["TEXT", "TEXT", "INTEGER", "TEXT", "TEXT", "TEXT", "REAL"], strict=True)
    )
    assert len(rows) == 6 == corpus.n_tracks
    assert len({r["track_id"] for r in rows}) == 6
    assert corpus.skipped == ()
    for r in rows:
        assert SAFE_ID.match(r["track_id"]) and SAFE_ID.match(r["album_id"]), r
        ext = r["audio_s3_key"].rsplit(".", 1)[1]
        assert r["audio_s3_key"] == f"{corpus.key_prefix}/{r['album_id']}/{r['track_id']}.{ext}"
        assert r["title"]
    by_album: dict[str, list[int]] = {}
    for r in rows:
        by_album.setdefault(r["album_id"], []).append(r["track_no"])
    for nos in by_album.values():
        assert sorted(nos) == list(range(1, len(nos) + 1))
    # the anonymous trecento Glorias have no composer; the rest do
    assert [r["track_id"] for r in rows if r["composer"] is None] == [
        r["track_id"] for r in rows if r["album_id"] == "trecento-anonymous-mass-movements"
    ]
    assert corpus.n_null_composer == 2 and corpus.n_composers == 2


def test_every_object_decodes_to_non_silent_audio_of_the_catalogued_duration(tiny) -> None:
    corpus, rows = tiny
    for r in rows:
        path = corpus.store_dir / r["audio_s3_key"]
        assert path.is_file(), path
        mono, rate, _ = _decode(path)
        seconds = mono.size / rate
        # the build pads to whole AAC frames, so every codec decodes to the catalogued length
        assert abs(seconds - r["duration_sec"]) < 0.005, (r["track_id"], seconds, r["duration_sec"])
        assert 1.0 < r["duration_sec"] <= CLIP + TAIL_SEC + 1024 / rate
        rms = float(np.sqrt(np.mean(mono**2)))
        assert rms > 0.01, (r["track_id"], rms)
        # sound all along, not a blip: every second but the faded end has energy
        for s in range(int(r["duration_sec"]) - 1):
            seg = mono[s * rate : (s + 1) * rate]
            assert float(np.sqrt(np.mean(seg**2))) > 1e-3, (r["track_id"], s)
    assert corpus.total_bytes == sum((corpus.store_dir / r["audio_s3_key"]).stat().st_size for r in rows)


def test_every_codec_appears(tiny) -> None:
    corpus, rows = tiny
    codecs = {_decode(corpus.store_dir / r["audio_s3_key"])[2] for r in rows}
    assert codecs == {"aac", "mp3", "vorbis", "flac", "pcm_s16le"}
    assert set(corpus.codec_counts) == set(CODEC_ORDER)


def test_composer_variants_normalise_to_one_name_through_the_alias_file(tiny) -> None:
    _, rows = tiny
    aliases = _aliases()
    raw = [r["composer"] for r in rows if r["composer"] is not None]
    assert len(set(raw)) >= 3, raw  # messy on purpose
    assert {aliases[_standardise(c)] for c in raw} == {"Johann Sebastian Bach", "Josquin des Prez"}
    # the whole plan, not only the tiny build: each composer's spellings resolve to exactly its name
    canon = set()
    for comp in demo_corpus.COMPOSERS:
        if comp.canonical is None:
            continue
        resolved = {aliases.get(_standardise(v)) for v in comp.variants if v is not None}
        assert resolved == {comp.canonical}, (comp.key, resolved)
        assert len(set(comp.variants)) >= 3
        canon.add(comp.canonical)
    assert len(canon) >= 8
    # NFC matters: one Josquin spelling is decomposed and only matches after normalisation
    assert any(v and unicodedata.normalize("NFC", v) != v for c in demo_corpus.COMPOSERS for v in c.variants)


def test_rerun_uses_the_cache_and_writes_the_same_rows(tiny) -> None:
    corpus, rows = tiny
    again = build_demo_corpus(corpus.out_dir, workers=2, **TINY)
    assert again.cache_hits == 6
    con = sqlite3.connect(again.db_path)
    con.row_factory = sqlite3.Row
    assert [dict(r) for r in con.execute("SELECT * FROM tracks ORDER BY track_id")] == rows
    con.close()


def test_same_seed_same_catalogue_and_audio(tiny, tmp_path: Path) -> None:
    corpus, rows = tiny
    # a fresh output folder, reusing only the music21 MIDI cache (parsing is the slow part, not under test)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "midi").symlink_to(corpus.out_dir / "cache" / "midi")
    other = build_demo_corpus(tmp_path, workers=2, **TINY)
    assert other.cache_hits == 0
    con = sqlite3.connect(other.db_path)
    con.row_factory = sqlite3.Row
    assert [dict(r) for r in con.execute("SELECT * FROM tracks ORDER BY track_id")] == rows
    con.close()
    for r in rows:
        if r["audio_s3_key"].endswith((".wav", ".flac")):
            a = (corpus.store_dir / r["audio_s3_key"]).read_bytes()
            b = (other.store_dir / r["audio_s3_key"]).read_bytes()
            assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


def test_default_plan_is_deterministic_and_spread() -> None:
    demo_corpus._all_albums_cached.cache_clear()
    a = demo_corpus.select_works(128, seed=0)
    demo_corpus._all_albums_cached.cache_clear()
    b = demo_corpus.select_works(128, seed=0)
    assert a == b and len(a) == 128
    assert demo_corpus.composer_strings(a) == demo_corpus.composer_strings(b)
    c = demo_corpus.select_works(128, seed=1)
    assert [w.track_id for w in a] != [w.track_id for w in c]  # the seed picks other chorales and masses
    per_composer: dict[str, set[str]] = {}
    for w in a:
        per_composer.setdefault(w.composer_key, set()).add(w.album_id)
    named = [k for k in per_composer if k != demo_corpus.ANONYMOUS]
    assert len(named) >= 8
    assert all(len(per_composer[k]) >= 2 for k in named), per_composer
    assert demo_corpus.ANONYMOUS in per_composer
    codecs = assign_codecs(a)
    for key in named:
        mine = [e for w, e in zip(a, codecs, strict=True) if w.composer_key == key]
        counts = [mine.count(e) for e in CODEC_ORDER]
        assert max(counts) - min(counts) <= 1, (key, counts)


def _midi_with_degenerate_notes() -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=40)
    inst.notes = [
        pretty_midi.Note(velocity=90, pitch=60, start=0.5, end=1.5),
        pretty_midi.Note(velocity=90, pitch=64, start=1.0, end=1.0),  # zero length
        pretty_midi.Note(velocity=90, pitch=67, start=2.0, end=2.1),
        pretty_midi.Note(velocity=90, pitch=72, start=1.5, end=3.0),
        pretty_midi.Note(velocity=90, pitch=48, start=2.5, end=99.0),  # runs past the clip
    ]
    inst.notes[2].end = 1.9  # negative length (the constructor refuses it; a parsed file may not)
    pm.instruments.append(inst)
    return pm


def test_zero_and_negative_length_notes_are_dropped_and_clip_is_enforced(tmp_path: Path) -> None:
    pm, dropped = clean_midi(_midi_with_degenerate_notes(), clip_sec=4.0, rendering="piano")
    assert dropped == 2
    notes = [n for i in pm.instruments for n in i.notes]
    assert all(n.end > n.start for n in notes) and len(notes) == 3
    assert min(n.start for n in notes) == 0.0  # leading silence skipped
    assert max(n.end for n in notes) == 4.0
    assert {i.program for i in pm.instruments} == {0}  # piano control
    path = tmp_path / "clean.mid"
    pm.write(str(path))
    back = pretty_midi.PrettyMIDI(str(path))
    assert all(n.end > n.start for i in back.instruments for n in i.notes)
    assert back.get_end_time() == pytest.approx(4.0, abs=0.01)
    y = render_additive(pm, sample_rate=8000)
    assert y.size == pytest.approx((4.0 + TAIL_SEC) * 8000, abs=2) and np.abs(y).max() > 0


def test_unknown_options_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown rendering 'organ'. Known: ensemble, piano"):
        build_demo_corpus(tmp_path, n_tracks=1, rendering="organ")
    with pytest.raises(ConfigError, match="Known: additive, auto, fluidsynth"):
        build_demo_corpus(tmp_path, n_tracks=1, synth="moog")
    with pytest.raises(ConfigError, match="Unknown demo composer 'brahms'. Known: .*bach"):
        build_demo_corpus(tmp_path, n_tracks=1, composers=["brahms"])
    with pytest.raises(ConfigError, match="Unknown audio codec extension 'aiff'"):
        encode_audio(np.zeros(10, dtype=np.float32), 8000, "aiff")


def test_a_work_past_its_timeout_is_skipped_with_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(
        DemoCorpusError, match=r"timed out after 0\.01 s converting bach-bwv\d+ \(bach/bwv\d+\.mxl\)"
    ):
        build_demo_corpus(tmp_path, n_tracks=1, composers=["bach"], synth="additive", work_timeout_s=0.01)
    assert not (tmp_path / "catalogue.sqlite").exists()


def test_silence_is_an_error_naming_the_work() -> None:
    pm = pretty_midi.PrettyMIDI()
    with pytest.raises(RenderError, match="'empty-work' has no notes"):
        render_waveform(pm, synth="additive", sample_rate=8000, clip_sec=2.0, work="empty-work")


def test_encoded_bytes_round_trip_in_every_codec() -> None:
    rate = 22050
    t = np.arange(int(1.5 * rate)) / rate
    x = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    for ext in CODEC_ORDER:
        y, r = decode_mono(encode_audio(x, rate, ext))
        assert r == rate
        assert 0 <= y.size - x.size <= 1024, ext  # AAC pads to whole 1024-sample frames
        # level preserved within 1 dB (stereo Vorbis is averaged, not down-mixed +3 dB)
        assert abs(20 * np.log10(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)))) < 1.0, ext
        with av.open(io.BytesIO(encode_audio(x, rate, ext))) as c:
            assert c.streams.audio[0].codec_context.sample_rate == rate


@needs_fluidsynth
def test_fluidsynth_timeout_and_output_cap_raise_errors_naming_the_work() -> None:
    pm, _ = clean_midi(_midi_with_degenerate_notes(), clip_sec=4.0, rendering="ensemble")
    with pytest.raises(RenderError, match=r"FluidSynth timed out after 0\.001 s rendering 'slow-work'"):
        render_fluidsynth(pm, sample_rate=22050, work="slow-work", timeout_s=0.001)
    with pytest.raises(RenderError, match="output for 'big-work' grew past 1000 bytes"):
        render_fluidsynth(pm, sample_rate=22050, work="big-work", timeout_s=60, max_bytes=1000)


@needs_fluidsynth
def test_fluidsynth_renders_the_cleaned_midi_to_bounded_non_silent_audio() -> None:
    pm, dropped = clean_midi(_midi_with_degenerate_notes(), clip_sec=4.0, rendering="piano")
    assert dropped == 2
    y = render_waveform(pm, synth="fluidsynth", sample_rate=22050, clip_sec=4.0, work="fs-test")
    assert y.size == int(round((4.0 + TAIL_SEC) * 22050))
    assert float(np.sqrt(np.mean(y**2))) > 0.01


@needs_fluidsynth
def test_fluidsynth_piano_build(tmp_path: Path) -> None:
    corpus = build_demo_corpus(
        tmp_path, n_tracks=2, composers=["bach"], max_clip_sec=4.0, synth="fluidsynth", rendering="piano"
    )
    assert corpus.synth == "fluidsynth" and corpus.n_tracks == 2
    con = sqlite3.connect(corpus.db_path)
    keys = [r[0] for r in con.execute("SELECT audio_s3_key FROM tracks")]
    con.close()
    for key in keys:
        mono, rate, _ = _decode(corpus.store_dir / key)
        assert float(np.sqrt(np.mean(mono**2))) > 0.01
