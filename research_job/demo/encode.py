"""Write a mono float32 waveform as a real compressed or PCM audio file with PyAV (FFmpeg).

One codec per container extension: ``m4a`` (AAC), ``mp3`` (LAME MP3), ``ogg`` (Vorbis), ``flac`` and ``wav``
(PCM 16-bit). The demo corpus rotates these across tracks so that the pipeline's decoder sees every codec. The
output is encoded in memory and returned as bytes; callers write it atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from research_job.errors import ConfigError, unknown_choice


@dataclass(frozen=True)
class CodecSpec:
    """How one file extension is encoded: FFmpeg container and codec, sample format, bit rate, channels."""

    ext: str
    container: str
    codec: str
    sample_format: str
    bit_rate: int | None
    channels: int
    options: tuple[tuple[str, str], ...] = ()


# FFmpeg's native Vorbis encoder (the wheels ship no libvorbis) is flagged experimental and only encodes
# stereo, so Vorbis files carry the mono signal on both channels.
CODECS: dict[str, CodecSpec] = {
    "m4a": CodecSpec("m4a", "ipod", "aac", "fltp", 96_000, 1),
    "mp3": CodecSpec("mp3", "mp3", "libmp3lame", "s16p", 96_000, 1),
    "ogg": CodecSpec("ogg", "ogg", "vorbis", "fltp", 96_000, 2, (("strict", "experimental"),)),
    "flac": CodecSpec("flac", "flac", "flac", "s16", None, 1),
    "wav": CodecSpec("wav", "wav", "pcm_s16le", "s16", None, 1),
}

#: The rotation order used by the demo corpus.
CODEC_ORDER: tuple[str, ...] = ("m4a", "mp3", "ogg", "flac", "wav")


def codec_spec(ext: str) -> CodecSpec:
    """The :class:`CodecSpec` of a file extension; raises :class:`ConfigError` naming the known ones."""
    try:
        return CODECS[ext]
    except KeyError:
        raise ConfigError(unknown_choice("audio codec extension", ext, CODECS)) from None


def _to_frame_array(mono: np.ndarray, spec: CodecSpec) -> np.ndarray:
    """Lay out a mono float waveform as the (planes, samples) or (1, samples*channels) array PyAV expects."""
    x = np.clip(np.asarray(mono, dtype=np.float32), -1.0, 1.0)
    planar = spec.sample_format.endswith("p")
    if spec.sample_format.startswith("s16"):
        x = np.round(x * 32767.0).astype(np.int16)
    chans = np.repeat(x[None, :], spec.channels, axis=0)
    if planar:
        return np.ascontiguousarray(chans)
    return np.ascontiguousarray(chans.T.reshape(1, -1))


def encode_audio(mono: np.ndarray, sample_rate: int, ext: str) -> bytes:
    """Encode a mono float32 waveform in [-1, 1] to the codec of ``ext`` and return the file's bytes.

    Raises:
        ConfigError: ``ext`` is not one of :data:`CODECS`, or the waveform is empty.
    """
    import av

    spec = codec_spec(ext)
    if mono.ndim != 1 or mono.size == 0:
        raise ConfigError(f"encode_audio needs a non-empty mono waveform, got shape {mono.shape}")
    layout = "mono" if spec.channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=spec.container) as container:
        stream: Any = container.add_stream(spec.codec, rate=sample_rate, layout=layout)
        cc = stream.codec_context
        cc.format = spec.sample_format
        if spec.bit_rate:
            cc.bit_rate = spec.bit_rate
        for key, value in spec.options:
            cc.options = {**cc.options, key: value}
        block = 4096
        for start in range(0, mono.size, block):
            arr = _to_frame_array(mono[start : start + block], spec)
            frame = av.AudioFrame.from_ndarray(arr, format=spec.sample_format, layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def decode_mono(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an encoded file's bytes to a mono float32 waveform (channel mean) and its sample rate.

    Channels are averaged rather than down-mixed with FFmpeg's matrix, which would make a stereo file whose two
    channels are identical 3 dB louder than the mono original.
    """
    import av

    chunks: list[np.ndarray] = []
    rate = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        for frame in container.decode(stream):
            rate = frame.sample_rate
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0))
    if not chunks:
        return np.zeros(0, dtype=np.float32), rate
    return np.concatenate(chunks).astype(np.float32), rate
