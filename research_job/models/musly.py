"""Musly, the classic music-similarity baseline: a track-to-track distance matrix, not vectors.

Musly (libmusly through the ``pymusly`` binding, MIREX's audio-similarity reference) models each track as one
Gaussian over its MFCC frames and compares two tracks with a divergence between their Gaussians:

* ``timbre`` (default): 25 MFCCs, Jensen-Shannon-like divergence, then Musly's mutual-proximity normalisation
  (each registered track's divergences to the *style* tracks give the normalisation, so distances lie in [0, 1]);
* ``mandelellis``: the basic Mandel & Ellis measure (symmetrised Kullback-Leibler), no normalisation.

Pipeline of :func:`compute_distances`, as Musly's documentation asks: decode every track with the project's own
decoder (:func:`research_job.io.audio.load_track_audio`, 22.05 kHz mono, so every codec goes through PyAV like
the other models) -> analyse each into a Musly track -> set the jukebox's music style from a seeded random sample
of at most 1000 analysed tracks -> register every track -> one similarity call per track against all tracks ->
the full N x N matrix (row i = query track i). Musly's analysis and similarity are deterministic; the only
choice, the style sample, is drawn with the seed. A track that cannot be decoded, is silent, or that Musly cannot
analyse (too short, non-finite model) is reported and left out; it never fails the run, and it never reaches
the style sample, where one degenerate Gaussian would spoil every normalised distance.

Timing: the binding takes each waveform as a Python sequence of floats, so under ``tracemalloc`` (compare-models
``--no-isolate``, which traces every allocation for its peak-memory figure) the analysis runs about 15x slower
than in an isolated child; the distances are the same bytes either way.

Spec: ``musly[?method=timbre|mandelellis][&excerpt_sec=S][&style_tracks=N][&seed=N]``; ``excerpt_sec`` > 0
analyses the centred S-second excerpt of each track (0, the default, the whole track like the embeddings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from research_job.embeddings import wave_problem
from research_job.errors import ArtifactError, AudioDecodeError, ModelError, unknown_choice
from research_job.io.audio import load_track_audio
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow

LOG = logging.getLogger(__name__)

NAME = "musly"
PACKAGE = "pymusly"
PIN = "pymusly==2.0.0"
SAMPLE_RATE = 22050
METHODS = ("timbre", "mandelellis")
#: the normalisation each method's jukebox applies (timbre: mutual proximity; mandelellis: raw divergence)
NORMALIZATION = {"timbre": "mutual_proximity", "mandelellis": "none"}
#: Musly's rule of thumb: at most 1000 randomly chosen tracks set the music style
MAX_STYLE_TRACKS = 1000
OPTIONS: dict[str, tuple[str, ...] | None] = {
    "method": METHODS,
    "excerpt_sec": None,
    "style_tracks": None,
    "seed": None,
}
#: the shortest waveform Musly is asked to analyse (it refuses a few frames' worth)
MIN_SECONDS = 1.0


@dataclass(frozen=True)
class MuslyParams:
    """The parameters of one Musly run (all recorded in ``similarity_meta.json``)."""

    method: str = "timbre"
    excerpt_sec: float = 0.0
    style_tracks: int = MAX_STYLE_TRACKS
    seed: int = 0


@dataclass
class MuslyResult:
    """The distance matrix over the tracks that succeeded, in metadata order, and what happened."""

    distances: np.ndarray  # float32 [n, n]
    track_ids: list[str]
    failures: list[dict[str, str]]
    backend: dict[str, Any]
    stats: dict[str, Any]
    style_track_ids: list[str] = field(default_factory=list)


def is_musly(spec: str) -> bool:
    """Whether an entry spec names Musly (``musly`` or ``musly?...``)."""
    return spec.strip().partition("?")[0] == NAME


def parse_spec(spec: str) -> MuslyParams:
    """The parameters of a ``musly[?key=value&...]`` spec; nothing is imported.

    Raises:
        ModelError: not a Musly spec, an unknown option (listing the known ones) or a bad value.
    """
    from research_job.models.registry import split_options

    name, opts = split_options(spec.strip())
    if name != NAME:
        raise ModelError(f"{spec!r} is not a Musly spec (expected musly[?method=...])")
    for key in opts:
        if key not in OPTIONS:
            raise ModelError(unknown_choice(f"option for {NAME}", key, OPTIONS))
    method = opts.get("method", "timbre")
    if method not in METHODS:
        raise ModelError(unknown_choice(f"value of {NAME} option 'method'", method, METHODS))
    try:
        excerpt = float(opts.get("excerpt_sec", 0.0))
        style = int(opts.get("style_tracks", MAX_STYLE_TRACKS))
        seed = int(opts.get("seed", 0))
    except ValueError as e:
        raise ModelError(f"Bad number in {spec!r}: {e}") from None
    if not np.isfinite(excerpt) or excerpt < 0 or (0 < excerpt < MIN_SECONDS):
        raise ModelError(
            f"excerpt_sec must be 0 (whole track) or >= {MIN_SECONDS:g}, got {excerpt:g} in {spec!r}"
        )
    if not 2 <= style <= MAX_STYLE_TRACKS:
        raise ModelError(f"style_tracks must be in 2..{MAX_STYLE_TRACKS}, got {style} in {spec!r}")
    return MuslyParams(method, excerpt, style, seed)


def check_spec(spec: str) -> str:
    """Return ``spec`` when it is a valid Musly spec (nothing imported). Raises: ModelError."""
    parse_spec(spec)
    return spec


def import_pymusly() -> Any:
    """The ``pymusly`` module.

    Raises:
        ModelError: it cannot be imported, naming the package and how to install it.
    """
    try:
        import pymusly
    except ImportError as e:
        raise ModelError(
            f"Musly needs the Python package '{PACKAGE}' (it bundles libmusly), which cannot be imported "
            f"({type(e).__name__}: {e}); install it with: .venv/bin/pip install {PIN}"
        ) from None
    return pymusly


def _excerpt(wav: np.ndarray, seconds: float) -> np.ndarray:
    """The centred ``seconds`` of ``wav`` (all of it when shorter, or when ``seconds`` is 0)."""
    n = int(round(seconds * SAMPLE_RATE))
    if n <= 0 or wav.size <= n:
        return wav
    start = (wav.size - n) // 2
    return wav[start : start + n]


def _model_is_finite(jukebox: Any, track: Any) -> bool:
    """Whether a Musly track model holds only finite numbers.

    libmusly serialises a track as its float32 values in network (big-endian) byte order.
    """
    raw = np.frombuffer(jukebox.serialize_track(track), dtype=">f4")
    return bool(raw.size) and bool(np.all(np.isfinite(raw)))


@dataclass
class _Analysed:
    tracks: list[Any] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    audio_sec: float = 0.0
    decode_sec: float = 0.0
    analysis_sec: float = 0.0


def _analyse_tracks(
    jukebox: Any,
    pymusly: Any,
    layout: ArtifactLayout,
    rows: Sequence[TrackRow],
    params: MuslyParams,
    load: Callable[[ArtifactLayout, TrackRow, int], np.ndarray],
) -> _Analysed:
    """Decode and analyse every track; each failure is recorded with its stage and the run goes on."""
    out = _Analysed()
    for row in tqdm(rows, desc="musly", unit="track", disable=None):
        t0 = time.perf_counter()
        try:
            wav = _excerpt(np.asarray(load(layout, row, SAMPLE_RATE), dtype=np.float32), params.excerpt_sec)
        except AudioDecodeError as e:
            out.failures.append({"track_id": row.track_id, "stage": "decode", "reason": str(e)})
            continue
        finally:
            out.decode_sec += time.perf_counter() - t0
        why = wave_problem(wav)
        if why is None and wav.size < MIN_SECONDS * SAMPLE_RATE:
            why = f"too short for Musly ({wav.size / SAMPLE_RATE:.2f} s < {MIN_SECONDS:g} s)"
        if why is not None:
            out.failures.append({"track_id": row.track_id, "stage": "validate", "reason": why})
            continue
        t0 = time.perf_counter()
        try:
            track = jukebox.track_from_audiodata(wav.tolist())
            if not _model_is_finite(jukebox, track):
                raise pymusly.MuslyError("the track model holds NaN or inf values")
        except pymusly.MuslyError as e:
            out.failures.append({"track_id": row.track_id, "stage": "analyse", "reason": f"Musly: {e}"})
            continue
        finally:
            out.analysis_sec += time.perf_counter() - t0
        out.tracks.append(track)
        out.ids.append(row.track_id)
        out.audio_sec += wav.size / SAMPLE_RATE
    return out


def _style_sample(n: int, params: MuslyParams) -> np.ndarray:
    """Rows of the tracks that set the music style: all, or a seeded random sample of ``style_tracks``."""
    if n <= params.style_tracks:
        return np.arange(n)
    return np.sort(np.random.default_rng(params.seed).choice(n, size=params.style_tracks, replace=False))


def _distance_matrix(jukebox: Any, tracks: list[Any], style: np.ndarray) -> np.ndarray:
    """Set the style, register every track (id = its row), and ask Musly for every row of distances."""
    jukebox.set_style([tracks[i] for i in style])
    pairs = list(enumerate(tracks))
    jukebox.add_tracks(pairs)
    out = np.empty((len(tracks), len(tracks)), dtype=np.float32)
    for i, pair in enumerate(pairs):
        out[i] = jukebox.compute_similarity(pair, pairs)
    return out


def compute_distances(
    layout: ArtifactLayout,
    rows: Sequence[TrackRow],
    spec: str = NAME,
    *,
    load: Callable[[ArtifactLayout, TrackRow, int], np.ndarray] = load_track_audio,
) -> MuslyResult:
    """Musly's distance matrix over the tracks of ``rows`` (their audio in ``layout``), failures left out.

    Args:
        spec: ``musly[?method=...&excerpt_sec=...&style_tracks=...&seed=...]``.
        load: the waveform loader (the project's decoder; tests may pass another).

    Raises:
        ModelError: bad spec, pymusly missing, or the jukebox cannot be made; ArtifactError: fewer than two
            tracks could be analysed (every failure is named), or Musly returned non-finite distances.
    """

    params = parse_spec(spec)
    pymusly = import_pymusly()
    t_start = time.perf_counter()
    try:
        jukebox = pymusly.MuslyJukebox(method=params.method)
    except pymusly.MuslyError as e:
        raise ModelError(f"Musly cannot make a {params.method!r} jukebox: {e}") from None
    done = _analyse_tracks(jukebox, pymusly, layout, rows, params, load)
    LOG.info(
        "musly: %d tracks analysed, %d failed (decode %.1f s, analysis %.1f s)",
        len(done.ids),
        len(done.failures),
        done.decode_sec,
        done.analysis_sec,
    )
    if len(done.ids) < 2:
        reasons = "; ".join(f"{f['track_id']}: {f['reason']}" for f in done.failures[:3])
        raise ArtifactError(f"Musly analysed {len(done.ids)} of {len(rows)} tracks, needs 2 ({reasons})")
    t0 = time.perf_counter()
    style = _style_sample(len(done.ids), params)
    try:
        distances = _distance_matrix(jukebox, done.tracks, style)
    except pymusly.MuslyError as e:
        raise ModelError(f"Musly failed to compute the distances: {e}") from None
    matrix_sec = time.perf_counter() - t0
    bad = np.nonzero(~np.isfinite(distances).all(axis=1))[0]
    if bad.size:
        raise ArtifactError(
            f"Musly returned non-finite distances for {bad.size} tracks, e.g. {[done.ids[i] for i in bad[:3]]}"
        )
    LOG.info("musly: %d x %d distances in %.1f s", len(done.ids), len(done.ids), matrix_sec)
    wall = time.perf_counter() - t_start
    return MuslyResult(
        distances=distances,
        track_ids=done.ids,
        failures=done.failures,
        backend={
            "name": NAME,
            "version": str(pymusly.get_musly_version()),
            "binding": f"{PACKAGE} {pymusly.__version__}",
            "method": str(jukebox.method),
            "description": " ".join(str(jukebox.method_info).split()),
            "normalization": NORMALIZATION[params.method],
            "sample_rate": SAMPLE_RATE,
            "params": {**asdict(params), "n_style_tracks": int(style.size), "decoder": "research_job PyAV"},
        },
        stats={
            "n_input_tracks": len(rows),
            "n_tracks": len(done.ids),
            "n_failed": len(done.failures),
            "audio_sec": round(done.audio_sec, 3),
            "decode_sec": round(done.decode_sec, 4),
            "analysis_sec": round(done.analysis_sec, 4),
            "matrix_sec": round(matrix_sec, 4),
            "wall_sec": round(wall, 4),
            "x_realtime": round(done.audio_sec / wall, 3) if wall > 0 else None,
        },
        style_track_ids=[done.ids[i] for i in style],
    )
