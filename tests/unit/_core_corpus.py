"""Test helpers of the core steps: write a metadata CSV and real WAV files of a tiny seeded corpus."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from research_job import embeddings
from research_job.config import CommonConfig
from research_job.layout import ArtifactLayout
from research_job.metadata import CSV_COLUMNS as COLUMNS


def write_csv(layout: ArtifactLayout, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``metadata/tracks_metadata.csv`` with the schema's columns (None -> empty cell)."""
    layout.metadata_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.tracks_csv, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(
                [
                    ""
                    if r.get(c) is None
                    else ("true" if r.get(c) is True else "false" if r.get(c) is False else r[c])
                    for c in COLUMNS
                ]
            )


def row(track_id: str, album: str, composer: str | None, no: int = 1) -> dict[str, Any]:
    return {
        "track_id": track_id,
        "album_id": album,
        "track_no": no,
        "title": f"Title {track_id}",
        "composer": composer,
        "audio_s3_key": f"{album}/{track_id}.wav",
        "duration_sec": 1.0,
        "composer_raw": composer,
        "composer_missing": composer is None,
    }


def tone(seed: int, sr: int, seconds: float = 1.0, silent: bool = False) -> np.ndarray:
    """A seeded mix of two sines plus noise (or silence), float32 mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    if silent:
        return np.zeros(t.size, np.float32)
    f1, f2 = rng.uniform(110, 880, size=2)
    x = (
        0.4 * np.sin(2 * np.pi * f1 * t)
        + 0.2 * np.sin(2 * np.pi * f2 * t)
        + 0.05 * rng.standard_normal(t.size)
    )
    return x.astype(np.float32)


def make_corpus(
    root: Path, sr: int, n: int = 12, silent: Sequence[int] = (), model: str = "dsp-stats"
) -> CommonConfig:
    """A version folder with ``n`` tracks (3 composers, albums of 2) and their standardised WAVs."""
    common = CommonConfig(artifacts_root=root, model=model, version_dir=root / "v1_model_test")
    layout = common.layout
    rows = [row(f"t{i:02d}", f"al{i // 2}", ["Bach", "Liszt", "Satie"][i % 3], i % 2 + 1) for i in range(n)]
    write_csv(layout, rows)
    layout.audio_wav_dir.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(rows):
        sf.write(layout.wav(r["track_id"]), tone(i, sr, silent=i in silent), sr, subtype="FLOAT")
    return common


def write_embeddings(
    layout: ArtifactLayout, vectors: np.ndarray, ids: Sequence[str], model: str = "test"
) -> None:
    """Write the three embedding files directly (vectors used as given, no normalisation)."""

    embeddings.write_embeddings(
        layout,
        vectors,
        ids,
        model_name=model,
        info={"version": "1", "weights_sha256": None, "pooling": "mean", "layer": None, "params": {}},
        dim=int(vectors.shape[1]),
        sample_rate=16000,
        stats={
            "n_input_tracks": len(ids),
            "n_embedded": len(ids),
            "n_failed": 0,
            "audio_sec": 1.0,
            "wall_sec": 1.0,
        },
        created_at="2026-11-22T04:00:00Z",
    )
