"""Short audio previews of the catalogue for the web page: ``previews/<name>.ogg`` (Ogg/Opus) + ``previews.json``.

For each embedded track (``embeddings/track_ids.json``) the preview is cut from the original pulled file
(``audio_cache/``, by the path ``pull_report.json`` records) when it decodes, else from ``audio_wav/<track>.wav``
(mono at the model's rate, so band-limited, but always there after standardize-audio):

1. the window: ``duration_sec`` from the middle of the track (the whole track when it is shorter). PyAV seeks
   to the keyframe a second before the window's start and decoded frames are placed on the timeline by their
   pts, so a long track costs the window, not the track (a seek that lands after the start is redone as a
   decode from the beginning); when the container's duration is missing or wrong (the seek
   finds fewer samples than promised) the decoded samples are counted first and the window cut from a plain
   decode from the start;
2. PyAV's resampler (FFmpeg swresample) brings the stream to 48 kHz planar float; the channels are averaged, as
   :func:`research_job.io.audio.decode_audio` does (swresample's own downmix scales stereo by 1/sqrt(2) per
   channel, which clips in-phase material);
3. half-cosine fades in and out (``fade_ms``) so the excerpt neither starts nor stops with a click;
4. libopus in an Ogg container at ``bitrate_kbps`` (constrained VBR by default: the size stays close to
   bitrate x duration), bit-exact container flags so the same samples give the same bytes;
5. the bytes are written atomically (``.tmp`` + fsync + rename) and their size and sha256 recorded.

Mono, not stereo: the embeddings are computed from mono, so mono is what "sounds like" refers to; at 48 kbps
one Opus channel gets the whole budget (libopus wants about 64 kbps or more for full-band stereo music), so a
stereo preview would be twice the bytes for the same quality or worse quality for the same bytes; the page
plays the excerpts on laptop and phone speakers. The cost is the mean's downmix (out-of-phase content cancels).

File names: the track id itself when it is a plain ASCII file name (``[A-Za-z0-9._-]``, at most 200
characters, not starting with a dot, so not hidden and never ``.`` or ``..``), else ``<the id's safe
characters, at most 64>-<sha256 hex of the id>.ogg``: stable across runs and machines, always matching
``^[A-Za-z0-9._-]{1,200}\\.ogg$``. Two ids whose names coincide (including by case, which a case-insensitive
file system would merge) are not both written: the later one is recorded as failed, naming the other.

A rerun reuses every preview whose file still has the recorded size and sha256 and whose parameters are the
same; a track whose audio cannot be read is recorded in ``failed`` with its reason and the others go on.
Cost: see :mod:`research_job.steps.previews`.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm

from research_job.errors import ArtifactError, AudioDecodeError, ConfigError, SchemaValidationError
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout, artifact_version
from research_job.provenance import code_version, sha256_bytes, sha256_file, utc_now
from research_job.schema import read_artifact, write_artifact

log = logging.getLogger(__name__)

#: what a preview is (the schema's constants)
CODEC, CONTAINER, MIME_TYPE, ENCODER = "opus", "ogg", "audio/ogg", "libopus"
#: Opus always decodes at 48 kHz; mono (see the module docstring)
SAMPLE_RATE, CHANNELS = 48000, 1
#: libopus's VBR modes
VBR_MODES = ("constrained", "on", "off")
#: libopus's bitrate range, kbps
MIN_KBPS, MAX_KBPS = 6, 510
#: longest preview the step makes
MAX_DURATION_SEC = 120.0
#: largest preview file the schema (and the Node API) accepts
MAX_BYTES = 4 * 1024 * 1024
#: the rule every preview file name follows (the schema's ``file`` pattern, without ``previews/``)
NAME_PATTERN = re.compile(r"^(?!\.)[A-Za-z0-9._-]{1,200}\.ogg$")
_VERBATIM_ID = re.compile(r"^(?!\.)[A-Za-z0-9._-]{1,200}$")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
#: ASCII characters of the id kept, readable, in front of the hash
_HASHED_PREFIX_CHARS = 64
#: seconds before the window's start that a seek aims at (demuxers may land a little after the target)
SEEK_PREROLL_SEC = 1.0
#: params that do not change the bytes of a preview (not compared when deciding to reuse one)
_RUN_ONLY_PARAMS = ("workers",)


@dataclass(frozen=True)
class PreviewOptions:
    """How previews are cut and encoded (recorded as ``params`` in previews.json)."""

    duration_sec: float = 20.0
    bitrate_kbps: int = 48
    fade_ms: float = 50.0
    vbr: str = "constrained"
    workers: int = 2

    def check(self) -> None:
        """Refuse values libopus or the schema would refuse, before anything is read.

        Raises:
            ConfigError: naming the bad value and the valid range.
        """
        if not 0 < self.duration_sec <= MAX_DURATION_SEC:
            raise ConfigError(
                f"Bad duration_sec {self.duration_sec}: must be > 0 and <= {MAX_DURATION_SEC:g}"
            )
        if not MIN_KBPS <= self.bitrate_kbps <= MAX_KBPS:
            raise ConfigError(f"Bad bitrate_kbps {self.bitrate_kbps}: Opus takes {MIN_KBPS}..{MAX_KBPS} kbps")
        if not 0 <= self.fade_ms <= 1000 * self.duration_sec / 2:
            raise ConfigError(f"Bad fade_ms {self.fade_ms}: must be >= 0 and at most half the duration")
        if self.vbr not in VBR_MODES:
            raise ConfigError(f"Unknown vbr mode {self.vbr!r}. Known: {', '.join(VBR_MODES)}")
        if self.workers < 1:
            raise ConfigError(f"previews needs workers >= 1, got {self.workers}")
        # 10 % over the nominal rate covers VBR peaks and Ogg pages
        if self.bitrate_kbps * 1000 / 8 * self.duration_sec * 1.1 > MAX_BYTES:
            raise ConfigError(
                f"bitrate_kbps {self.bitrate_kbps} x duration_sec {self.duration_sec:g} makes previews larger "
                f"than {MAX_BYTES} bytes (the schema's limit); lower one of them"
            )

    def params(self) -> dict[str, Any]:
        """The ``params`` object of previews.json."""
        return {
            "duration_sec": float(self.duration_sec),
            "bitrate_kbps": int(self.bitrate_kbps),
            "sample_rate": SAMPLE_RATE,
            "channels": CHANNELS,
            "fade_ms": float(self.fade_ms),
            "vbr": self.vbr,
            "encoder": ENCODER,
            "cut": "middle",
            "downmix": "mean",
            "sources": ["audio_cache", "audio_wav"],
            "workers": int(self.workers),
        }


def check_encoder() -> None:
    """Refuse to start when this PyAV build has no libopus encoder (every preview would fail).

    Raises:
        ConfigError: naming the encoder.
    """
    import av

    try:
        av.codec.Codec(ENCODER, "w")
    except Exception as e:  # noqa: BLE001 - PyAV raises UnknownCodecError or ValueError by version
        raise ConfigError(f"This PyAV build has no {ENCODER} encoder ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- names


def preview_name(track_id: str) -> str:
    """The file name of a track's preview (see the module docstring): ``<id>.ogg`` or ``<prefix>-<sha256>.ogg``."""
    if _VERBATIM_ID.match(track_id):
        return track_id + ".ogg"
    prefix = _UNSAFE_RUN.sub("_", track_id)[:_HASHED_PREFIX_CHARS].strip("._-") or "track"
    return f"{prefix}-{sha256_bytes(track_id.encode('utf-8'))}.ogg"


def preview_rel(layout: ArtifactLayout, track_id: str) -> str:
    """``previews/<name>.ogg``: the ``file`` of a track in previews.json (relative to the version folder)."""
    return layout.rel(layout.previews_dir / preview_name(track_id))


# ---------------------------------------------------------------- decoding the window


@dataclass(frozen=True)
class Excerpt:
    """Mono float32 samples at :data:`SAMPLE_RATE` and where they lie in the source."""

    samples: np.ndarray
    start_sec: float
    source_sec: float

    @property
    def duration_sec(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def middle_window(total_sec: float, duration_sec: float) -> tuple[float, float]:
    """(start, length) in seconds of ``duration_sec`` from the middle of ``total_sec`` (all of it when shorter)."""
    length = min(duration_sec, total_sec)
    return max(0.0, (total_sec - length) / 2), length


def _decode_span(path: Path, start_sec: float, length_sec: float, *, seek: bool) -> tuple[np.ndarray, float]:
    """Samples [start, start + length) of the file's first audio stream, mono at 48 kHz, and the start found.

    With ``seek`` the decoder jumps to the keyframe before ``start``; decoded frames are placed by their pts.
    """
    import av

    first = round(start_sec * SAMPLE_RATE)
    stop = first + round(length_sec * SAMPLE_RATE)
    kept: list[tuple[int, np.ndarray]] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        resampler = av.AudioResampler(format="fltp", layout=ctx.layout.name, rate=SAMPLE_RATE)
        if seek and start_sec > 0 and stream.time_base is not None:
            target = max(0.0, start_sec - SEEK_PREROLL_SEC)
            container.seek(int(target / stream.time_base), stream=stream)
        pos: int | None = None if seek else 0
        for frame in container.decode(stream):
            if pos is None:
                if frame.pts is None or frame.time_base is None:
                    raise AudioDecodeError(f"{path}: frames without timestamps after a seek")
                pos = round(float(frame.pts * frame.time_base) * SAMPLE_RATE)
            pos = _keep(resampler.resample(frame), pos, first, stop, kept)
            if pos >= stop:
                break
        if pos is not None and pos < stop:
            _keep(resampler.resample(None), pos, first, stop, kept)
    x = np.concatenate([k for _, k in kept]) if kept else np.zeros(0, np.float32)
    return x, (kept[0][0] if kept else first) / SAMPLE_RATE


def _keep(frames: list[Any], pos: int, first: int, stop: int, kept: list[tuple[int, np.ndarray]]) -> int:
    """Append the part of ``frames`` (starting at sample ``pos``) inside [first, stop), channel mean; return the
    position after them."""
    for fr in frames:
        a = fr.to_ndarray()  # (channels, samples) float32
        n = a.shape[1]
        lo, hi = max(first, pos), min(stop, pos + n)
        if hi > lo:
            part = a[:, lo - pos : hi - pos]
            kept.append((lo, part.mean(axis=0, dtype=np.float32) if a.shape[0] > 1 else part[0].copy()))
        pos += n
    return pos


def _decoded_duration(path: Path) -> float:
    """Seconds of audio the file really decodes to (a full decode; for files whose header cannot be trusted)."""
    import av

    n, rate = 0, 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            n += frame.samples
            rate = frame.sample_rate or rate
    return n / rate if rate else 0.0


def _header_duration(path: Path) -> float | None:
    """The stream's (else the container's) duration in seconds, or None; raises on no audio stream."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise AudioDecodeError(f"No audio stream in {path}")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if int(ctx.sample_rate) <= 0 or int(ctx.channels) <= 0:
            raise AudioDecodeError(
                f"Audio stream of {path} has sample rate {ctx.sample_rate}, {ctx.channels} channels"
            )
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            return float(stream.duration * stream.time_base)
        if container.duration is not None and container.duration > 0:
            return container.duration / av.time_base
    return None


def read_excerpt(path: str | Path, duration_sec: float) -> Excerpt:
    """``duration_sec`` (or the whole track when shorter) from the middle of an audio file, mono at 48 kHz.

    Raises:
        AudioDecodeError: naming the file: missing, empty, not decodable, no audio stream, no samples, or
            non-finite samples.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"Audio file not found: {p}")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"Audio file is empty (0 bytes): {p}")
    try:
        total = _header_duration(p)
        x = np.zeros(0, np.float32)
        start = 0.0
        if total is not None:
            start, length = middle_window(total, duration_sec)
            want = start
            x, start = _decode_span(p, start, length, seek=True)
            if start > want + 0.001:  # the seek landed after the window's start: decode from the beginning
                x, start = _decode_span(p, want, length, seek=False)
            # half the promised samples or fewer: the header's duration (or the seek) is not to be trusted
            if len(x) < 0.5 * length * SAMPLE_RATE:
                total = None
        if total is None:
            total = _decoded_duration(p)
            start, length = middle_window(total, duration_sec)
            x, start = _decode_span(p, start, length, seek=False)
    except AudioDecodeError:
        raise
    except Exception as e:  # PyAV raises many FFmpegError subclasses, plus ValueError/OSError on odd input
        raise AudioDecodeError(f"Cannot decode audio file {p}: {type(e).__name__}: {e}") from None
    if x.size == 0:
        raise AudioDecodeError(f"Audio file {p} decodes to zero samples")
    if not np.all(np.isfinite(x)):
        raise AudioDecodeError(f"Audio file {p} decodes to non-finite samples")
    return Excerpt(samples=np.ascontiguousarray(x, np.float32), start_sec=start, source_sec=float(total))


# ---------------------------------------------------------------- encoding


def apply_fades(x: np.ndarray, fade_ms: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A copy of ``x`` with half-cosine fades of ``fade_ms`` in and out (each at most half of ``x``)."""
    y = np.array(x, dtype=np.float32, copy=True)
    n = min(round(fade_ms * sample_rate / 1000), len(y) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        y[:n] *= ramp
        y[len(y) - n :] *= ramp[::-1]
    return y


def encode_opus(x: np.ndarray, bitrate_kbps: int, vbr: str = "constrained") -> bytes:
    """Mono float32 samples at 48 kHz -> the bytes of an Ogg/Opus file (libopus, bit-exact container flags).

    Raises:
        ValueError: ``x`` is not 1-D or empty.
    """
    import av

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"encode_opus needs a non-empty 1-D waveform, got shape {x.shape}")
    buf = io.BytesIO()
    with av.open(buf, "w", format=CONTAINER, container_options={"fflags": "+bitexact"}) as out:
        stream = cast("av.AudioStream", out.add_stream(ENCODER, rate=SAMPLE_RATE))
        ctx = stream.codec_context
        ctx.layout = "mono"
        ctx.format = "flt"
        ctx.bit_rate = int(bitrate_kbps) * 1000
        ctx.options = {"vbr": vbr, "application": "audio"}
        block = 48000
        for at in range(0, x.size, block):
            frame = av.AudioFrame.from_ndarray(x[None, at : at + block], format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = at
            frame.time_base = Fraction(1, SAMPLE_RATE)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# ---------------------------------------------------------------- one track, the folder


def original_paths(layout: ArtifactLayout) -> dict[str, Path]:
    """Track id -> pulled file, from ``audio_cache/pull_report.json`` (empty when there is none or it is invalid).

    A recorded path that leaves ``audio_cache/`` is ignored (the preview then comes from the WAV).
    """
    if not layout.pull_report.is_file():
        return {}
    try:
        report = read_artifact(layout.pull_report, "pull_report")
    except SchemaValidationError as e:
        log.warning("previews: ignoring %s: %s", layout.pull_report, e)
        return {}
    cache = layout.audio_cache_dir.resolve()
    out: dict[str, Path] = {}
    for t in report["tracks"]:
        if t["path"] is None:
            continue
        p = (layout.version_dir / t["path"]).resolve()
        if p.is_relative_to(cache):
            out[t["track_id"]] = p
        else:
            log.warning("previews: ignoring the path %r of %r: outside %s", t["path"], t["track_id"], cache)
    return out


def _excerpt_of(layout: ArtifactLayout, track_id: str, original: Path | None, duration_sec: float) -> Excerpt:
    """The excerpt from the original file, else from the standardised WAV; raises naming both reasons."""
    reasons = []
    for src in (original, layout.wav(track_id)):
        if src is None:
            reasons.append("not pulled (no path in audio_cache/pull_report.json)")
            continue
        try:
            return read_excerpt(src, duration_sec)
        except AudioDecodeError as e:
            reasons.append(str(e))
        except OSError as e:
            reasons.append(f"{src}: {type(e).__name__}: {e}")
    raise AudioDecodeError("; ".join(reasons))


def make_preview(
    layout: ArtifactLayout, track_id: str, original: Path | None, opts: PreviewOptions
) -> dict[str, Any]:
    """Cut, encode and write one track's preview; return its previews.json entry.

    Raises:
        AudioDecodeError: neither the original nor the WAV decodes, or the preview would be too large.
    """
    ex = _excerpt_of(layout, track_id, original, opts.duration_sec)
    data = encode_opus(apply_fades(ex.samples, opts.fade_ms), opts.bitrate_kbps, opts.vbr)
    if len(data) > MAX_BYTES:
        raise AudioDecodeError(
            f"the preview of {track_id!r} is {len(data)} bytes, over the {MAX_BYTES} allowed"
        )
    rel = preview_rel(layout, track_id)
    write_bytes(layout.version_dir / rel, data)
    return {
        "track_id": track_id,
        "file": rel,
        "start_sec": round(ex.start_sec, 6),
        "duration_sec": round(ex.duration_sec, 6),
        "size_bytes": len(data),
        "sha256": sha256_bytes(data),
    }


def _same_bytes_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def strip(p: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p.items() if k not in _RUN_ONLY_PARAMS}

    return strip(a) == strip(b)


def reusable_entries(layout: ArtifactLayout, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The previous run's entries whose file is still what it recorded (size, sha256, name), when its params
    match ``params``; empty when there is no (valid) previews.json."""
    path = layout.previews_json
    if not path.is_file():
        return {}
    try:
        previous = read_artifact(path, "previews")
    except SchemaValidationError as e:
        log.warning("previews: not reusing anything: %s", e)
        return {}
    if not _same_bytes_params(previous["params"], params):
        log.info("previews: parameters changed since the last run: encoding every track again")
        return {}
    out = {}
    for t in previous["tracks"]:
        f = layout.version_dir / t["file"]
        if t["file"] != preview_rel(layout, t["track_id"]) or f.is_symlink() or not f.is_file():
            continue
        if f.stat().st_size == t["size_bytes"] and sha256_file(f) == t["sha256"]:
            out[t["track_id"]] = t
    return out


def assign_names(track_ids: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(ids that get a file, {id: reason} for those whose name another id already took, case folded)."""
    taken: dict[str, str] = {}
    ok: list[str] = []
    clash: dict[str, str] = {}
    for tid in track_ids:
        key = preview_name(tid).lower()
        if key in taken:
            clash[tid] = f"preview file name {preview_name(tid)!r} is already that of track {taken[key]!r}"
        else:
            taken[key] = tid
            ok.append(tid)
    return ok, clash


def remove_orphans(layout: ArtifactLayout, keep: set[str]) -> list[str]:
    """Delete the ``previews/*.ogg`` files previews.json does not name (old runs, tracks that now fail)."""
    removed: list[str] = []
    folder = layout.previews_dir
    if not folder.is_dir():
        return removed
    for f in sorted(folder.iterdir()):
        if f.suffix == ".ogg" and f.name not in keep and (f.is_file() or f.is_symlink()):
            f.unlink()
            removed.append(f.name)
    return removed


def read_embedded(layout: ArtifactLayout) -> tuple[list[str], str]:
    """(the embedded tracks, the ones the API serves, in row order; the embeddings' artifact version).

    Raises:
        ArtifactError: no ``track_ids.json`` or ``embeddings_meta.json``; SchemaValidationError: one is invalid.
    """
    for path in (layout.track_ids_json, layout.embeddings_meta):
        if not path.is_file():
            raise ArtifactError(f"previews needs {path} (the tracks the API serves); run embed first")
    ids = list(read_artifact(layout.track_ids_json, "track_ids")["track_ids"])
    meta = read_artifact(layout.embeddings_meta, "embeddings_meta")
    return ids, artifact_version(layout, meta["model"]["name"])


def build_previews(layout: ArtifactLayout, opts: PreviewOptions) -> dict[str, Any]:
    """Write (or reuse) the preview of every embedded track and ``previews/previews.json``; return the latter.

    Raises:
        ConfigError: bad options; ArtifactError: no track_ids.json or embeddings_meta.json;
        SchemaValidationError: one of them is invalid.
    """
    opts.check()
    ids, version = read_embedded(layout)
    params = opts.params()
    originals = original_paths(layout)
    reuse = reusable_entries(layout, params)
    named, clashes = assign_names(ids)
    t0 = time.perf_counter()
    entries: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = dict(clashes)
    reused: set[str] = set()
    todo = []
    for tid in named:
        if tid in reuse:
            entries[tid] = reuse[tid]
            reused.add(tid)
        else:
            todo.append(tid)

    def one(tid: str) -> tuple[str, dict[str, Any] | None, str | None]:
        try:
            return tid, make_preview(layout, tid, originals.get(tid), opts), None
        except AudioDecodeError as e:
            return tid, None, str(e)
        except OSError as e:  # the file system refuses this track's file: this track's problem, not the run's
            return tid, None, f"{type(e).__name__}: {e}"

    with (
        ThreadPoolExecutor(max_workers=opts.workers) as pool,
        tqdm(total=len(todo), desc="previews", unit="track", disable=None) as bar,
    ):
        for fut in as_completed([pool.submit(one, tid) for tid in todo]):
            tid, entry, reason = fut.result()
            if entry is not None:
                entries[tid] = entry
            else:
                failed[tid] = str(reason)
                log.warning("previews: %s failed: %s", tid, reason)
            bar.update(1)
    tracks = [entries[t] for t in ids if t in entries]
    out: dict[str, Any] = {
        "schema_version": "1.0",
        "artifact_version": version,
        "code_version": code_version(),
        "created_at": utc_now(),
        "codec": CODEC,
        "container": CONTAINER,
        "mime_type": MIME_TYPE,
        "bitrate_kbps": int(opts.bitrate_kbps),
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "target_duration_sec": float(opts.duration_sec),
        "params": params,
        "counts": {
            "tracks": len(ids),
            "written": len(tracks) - len(reused),
            "reused": len(reused),
            "failed": len(failed),
        },
        "tracks": tracks,
        "failed": [{"track_id": t, "reason": failed[t]} for t in ids if t in failed],
    }
    layout.previews_dir.mkdir(parents=True, exist_ok=True)
    write_artifact(layout.previews_json, "previews", out)
    removed = remove_orphans(layout, {Path(t["file"]).name for t in tracks})
    log.info(
        "previews: %d written, %d reused, %d failed, %d old files removed, %.1f MB in %.2fs",
        out["counts"]["written"],
        out["counts"]["reused"],
        out["counts"]["failed"],
        len(removed),
        sum(t["size_bytes"] for t in tracks) / 1e6,
        time.perf_counter() - t0,
    )
    return out


def total_bytes(report: dict[str, Any]) -> int:
    """Bytes of the preview files previews.json lists."""
    return int(sum(t["size_bytes"] for t in report["tracks"]))
