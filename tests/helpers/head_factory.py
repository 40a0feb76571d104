"""Seeded synthetic backbone folders with frames (for head tests and the head benchmark), and a fake frame encoder.

Two feature sets, each built so that the frozen pooled features are weak in a known way and a head can learn
the fix:

* :func:`mixture_set` (contrastive): each track's frames are a sum of a few of ``n_sources`` shared source
  patterns (its own mixture, with per-frame activations) plus a strong nuisance from a low-rank subspace shared by
  all tracks, plus noise. Its views are noisier crops shifted by a large per-view nuisance offset (what an
  augmented excerpt does to the features). Frozen pooling keeps the nuisance; a head can learn to drop it.
* :func:`labelled_set` (triplet): a track's frames are its label's centroid (in a label subspace) plus its
  album's offset (in another subspace, larger, and albums mix labels) plus noise: the album dominates the
  frozen neighbours; a head trained on some labels learns the label subspace and carries it to new labels.

:func:`write_frame_folder` writes either as a version folder a backbone would leave (metadata CSV, pooled
embeddings, frames and views) through the pipeline's own writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from research_job.embeddings import l2_normalize, write_embeddings
from research_job.frames import write_frames
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, write_tracks_csv

BACKBONE = {
    "name": "fake-frames",
    "version": "1",
    "weights_sha256": None,
    "pooling": "mean",
    "layer": "frames",
    "params": {},
}


@dataclass(frozen=True)
class FrameSet:
    """Per track: frames [T, D] float32, views (list of [T', D]), composer (None = missing) and album."""

    frames: list[np.ndarray]
    views: list[list[np.ndarray]]
    composers: list[str | None]
    albums: list[str]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mixture_set(
    n: int = 240,
    dim: int = 32,
    *,
    n_sources: int = 48,
    per_track: int = 3,
    nuisance_rank: int = 3,
    nuisance: float = 2.0,
    view_offset: float = 3.0,
    n_views: int = 2,
    frames_range: tuple[int, int] = (8, 17),
    album_size: int = 6,
    n_composers: int = 8,
    track_offset: float = 0.0,
    seed: int = 0,
) -> FrameSet:
    """Tracks as mixtures of distinct sources plus a shared nuisance; views are noisier, offset crops.

    ``track_offset`` adds a constant per-track nuisance offset (a recording chain) to the clean frames too.
    Noise is per dimension x sqrt(32 / dim), so its norm does not grow with ``dim``.
    """
    rng = np.random.default_rng(seed)
    ns = float(np.sqrt(32 / dim))
    sources = _unit_rows(rng.standard_normal((n_sources, dim))) * 1.5
    basis = _unit_rows(rng.standard_normal((nuisance_rank, dim))) * 1.0
    frames, views = [], []
    for _ in range(n):
        pick = rng.choice(n_sources, size=per_track, replace=False)
        weights = rng.uniform(0.5, 1.5, size=per_track)
        t = int(rng.integers(*frames_range))
        act = weights[None, :] * (1.0 + 0.3 * rng.standard_normal((t, per_track)))
        clean = act @ sources[pick] + nuisance * rng.standard_normal((t, nuisance_rank)) @ basis
        clean += 0.1 * ns * rng.standard_normal((t, dim))
        if track_offset:
            clean += track_offset * rng.standard_normal(nuisance_rank) @ basis
        frames.append(clean.astype(np.float32))
        track_views = []
        for _ in range(n_views):
            length = max(2, t // 2)
            start = int(rng.integers(0, t - length + 1))
            offset = view_offset * rng.standard_normal(nuisance_rank) @ basis
            v = clean[start : start + length] + offset + 0.3 * ns * rng.standard_normal((length, dim))
            track_views.append(v.astype(np.float32))
        views.append(track_views)
    composers: list[str | None] = [f"composer {i % n_composers}" for i in range(n)]
    albums = [f"al{i // album_size:04d}" for i in range(n)]
    return FrameSet(frames, views, composers, albums)


def labelled_set(
    n: int = 288,
    dim: int = 32,
    *,
    n_labels: int = 16,
    n_albums: int = 24,
    label_rank: int = 6,
    album_rank: int = 6,
    label_scale: float = 1.5,
    album_scale: float = 3.0,
    n_views: int = 0,
    frames_range: tuple[int, int] = (6, 13),
    missing_every: int = 0,
    seed: int = 0,
) -> FrameSet:
    """Tracks whose label signal is dominated by a per-album offset (albums mix labels).

    Noise is per dimension x sqrt(32 / dim), so its norm does not grow with ``dim``.
    """
    rng = np.random.default_rng(seed)
    ns = float(np.sqrt(32 / dim))
    q, _ = np.linalg.qr(rng.standard_normal((dim, label_rank + album_rank)))
    u, v = q[:, :label_rank].T, q[:, label_rank:].T
    centroids = label_scale * _unit_rows(rng.standard_normal((n_labels, label_rank))) @ u
    offsets = album_scale * _unit_rows(rng.standard_normal((n_albums, album_rank))) @ v
    label = rng.integers(0, n_labels, size=n)
    album = rng.integers(0, n_albums, size=n)
    frames, views = [], []
    for i in range(n):
        t = int(rng.integers(*frames_range))
        base = centroids[label[i]] + offsets[album[i]] + 0.35 * ns * rng.standard_normal(dim)
        clean = base + 0.3 * ns * rng.standard_normal((t, dim))
        frames.append(clean.astype(np.float32))
        views.append(
            [
                (base + 0.5 * ns * rng.standard_normal((max(2, t // 2), dim))).astype(np.float32)
                for _ in range(n_views)
            ]
        )
    composers: list[str | None] = [
        None if missing_every and i % missing_every == missing_every - 1 else f"composer {int(label[i]):02d}"
        for i in range(n)
    ]
    return FrameSet(frames, views, composers, [f"al{int(a):03d}" for a in album])


def write_frame_folder(
    version_dir: Path, data: FrameSet, *, backbone: dict[str, Any] | None = None, with_views: bool = True
) -> ArtifactLayout:
    """A backbone version folder of ``data``: metadata CSV, pooled L2 embeddings, frames (and views)."""
    layout = ArtifactLayout(Path(version_dir))
    model = dict(backbone or BACKBONE)
    n = len(data.frames)
    ids = [f"t{i:05d}" for i in range(n)]
    rows = [
        TrackRow(
            track_id=t,
            album_id=data.albums[i],
            track_no=i % 6 + 1,
            title=f"Piece {i}",
            composer=data.composers[i],
            audio_s3_key=f"catalogue/{data.albums[i]}/{t}.wav",
            duration_sec=30.0,
            composer_raw=data.composers[i].title() if data.composers[i] else None,
            composer_missing=data.composers[i] is None,
        )
        for i, t in enumerate(ids)
    ]
    write_tracks_csv(layout.tracks_csv, rows)
    pooled = np.stack([f.mean(axis=0) for f in data.frames])
    dim = int(pooled.shape[1])
    write_embeddings(
        layout,
        l2_normalize(pooled),
        ids,
        model_name=model["name"],
        info=model,
        dim=dim,
        sample_rate=8000,
        stats={"n_input_tracks": n, "n_embedded": n, "n_failed": 0, "audio_sec": 30.0 * n, "wall_sec": 1.0},
    )
    has_views = with_views and bool(data.views and data.views[0])
    write_frames(
        layout,
        ids,
        data.frames,
        model={k: model[k] for k in ("name", "version", "weights_sha256")},
        layers=[{"name": "frames", "dim": dim}],
        frame_sec=3.0,
        hop_sec=3.0,
        views=data.views if has_views else None,
        view_spec={"seconds": 15.0, "chain": "train", "augmentation": {}, "seed": 0} if has_views else None,
    )
    return layout


# ---------------------------------------------------------------- a fake frame encoder for audio tests


class FakeFrameEncoder:
    """A frame encoder with known outputs: per 0.25 s frame, the log energies of 12 FFT bands (8 kHz).

    ``embed`` returns the mean frame, ``embed_frames`` the frames of layer ``bands`` (dim 12).
    """

    name = "fake-frames"
    dim = 12
    sample_rate = 8000
    frame_layers = {"bands": 12}
    frame_sec = 0.25
    hop_sec = 0.25

    def __init__(self, version: str = "1") -> None:
        self.version = version

    def _frames(self, w: np.ndarray) -> np.ndarray:
        hop = int(self.hop_sec * self.sample_rate)
        w = np.asarray(w, np.float64)
        n = max(1, w.size // hop)
        w = np.pad(w, (0, max(0, n * hop - w.size)))[: n * hop].reshape(n, hop)
        spec = np.abs(np.fft.rfft(w * np.hanning(hop), axis=1)) ** 2
        bands = np.array_split(spec, self.dim, axis=1)
        return np.log1p(np.stack([b.sum(axis=1) for b in bands], axis=1) * 100.0).astype(np.float32)

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self._frames(w).mean(axis=0) for w in batch]).astype(np.float32)

    def embed_frames(
        self, batch: Sequence[np.ndarray], layers: Sequence[str]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        frames = [self._frames(w) for w in batch]
        return np.stack([f.mean(axis=0) for f in frames]).astype(np.float32), frames

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "weights_sha256": None, "pooling": "mean",
                "layer": None, "params": {}}  # fmt: skip


def load_fake_frames(version: str = "1") -> FakeFrameEncoder:
    """Registry loader of ``fake-frames`` (option ``version``)."""
    return FakeFrameEncoder(version)
