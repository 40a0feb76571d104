"""embed-segments: overlapping windows of every track -> ``embeddings/segments.f32`` + ``segments.csv`` + meta.

Each track (loaded like embed does, :func:`research_job.steps.standardize_audio.load_track_audio`) is cut into
windows of ``window_sec`` every ``hop_sec``; a track shorter than one window gives one segment covering all of
it, and when the regular windows stop short of the end a last window ending at the end is added, so every
sample is covered. Each window is embedded alone with the same model as the track embeddings (the model recorded
in ``embeddings_meta.json`` must match when that file exists), then gets the track embeddings' recorded
post-processing (so segments, tracks and queries live in one space) and the L2 norm.

Silent windows and windows whose vector is non-finite or near zero are skipped and listed in ``skipped``; a
track that cannot be decoded is listed in ``failures``. Files (all written atomically):

``segments.f32``        row-major little-endian float32 [count, dim], unit rows
``segments.csv``        ``segment_row,track_id,start_sec,end_sec`` (row i of segments.f32 is segment_row i)
``segments_meta.json``  schema ``segments_meta``: model, dim, count, window/hop, sha256 of both files, ...
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
from research_job.config import CommonConfig
from research_job.errors import ArtifactError, ConfigError, ResearchJobError
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.models.base import Encoder, sha256_file

LOG = logging.getLogger(__name__)

SEGMENTS_F32 = "segments.f32"
SEGMENTS_CSV = "segments.csv"
SEGMENTS_META = "segments_meta.json"
CSV_COLUMNS = ("segment_row", "track_id", "start_sec", "end_sec")


@dataclass(frozen=True)
class EmbedSegmentsConfig:
    """embed-segments: windows of every track -> embeddings/segments.f32, segments.csv, segments_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    window_sec: float = 30.0
    hop_sec: float = 15.0
    batch_size: int = 8
    device: str = "cpu"


def segment_bounds(
    n_samples: int, sample_rate: int, window_sec: float, hop_sec: float
) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of the windows of a waveform of ``n_samples``.

    Windows of ``window_sec`` every ``hop_sec``; a waveform shorter than one window gives one range covering it;
    when the regular windows end before the waveform does, one more window ending at the last sample is added.
    """
    win = max(1, int(round(window_sec * sample_rate)))
    hop = max(1, int(round(hop_sec * sample_rate)))
    if n_samples <= 0:
        return []
    if n_samples <= win:
        return [(0, n_samples)]
    out = [(s, s + win) for s in range(0, n_samples - win + 1, hop)]
    if out[-1][1] < n_samples:
        out.append((n_samples - win, n_samples))
    return out


def paths(layout: ArtifactLayout) -> dict[str, Any]:
    """Where the three segment files live (beside the track embeddings)."""
    d = layout.embeddings_dir
    return {"f32": d / SEGMENTS_F32, "csv": d / SEGMENTS_CSV, "meta": d / SEGMENTS_META}


def load_segments(layout: ArtifactLayout) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """Read the segment vectors [count, dim], the table rows and the meta; checks sizes and checksums.

    Raises:
        ArtifactError: a file is missing or does not match the meta.
    """
    p = paths(layout)
    for key in ("f32", "csv", "meta"):
        if not p[key].is_file():
            raise ArtifactError(f"Missing {p[key]} (run embed-segments first)")
    meta = schema.read_artifact(p["meta"], "segments_meta")
    for key, sha in (("f32", "segments_sha256"), ("csv", "table_sha256")):
        if sha256_file(p[key]) != meta["files"][sha]:
            raise ArtifactError(f"{p[key]}: sha256 differs from {p['meta']}")
    raw = np.fromfile(p["f32"], dtype="<f4")
    if raw.size != meta["count"] * meta["dim"]:
        raise ArtifactError(f"{p['f32']}: {raw.size} floats, expected {meta['count']} x {meta['dim']}")
    with open(p["csv"], encoding="utf-8", newline="") as f:
        rows = [
            {
                "segment_row": int(r["segment_row"]),
                "track_id": r["track_id"],
                "start_sec": float(r["start_sec"]),
                "end_sec": float(r["end_sec"]),
            }
            for r in csv.DictReader(f)
        ]
    return raw.reshape(meta["count"], meta["dim"]).astype(np.float32, copy=False), rows, meta


def _check_model(layout: ArtifactLayout, encoder: Encoder) -> dict[str, Any] | None:
    """The track embeddings' meta when present (after checking it was made by the same model), else None."""
    from research_job.query import check_same_model, loaded_model, recorded_model

    if not layout.embeddings_meta.is_file():
        return None
    meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
    check_same_model(recorded_model(meta), loaded_model(encoder), layout.version_dir)
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
    from research_job.steps.embed import (
        MIN_NORM,
        SILENCE_PEAK,
        apply_postprocess,
        artifact_version,
        l2_normalize,
        now_iso,
        sha256_bytes,
    )
    from research_job.steps.standardize_audio import load_track_audio
    from research_job.version import code_version

    if not (cfg.window_sec > 0 and cfg.hop_sec > 0):
        raise ConfigError(f"window_sec and hop_sec must be > 0, got {cfg.window_sec} and {cfg.hop_sec}")
    if cfg.hop_sec > cfg.window_sec:
        raise ConfigError(
            f"hop_sec {cfg.hop_sec} > window_sec {cfg.window_sec} would leave gaps between windows"
        )
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    layout = cfg.common.layout
    t_start = time.perf_counter()
    rows = read_tracks_csv(layout.tracks_csv)
    if not rows:
        raise ArtifactError(f"{layout.tracks_csv} has no tracks")
    if encoder is None:
        from research_job.models.registry import load_model

        encoder = load_model(cfg.common.model, **({"device": cfg.device} if cfg.device != "cpu" else {}))
    track_meta = _check_model(layout, encoder)
    sr = int(encoder.sample_rate)

    table: list[tuple[str, float, float]] = []
    vecs: list[np.ndarray] = []
    skipped: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    audio_sec = 0.0
    pending: list[tuple[str, int, int, np.ndarray]] = []

    def skip(tid: str, a: int, b: int, reason: str) -> None:
        skipped.append(
            {"track_id": tid, "start_sec": round(a / sr, 6), "end_sec": round(b / sr, 6), "reason": reason}
        )

    def flush() -> None:
        if not pending:
            return
        out = np.asarray(encoder.embed([w for *_, w in pending]), dtype=np.float32)
        if out.shape != (len(pending), encoder.dim):
            raise ArtifactError(f"encoder returned shape {out.shape}, expected {(len(pending), encoder.dim)}")
        for (tid, a, b, _), v in zip(pending, out, strict=True):
            if not np.all(np.isfinite(v)):
                skip(tid, a, b, "non-finite embedding (NaN or inf)")
            elif float(np.linalg.norm(v.astype(np.float64))) < MIN_NORM:
                skip(tid, a, b, f"near-zero embedding (norm < {MIN_NORM:g})")
            else:
                table.append((tid, a / sr, b / sr))
                vecs.append(v)
        pending.clear()

    for row in tqdm(rows, desc="embed-segments", unit="track", disable=None):
        try:
            wav = np.asarray(load_track_audio(layout, row, sr), dtype=np.float32)
        except ResearchJobError as e:
            failures.append({"track_id": row.track_id, "stage": "decode", "reason": str(e)})
            continue
        audio_sec += wav.size / sr
        for a, b in segment_bounds(wav.size, sr, cfg.window_sec, cfg.hop_sec):
            piece = wav[a:b]
            peak = float(np.max(np.abs(piece)))
            if not np.isfinite(peak):
                skip(row.track_id, a, b, "non-finite audio")
            elif peak < SILENCE_PEAK:
                skip(row.track_id, a, b, f"silent audio (peak {peak:.3g})")
            else:
                pending.append((row.track_id, a, b, piece))
                if len(pending) >= cfg.batch_size:
                    flush()
    flush()
    if not vecs:
        raise ArtifactError(
            f"No segment of the {len(rows)} tracks could be embedded "
            f"({len(skipped)} skipped, {len(failures)} tracks failed)"
        )
    raw = np.stack(vecs)
    if track_meta is not None:
        vectors = apply_postprocess(raw, layout)
        pp = {"type": track_meta["postprocess"]["type"], "sha256": track_meta["postprocess"]["sha256"]}
    else:
        vectors = l2_normalize(raw)
        pp = {"type": "none", "sha256": None}
    keep = np.all(np.isfinite(vectors), axis=1)
    for tid, t0, t1 in [t for t, k in zip(table, keep, strict=True) if not k]:
        skipped.append(
            {
                "track_id": tid,
                "start_sec": round(t0, 6),
                "end_sec": round(t1, 6),
                "reason": "near-zero vector after postprocess",
            }
        )
    table = [t for t, k in zip(table, keep, strict=True) if k]
    vectors = vectors[keep]

    p = paths(layout)
    data = np.ascontiguousarray(vectors, dtype="<f4").tobytes(order="C")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i, (tid, t0, t1) in enumerate(table):
        w.writerow([i, tid, f"{t0:.6f}", f"{t1:.6f}"])
    csv_bytes = buf.getvalue().encode("utf-8")
    info = encoder.info()
    wall = time.perf_counter() - t_start
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
        "count": len(table),
        "sample_rate": sr,
        "window_sec": float(cfg.window_sec),
        "hop_sec": float(cfg.hop_sec),
        "dtype": "float32",
        "byte_order": "little",
        "layout": "row-major",
        "normalization": "l2",
        "postprocess": pp,
        "files": {
            "segments": SEGMENTS_F32,
            "segments_sha256": sha256_bytes(data),
            "table": SEGMENTS_CSV,
            "table_sha256": sha256_bytes(csv_bytes),
        },
        "n_tracks": len(rows),
        "n_tracks_with_segments": len({t for t, _, _ in table}),
        "skipped": skipped,
        "failures": failures,
        "stats": {
            "audio_sec": round(audio_sec, 3),
            "wall_sec": round(wall, 3),
            "x_realtime": round(audio_sec / wall, 3) if wall > 0 else 0.0,
        },
        "created_at": now_iso(),
        "code_version": code_version(),
    }
    schema.validate("segments_meta", meta, source=p["meta"])
    write_bytes(p["f32"], data)
    write_bytes(p["csv"], csv_bytes)
    schema.write_artifact(p["meta"], "segments_meta", meta)
    if track_meta is not None:
        # point the track embeddings' meta at the segments (the field its schema reserves for them)
        track_meta["segments"] = {
            "file": SEGMENTS_F32,
            "table": SEGMENTS_CSV,
            "window_sec": float(cfg.window_sec),
            "hop_sec": float(cfg.hop_sec),
            "count": len(table),
            "sha256": meta["files"]["segments_sha256"],
        }
        schema.write_artifact(layout.embeddings_meta, "embeddings_meta", track_meta)
    LOG.info(
        "Embedded %d segments of %d tracks (%d skipped, %d tracks failed)",
        len(table),
        meta["n_tracks_with_segments"],
        len(skipped),
        len(failures),
    )
    return meta


def format_summary(meta: dict[str, Any]) -> str:
    """One line per fact of a finished run, for the terminal."""
    return (
        f"{meta['count']} segments ({meta['window_sec']:g} s windows, {meta['hop_sec']:g} s hop) of "
        f"{meta['n_tracks_with_segments']}/{meta['n_tracks']} tracks, dim {meta['dim']}, model "
        f"{meta['model']['name']}; skipped {len(meta['skipped'])} segments, {len(meta['failures'])} tracks failed"
    )
