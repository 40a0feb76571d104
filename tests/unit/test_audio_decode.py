"""research_job.io.audio on real files in every codec, written by PyAV from a seeded signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
from scipy.signal import resample_poly

from research_job.errors import AudioDecodeError
from research_job.io.audio import decode_audio, probe_audio, read_wav, read_wav_header, write_wav
from tests.conftest import AUDIO_RATE, AUDIO_SECONDS
from tests.helpers.audio_fixtures import (
    CODECS,
    LOSSLESS,
    make_signal,
    write_corrupt,
    write_empty,
    write_zero_length,
)

TARGET = 16000
#: lossy encoders pad/trim a few ms (AAC priming is removed by FFmpeg, vorbis/mp3 round to frames)
DURATION_TOL_SEC = 0.05


def reference(target: int = TARGET) -> np.ndarray:
    x = make_signal(AUDIO_SECONDS, AUDIO_RATE, seed=0)
    return soxr.resample(x.astype(np.float32), AUDIO_RATE, target, quality="HQ")


@pytest.mark.parametrize("ext", list(CODECS))
def test_decode_every_codec(audio_files: dict[str, Path], ext: str) -> None:
    x, info = decode_audio(audio_files[ext], TARGET)
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    assert abs(len(x) / TARGET - AUDIO_SECONDS) < DURATION_TOL_SEC
    assert info.sample_rate == AUDIO_RATE and info.channels == CODECS[ext][3]
    assert info.duration_sec is not None and abs(info.duration_sec - AUDIO_SECONDS) < DURATION_TOL_SEC
    ref = reference()
    n = min(len(x), len(ref))
    corr = float(np.corrcoef(x[:n], ref[:n])[0, 1])
    if ext in LOSSLESS:
        assert corr > 0.9999, corr
        # 16-bit quantisation + the same resampler: sample-exact up to ~1e-4
        assert float(np.max(np.abs(x[:n] - ref[:n]))) < 1e-3
    else:
        assert corr > 0.99, corr  # lossy, but the same signal, aligned


def test_decode_keeps_native_rate_and_truncates(audio_files: dict[str, Path]) -> None:
    x, _ = decode_audio(audio_files["flac"], AUDIO_RATE)
    assert len(x) == int(AUDIO_SECONDS * AUDIO_RATE)
    y, _ = decode_audio(audio_files["m4a"], 22050, max_duration_sec=0.5)
    assert len(y) == 11025


def test_stereo_is_channel_mean(tmp_path: Path) -> None:
    # vorbis is written as two identical channels: the mean must equal either channel (no -3 dB downmix)
    sig = make_signal(1.0, 48000, seed=3)
    from tests.helpers.audio_fixtures import write_audio

    x, info = decode_audio(write_audio(tmp_path / "s.ogg", sig, 48000), 48000)
    assert info.channels == 2
    n = min(len(x), len(sig))
    rms_ratio = float(np.sqrt(np.mean(x[:n] ** 2)) / np.sqrt(np.mean(sig[:n] ** 2)))
    assert 0.97 < rms_ratio < 1.03


def test_probe(audio_files: dict[str, Path]) -> None:
    info = probe_audio(audio_files["mp3"])
    assert info.codec.startswith("mp3") and info.sample_rate == AUDIO_RATE and info.channels == 1


@pytest.mark.parametrize(
    ("maker", "match"),
    [
        (lambda p: write_corrupt(p / "corrupt.mp3"), "Cannot (decode|read) audio file .*corrupt.mp3"),
        (lambda p: write_empty(p / "empty.m4a"), r"empty \(0 bytes\): .*empty.m4a"),
        (lambda p: write_zero_length(p / "zero.wav"), "zero.wav decodes to zero samples"),
        (lambda p: p / "absent.flac", "not found: .*absent.flac"),
    ],
    ids=["corrupt", "empty", "zero-length", "absent"],
)
def test_bad_files_raise_naming_the_file(tmp_path: Path, maker, match: str) -> None:  # type: ignore[no-untyped-def]
    path = maker(tmp_path)
    with pytest.raises(AudioDecodeError, match=match):
        decode_audio(path, TARGET)


def test_truncated_m4a_is_an_error(tmp_path: Path, audio_files: dict[str, Path]) -> None:
    # a header-only prefix of an m4a (moov atom missing) cannot be decoded
    data = audio_files["m4a"].read_bytes()
    p = tmp_path / "trunc.m4a"
    p.write_bytes(data[:64])
    with pytest.raises(AudioDecodeError, match="trunc.m4a"):
        decode_audio(p, TARGET)


def test_wav_round_trip_and_header(tmp_path: Path) -> None:
    x = make_signal(0.5, TARGET, seed=5)
    x[:10] = [0.0, -1.0, 1.0, 0.5, -0.5, 1e-7, -1e-7, 0.25, -0.25, 0.125]
    p = tmp_path / "a" / "x.wav"
    write_wav(p, x, TARGET)
    y, sr = read_wav(p)
    assert sr == TARGET and y.dtype == np.float32 and np.array_equal(x, y)
    h = read_wav_header(p)
    assert h.n_samples == len(x) and p.stat().st_size == h.data_offset + 4 * len(x)
    assert not list(p.parent.glob("*.tmp"))
    # other readers agree: FFmpeg decodes it as pcm_f32le mono
    z, info = decode_audio(p, TARGET)
    assert info.codec == "pcm_f32le" and info.channels == 1 and np.array_equal(z, x)


def test_truncated_wav_is_detected(tmp_path: Path) -> None:
    p = tmp_path / "x.wav"
    write_wav(p, make_signal(0.2, TARGET), TARGET)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(AudioDecodeError, match="truncated"):
        read_wav_header(p)
    q = tmp_path / "pcm16.wav"
    from tests.helpers.audio_fixtures import write_audio

    write_audio(q, make_signal(0.2, TARGET), TARGET)
    with pytest.raises(AudioDecodeError, match="expected IEEE float"):
        read_wav(q)


def test_the_resampler_keeps_resample_polys_lengths_and_rejects_aliases_better() -> None:
    """soxr HQ replaced scipy's resample_poly: same output lengths (ceil), the same passband, and a tone above the
    output Nyquist removed far better (resample_poly stays the reference it is measured against)."""
    from research_job.io.audio import _resample

    rng = np.random.default_rng(3)
    for n, src in (
        (44100 * 3 + 7, 44100),
        (22050 * 2 + 3, 22050),
        (48000, 48000),
        (37, 44100),
        (1000, 48000),
    ):
        x = rng.standard_normal(n).astype(np.float32)
        ref = resample_poly(x, 16000, src)
        assert len(_resample(x, src, 16000)) == len(ref), (n, src)
    t_in, t_out = np.arange(44100 * 4) / 44100, np.arange(16000 * 4) / 16000
    tone = _resample(np.sin(2 * np.pi * 1000 * t_in).astype(np.float32), 44100, 16000)
    mid = slice(16000, -16000)
    assert np.max(np.abs(tone[mid] - np.sin(2 * np.pi * 1000 * t_out)[mid])) < 1e-3  # passband
    alias_in = np.sin(2 * np.pi * 9000 * t_in).astype(np.float32)  # above the 8 kHz output Nyquist
    ours = float(np.mean(_resample(alias_in, 44100, 16000)[mid] ** 2))
    scipy_ = float(np.mean(resample_poly(alias_in, 160, 441)[mid] ** 2))
    assert ours < 1e-8 and ours < scipy_ / 1e4, (ours, scipy_)
