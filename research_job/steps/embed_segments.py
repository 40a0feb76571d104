"""embed-segments: overlapping windows of every track -> ``embeddings/segments.f32`` + ``segments.csv`` + meta.

Each track (loaded like embed does, :func:`research_job.io.audio.load_track_audio`) is cut into
windows of ``window_sec`` every ``hop_sec``; a track shorter than one window gives one segment covering all of
it, and when the regular windows stop short of the end a last window ending at the end is added, so every
sample is covered. Each window is embedded alone with the same model as the track embeddings (the model recorded
in ``embeddings_meta.json`` must match when that file exists), then gets the track embeddings' recorded
post-processing (so segments, tracks and queries live in one space) and the L2 norm.

Silent windows and windows whose vector is non-finite or near zero are skipped and listed in ``skipped``; a
track that cannot be decoded is listed in ``failures``. Files (all written atomically):

``segments.f32``, ``segments.csv`` and ``segments_meta.json``
(see :mod:`research_job.segments`, which also reads them back). ``segments.csv`` is a machine contract (row i
of ``segments.f32``, its track id, its seconds; its sha256 is in the meta): track ids are written exactly as
they are, never formula-escaped for spreadsheets, or they would no longer match ``tracks_metadata.csv``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from research_job import schema
from research_job.config import CommonConfig, option
from research_job.embed_work import POSTPROCESS_REASON
from research_job.embeddings import apply_postprocess, check_vector, l2_normalize, wave_problem
from research_job.errors import ArtifactError, ConfigError, ResearchJobError
from research_job.io.atomic import write_bytes
from research_job.io.audio import load_track_audio
from research_job.layout import ArtifactLayout, artifact_version
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.models.base import Encoder
from research_job.provenance import code_version, sha256_bytes, utc_now
from research_job.segments import CSV_COLUMNS, segment_bounds
from research_job.steps import Step

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedSegmentsConfig:
    """embed-segments: windows of every track -> embeddings/segments.f32, segments.csv, segments_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    window_sec: float = option(30.0, "window length in seconds")
    hop_sec: float = option(15.0, "seconds between window starts (at most window_sec: no gaps)")
    batch_size: int = option(8, "windows per call of the model")
    device: str = option("cpu", "torch device of the model: cpu, cuda, cuda:N, mps or auto")


def check(cfg: EmbedSegmentsConfig) -> None:
    """Refuse windows that leave gaps or have no length, and a bad batch size.

    Raises:
        ConfigError: naming the bad value.
    """
    if not (cfg.window_sec > 0 and cfg.hop_sec > 0):
        raise ConfigError(f"window_sec and hop_sec must be > 0, got {cfg.window_sec} and {cfg.hop_sec}")
    if cfg.hop_sec > cfg.window_sec:
        raise ConfigError(
            f"hop_sec {cfg.hop_sec} > window_sec {cfg.window_sec} would leave gaps between windows"
        )
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")


def _check_model(layout: ArtifactLayout, encoder: Encoder) -> dict[str, Any] | None:
    """The track embeddings' meta when present (after checking it was made by the same model), else None."""
    from research_job.query import check_same_model, loaded_model, recorded_model

    if not layout.embeddings_meta.is_file():
        return None
    meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
    check_same_model(recorded_model(meta), loaded_model(encoder), layout.version_dir)
    return meta


@dataclass
class Windows:
    """The embedded windows so far: table rows ``(track_id, start_sec, end_sec)``, raw vectors, what was skipped."""

    sample_rate: int
    table: list[tuple[str, float, float]] = field(default_factory=list)
    vecs: list[np.ndarray] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    audio_sec: float = 0.0

    def skip(self, tid: str, start: float, end: float, reason: str) -> None:
        self.skipped.append(
            {"track_id": tid, "start_sec": round(start, 6), "end_sec": round(end, 6), "reason": reason}
        )


def _embed_windows(
    cfg: EmbedSegmentsConfig, layout: ArtifactLayout, rows: list[TrackRow], encoder: Encoder
) -> Windows:
    """Cut every track into windows and embed the audible ones, ``batch_size`` at a time."""
    sr = int(encoder.sample_rate)
    out = Windows(sr)
    pending: list[tuple[str, int, int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        vecs = np.asarray(encoder.embed([w for *_, w in pending]), dtype=np.float32)
        if vecs.shape != (len(pending), encoder.dim):
            raise ArtifactError(
                f"encoder returned shape {vecs.shape}, expected {(len(pending), encoder.dim)}"
            )
        for (tid, a, b, _), v in zip(pending, vecs, strict=True):
            why = check_vector(v)
            if why is not None:
                out.skip(tid, a / sr, b / sr, why)
            else:
                out.table.append((tid, a / sr, b / sr))
                out.vecs.append(v)
        pending.clear()

    for row in tqdm(rows, desc="embed-segments", unit="track", disable=None):
        try:
            wav = np.asarray(load_track_audio(layout, row, sr), dtype=np.float32)
        except ResearchJobError as e:
            out.failures.append({"track_id": row.track_id, "stage": "decode", "reason": str(e)})
            continue
        out.audio_sec += wav.size / sr
        for a, b in segment_bounds(wav.size, sr, cfg.window_sec, cfg.hop_sec):
            why = wave_problem(wav[a:b])
            if why is not None:
                out.skip(row.track_id, a / sr, b / sr, why)
                continue
            pending.append((row.track_id, a, b, wav[a:b]))
            if len(pending) >= cfg.batch_size:
                flush()
    flush()
    return out


def _normalised(
    layout: ArtifactLayout, win: Windows, track_meta: dict[str, Any] | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The windows' unit vectors with the track embeddings' recorded post-processing (dropping those it zeroes),
    and the ``postprocess`` object of the meta."""
    raw = np.stack(win.vecs)
    if track_meta is not None:
        vectors = apply_postprocess(raw, layout)
        pp = {"type": track_meta["postprocess"]["type"], "sha256": track_meta["postprocess"]["sha256"]}
    else:
        vectors = l2_normalize(raw)
        pp = {"type": "none", "sha256": None}
    keep = np.all(np.isfinite(vectors), axis=1)
    for (tid, t0, t1), k in zip(win.table, keep, strict=True):
        if not k:
            win.skip(tid, t0, t1, POSTPROCESS_REASON)
    win.table = [t for t, k in zip(win.table, keep, strict=True) if k]
    return vectors[keep], pp


def _write(
    cfg: EmbedSegmentsConfig,
    layout: ArtifactLayout,
    encoder: Encoder,
    win: Windows,
    vectors: np.ndarray,
    pp: dict[str, Any],
    n_tracks: int,
    wall: float,
    track_meta: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write ``segments.f32``, ``segments.csv`` and ``segments_meta.json`` (validated first, meta last), and point
    the track embeddings' meta at them."""
    data = np.ascontiguousarray(vectors, dtype="<f4").tobytes(order="C")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i, (tid, t0, t1) in enumerate(win.table):
        w.writerow([i, tid, f"{t0:.6f}", f"{t1:.6f}"])
    csv_bytes = buf.getvalue().encode("utf-8")
    info = encoder.info()
    meta: dict[str, Any] = {
        "schema_version": "1.0",
        "artifact_version": artifact_version(layout, encoder.name),
        "model": {
            "name": encoder.name,
            "version": str(info.get("version", "unknown")),
            "weights_sha256": info.get("weights_sha256"),
            "layer": info.get("layer"),
        },
        "dim": int(encoder.dim),
        "count": len(win.table),
        "sample_rate": win.sample_rate,
        "window_sec": float(cfg.window_sec),
        "hop_sec": float(cfg.hop_sec),
        "dtype": "float32",
        "byte_order": "little",
        "layout": "row-major",
        "normalization": "l2",
        "postprocess": pp,
        "files": {
            "segments": layout.segments_f32.name,
            "segments_sha256": sha256_bytes(data),
            "table": layout.segments_csv.name,
            "table_sha256": sha256_bytes(csv_bytes),
        },
        "n_tracks": n_tracks,
        "n_tracks_with_segments": len({t for t, _, _ in win.table}),
        "skipped": win.skipped,
        "failures": win.failures,
        "stats": {
            "audio_sec": round(win.audio_sec, 3),
            "wall_sec": round(wall, 3),
            "x_realtime": round(win.audio_sec / wall, 3) if wall > 0 else 0.0,
        },
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    schema.validate("segments_meta", meta, source=layout.segments_meta)
    write_bytes(layout.segments_f32, data)
    write_bytes(layout.segments_csv, csv_bytes)
    schema.write_artifact(layout.segments_meta, "segments_meta", meta)
    if track_meta is not None:
        # point the track embeddings' meta at the segments (the field its schema reserves for them)
        track_meta["segments"] = {
            "file": layout.segments_f32.name,
            "table": layout.segments_csv.name,
            "window_sec": float(cfg.window_sec),
            "hop_sec": float(cfg.hop_sec),
            "count": len(win.table),
            "sha256": meta["files"]["segments_sha256"],
        }
        schema.write_artifact(layout.embeddings_meta, "embeddings_meta", track_meta)
    return meta


def run(cfg: EmbedSegmentsConfig, *, encoder: Encoder | None = None) -> dict[str, Any]:
    """Embed the windows of every track of the metadata CSV and write the three segment files.

    Args:
        cfg: step config.
        encoder: an already loaded encoder (default: ``load_model(cfg.common.model)``).

    Returns:
        the ``segments_meta.json`` dict.

    Raises:
        ConfigError: bad window/hop/batch size; ModelError: the model differs from the track embeddings' one;
        ArtifactError: no tracks, or no segment could be embedded.
    """
    check(cfg)
    layout = cfg.common.layout
    t_start = time.perf_counter()
    rows = read_tracks_csv(layout.tracks_csv)
    if not rows:
        raise ArtifactError(f"{layout.tracks_csv} has no tracks")
    if encoder is None:
        from research_job.models.registry import load_model

        encoder = load_model(cfg.common.model, **({"device": cfg.device} if cfg.device != "cpu" else {}))
    track_meta = _check_model(layout, encoder)
    win = _embed_windows(cfg, layout, rows, encoder)
    if not win.vecs:
        raise ArtifactError(
            f"No segment of the {len(rows)} tracks could be embedded "
            f"({len(win.skipped)} skipped, {len(win.failures)} tracks failed)"
        )
    vectors, pp = _normalised(layout, win, track_meta)
    meta = _write(
        cfg, layout, encoder, win, vectors, pp, len(rows), time.perf_counter() - t_start, track_meta
    )
    LOG.info(
        "Embedded %d segments of %d tracks (%d skipped, %d tracks failed)",
        len(win.table),
        meta["n_tracks_with_segments"],
        len(win.skipped),
        len(win.failures),
    )
    return meta


def format_summary(meta: dict[str, Any]) -> str:
    """One line per fact of a finished run, for the terminal."""
    return (
        f"{meta['count']} segments ({meta['window_sec']:g} s windows, {meta['hop_sec']:g} s hop) of "
        f"{meta['n_tracks_with_segments']}/{meta['n_tracks']} tracks, dim {meta['dim']}, model "
        f"{meta['model']['name']}; skipped {len(meta['skipped'])} segments, {len(meta['failures'])} tracks failed"
    )


STEP = Step(
    name="embed_segments",
    config=EmbedSegmentsConfig,
    summary="Embed overlapping windows of every track: embeddings/segments.f32, segments.csv, segments_meta.json.",
    example="research-job embed-segments --window-sec 30 --hop-sec 15",
    run=run,
    check=check,
    show=lambda cfg, result: format_summary(result),
)
