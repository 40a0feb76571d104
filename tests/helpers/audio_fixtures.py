"""Seeded test audio in real codecs, written with PyAV.

``make_signal`` builds a deterministic test tone (three partials + a little seeded noise);
``write_audio(path, signal, sr, codec)`` encodes it as one of :data:`CODECS`:

=========  =====================  ================================================
codec      container / encoder    notes
=========  =====================  ================================================
``m4a``    mp4 / aac              lossy
``mp3``    mp3 / libmp3lame       lossy
``ogg``    ogg / vorbis           FFmpeg's native vorbis encoder is stereo-only: the
                                  mono signal is duplicated to both channels
``flac``   flac / flac (s16)      lossless up to 16-bit quantisation
``wav``    wav / pcm_s16le        lossless up to 16-bit quantisation
=========  =====================  ================================================

Broken files for error paths: :func:`write_corrupt` (seeded random bytes), :func:`write_empty` (0 bytes),
:func:`write_zero_length` (a valid WAV container holding no samples).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODECS: dict[str, tuple[str, str, str, int]] = {
    # ext: (container format, encoder, sample format, channels)
    "m4a": ("mp4", "aac", "fltp", 1),
    "mp3": ("mp3", "libmp3lame", "fltp", 1),
    "ogg": ("ogg", "vorbis", "fltp", 2),
    "flac": ("flac", "flac", "s16", 1),
    "wav": ("wav", "pcm_s16le", "s16", 1),
}
LOSSLESS = ("flac", "wav")


def make_signal(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A deterministic mono float32 signal: 220/440/880 Hz partials with seeded phases + -40 dB noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = np.zeros_like(t)
    for f, a in ((220.0, 0.3), (440.0, 0.2), (880.0, 0.1)):
        x += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x += 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_audio(path: str | Path, signal: np.ndarray, sample_rate: int, codec: str | None = None) -> Path:
    """Encode the mono float ``signal`` into ``path`` with the codec named by ``codec`` (default: the suffix)."""
    path = Path(path)
    ext = codec or path.suffix.lstrip(".")
    fmt, encoder, sample_fmt, channels = CODECS[ext]
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(encoder, rate=sample_rate)
        stream.codec_context.layout = layout
        stream.codec_context.format = sample_fmt
        if encoder == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        stream.codec_context.time_base = Fraction(1, sample_rate)
        block = 4096
        pts = 0
        for start in range(0, len(signal), block):
            chunk = signal[start : start + block].astype(np.float32)
            planes = np.repeat(chunk[None, :], channels, axis=0)
            if sample_fmt == "s16":
                data = np.round(np.clip(planes, -1, 1) * 32767).astype(np.int16)
                data = data.T.reshape(1, -1)  # packed
            else:
                data = planes
            frame = av.AudioFrame.from_ndarray(data, format=sample_fmt, layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = pts
            frame.time_base = Fraction(1, sample_rate)
            pts += len(chunk)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_corrupt(path: str | Path, n_bytes: int = 4096, seed: int = 1) -> Path:
    """Seeded random bytes (not a media file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(n_bytes))
    return path


def write_empty(path: str | Path) -> Path:
    """A 0-byte file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_zero_length(path: str | Path, sample_rate: int = 16000) -> Path:
    """A valid WAV container (pcm_s16le, mono) with an audio stream but no samples."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=sample_rate)
        stream.codec_context.layout = "mono"
        out.start_encoding()  # writes the header although no packet follows
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_all_codecs(
    directory: str | Path, seconds: float, sample_rate: int, seed: int = 0
) -> dict[str, Path]:
    """Write the same seeded signal once per codec: ``{ext: path}`` named ``tone.<ext>``."""
    signal = make_signal(seconds, sample_rate, seed)
    return {ext: write_audio(Path(directory) / f"tone.{ext}", signal, sample_rate) for ext in CODECS}
