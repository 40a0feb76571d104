"""standardize-audio on real files in every codec, plus corrupt, empty, zero-length and unpulled tracks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.errors import AudioDecodeError, ModelError
from research_job.io.audio import decode_audio, load_track_audio, read_wav
from research_job.metadata import TrackRow, write_tracks_csv
from research_job.schema import read_artifact
from research_job.steps import standardize_audio
from research_job.steps.standardize_audio import (
    MODEL_SAMPLE_RATES,
    StandardizeAudioConfig,
    resolve_sample_rate,
)
from tests.conftest import AUDIO_SECONDS
from tests.helpers.audio_fixtures import CODECS, write_corrupt, write_empty, write_zero_length


def row(tid: str, ext: str, album: str = "alb") -> TrackRow:
    return TrackRow(tid, album, 1, tid, "x", f"cat/{album}/{tid}.{ext}", None, "X", False)


@pytest.fixture
def version(tmp_path: Path, audio_files: dict[str, Path]) -> tuple[CommonConfig, list[TrackRow]]:
    """A version folder whose audio_cache holds one good file per codec and four bad tracks."""
    common = CommonConfig(version_dir=tmp_path / "v1_model_test", model="musicnn-msd")
    layout = common.layout
    rows = [row(f"good-{ext}", ext) for ext in CODECS]
    for r, ext in zip(rows, CODECS, strict=True):
        dest = layout.cached_audio(r.album_id, r.track_id, r.audio_ext)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audio_files[ext], dest)
    bad = [row("corrupt", "mp3"), row("empty", "m4a"), row("zero", "wav"), row("unpulled", "flac")]
    write_corrupt(layout.cached_audio("alb", "corrupt", "mp3"))
    write_empty(layout.cached_audio("alb", "empty", "m4a"))
    write_zero_length(layout.cached_audio("alb", "zero", "wav"))
    rows += bad
    write_tracks_csv(layout.tracks_csv, rows)
    return common, rows


def test_standardize_reports_bad_and_keeps_good(version: tuple[CommonConfig, list[TrackRow]]) -> None:
    common, rows = version
    layout = common.layout
    report = standardize_audio.run(StandardizeAudioConfig(common=common, workers=2))
    assert report["sample_rate"] == 16000 and report["sample_rate_from"] == "model_table"
    assert read_artifact(layout.standardize_report, "standardize_report") == report
    st = {e["track_id"]: e for e in report["tracks"]}
    assert [e["track_id"] for e in report["tracks"]] == [r.track_id for r in rows]
    for ext in CODECS:
        e = st[f"good-{ext}"]
        assert e["status"] == "ok" and e["reused"] is False and e["wav"] == f"audio_wav/good-{ext}.wav"
        assert abs(e["duration_sec"] - AUDIO_SECONDS) < 0.05
        assert e["source"]["sample_rate"] == 44100 and e["source"]["channels"] == CODECS[ext][3]
        x, sr = read_wav(layout.wav(f"good-{ext}"))
        assert sr == 16000 and x.dtype == np.float32 and len(x) == round(e["duration_sec"] * 16000)
    assert "corrupt.mp3" in st["corrupt"]["reason"]
    assert "empty (0 bytes)" in st["empty"]["reason"]
    assert "zero samples" in st["zero"]["reason"]
    assert "not pulled" in st["unpulled"]["reason"]
    for tid in ("corrupt", "empty", "zero", "unpulled"):
        assert st[tid]["status"] == "failed" and st[tid]["wav"] is None
        assert not layout.wav(tid).exists()
    assert report["counts"] == {"tracks": 9, "ok": 5, "reused": 0, "failed": 4}
    assert not list(layout.audio_wav_dir.glob("*.tmp"))


def test_rerun_reuses_complete_wavs_only(version: tuple[CommonConfig, list[TrackRow]]) -> None:
    common, _ = version
    layout = common.layout
    cfg = StandardizeAudioConfig(common=common, sample_rate=22050, workers=1)
    standardize_audio.run(cfg)
    flac_wav = layout.wav("good-flac")
    before = flac_wav.stat().st_mtime_ns
    # an interrupted write: a truncated wav and a leftover .tmp
    mp3_wav = layout.wav("good-mp3")
    mp3_wav.write_bytes(mp3_wav.read_bytes()[:1000])
    layout.wav("good-wav").unlink()
    layout.wav("good-wav").with_name("good-wav.wav.tmp").write_bytes(b"partial")
    report = standardize_audio.run(cfg)
    st = {e["track_id"]: e for e in report["tracks"]}
    assert st["good-flac"]["reused"] is True and flac_wav.stat().st_mtime_ns == before
    assert st["good-flac"]["source"]["codec"] == "flac"
    assert st["good-mp3"]["reused"] is False and st["good-mp3"]["status"] == "ok"
    assert st["good-wav"]["reused"] is False and st["good-wav"]["status"] == "ok"
    assert report["counts"] == {"tracks": 9, "ok": 5, "reused": 3, "failed": 4}
    assert read_wav(mp3_wav)[1] == 22050 and len(read_wav(mp3_wav)[0]) > 40000
    # another sample rate: nothing is reused
    report = standardize_audio.run(StandardizeAudioConfig(common=common, sample_rate=16000))
    assert report["counts"]["reused"] == 0 and report["counts"]["ok"] == 5
    # another max_duration_sec: nothing is reused, every wav is cut to the new length
    report = standardize_audio.run(
        StandardizeAudioConfig(common=common, sample_rate=16000, max_duration_sec=0.5)
    )
    assert report["counts"]["reused"] == 0 and all(
        e["duration_sec"] == 0.5 for e in report["tracks"] if e["status"] == "ok"
    )
    report = standardize_audio.run(
        StandardizeAudioConfig(common=common, sample_rate=16000, max_duration_sec=0.5)
    )
    assert report["counts"]["reused"] == 5


def test_load_track_audio_prefers_wav_then_decodes(version: tuple[CommonConfig, list[TrackRow]]) -> None:
    common, rows = version
    layout = common.layout
    good = next(r for r in rows if r.track_id == "good-flac")
    decoded = load_track_audio(layout, good, 16000)  # no wav yet: decoded from the cache
    direct, _ = decode_audio(layout.cached_audio("alb", "good-flac", "flac"), 16000)
    assert np.array_equal(decoded, direct)
    standardize_audio.run(StandardizeAudioConfig(common=common, sample_rate=16000))
    # the wav is what is read now: overwrite it with a marker signal to prove it
    from research_job.io.audio import write_wav

    write_wav(layout.wav("good-flac"), np.full(100, 0.5, np.float32), 16000)
    assert np.array_equal(load_track_audio(layout, good, 16000), np.full(100, 0.5, np.float32))
    assert len(load_track_audio(layout, good, 8000)) == pytest.approx(AUDIO_SECONDS * 8000, abs=1)
    with pytest.raises(AudioDecodeError, match="unpulled"):
        load_track_audio(layout, next(r for r in rows if r.track_id == "unpulled"), 16000)


def test_silent_audio_decodes(tmp_path: Path) -> None:
    from tests.helpers.audio_fixtures import write_audio

    common = CommonConfig(version_dir=tmp_path / "v")
    r = row("silent", "flac")
    write_audio(common.layout.cached_audio("alb", "silent", "flac"), np.zeros(8000, np.float32), 16000)
    write_tracks_csv(common.layout.tracks_csv, [r])
    report = standardize_audio.run(StandardizeAudioConfig(common=common, sample_rate=16000))
    assert report["tracks"][0]["status"] == "ok"
    assert not np.any(read_wav(common.layout.wav("silent"))[0])


def test_all_failed_raises_after_report(tmp_path: Path) -> None:
    common = CommonConfig(version_dir=tmp_path / "v")
    write_empty(common.layout.cached_audio("alb", "e", "mp3"))
    write_tracks_csv(common.layout.tracks_csv, [row("e", "mp3")])
    with pytest.raises(AudioDecodeError, match="none of 1 tracks"):
        standardize_audio.run(StandardizeAudioConfig(common=common, sample_rate=16000))
    assert read_artifact(common.layout.standardize_report, "standardize_report")["counts"]["failed"] == 1


def test_sample_rate_resolution() -> None:
    from research_job.models.registry import MODELS

    assert set(MODEL_SAMPLE_RATES) <= set(MODELS), "the table names a model the registry does not know"
    for name, sr in MODEL_SAMPLE_RATES.items():
        cfg = StandardizeAudioConfig(common=CommonConfig(model=name + "?layer=x"))
        assert resolve_sample_rate(cfg) == (sr, "model_table")
    assert resolve_sample_rate(StandardizeAudioConfig(sample_rate=8000)) == (8000, "config")
    with pytest.raises(ModelError, match="Unknown model 'nope'"):
        resolve_sample_rate(StandardizeAudioConfig(common=CommonConfig(model="nope")))
