"""Segment embeddings as a library: window bounds, and reading the files embed-segments writes.

``embeddings/segments.f32`` (row-major little-endian float32 [count, dim], unit rows), ``segments.csv``
(``segment_row,track_id,start_sec,end_sec``; row i of segments.f32 is segment_row i) and ``segments_meta.json``
(schema ``segments_meta``). The embed-segments step writes them; find-similar (``by_segment``) reads them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.errors import ArtifactError
from research_job.layout import ArtifactLayout
from research_job.provenance import sha256_file

CSV_COLUMNS = ("segment_row", "track_id", "start_sec", "end_sec")


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


def paths(layout: ArtifactLayout) -> dict[str, Path]:
    """Where the three segment files live (beside the track embeddings)."""
    return {"f32": layout.segments_f32, "csv": layout.segments_csv, "meta": layout.segments_meta}


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
