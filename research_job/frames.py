"""Per-frame backbone features kept beside the pooled vectors, so a head can train without re-running the backbone.

Written by the embed step when ``frames`` names one or more layers of a frame-capable model (musicnn: one frame
per 3 s patch); read by train-head, the excerpt task and the report. Files of ``embeddings/`` (all listed in
``artifact_schema/artifacts.json``)::

    frames.f16            little-endian float16 [count, dim]: the frames of every track, track after track
    frames_offsets.i64    little-endian int64 [n_tracks + 1]: track row i (of track_ids.json) owns frames
                          [offsets[i], offsets[i+1])
    views.f16             optional: frames of ``n_views`` seeded augmented excerpts of every track
    views_offsets.i64     int64 [n_tracks * n_views + 1]: view v of track row i is entry i * n_views + v
    frames_meta.json      schema ``frames_meta``: model, layers (name, dim, column offset), frame and hop
                          seconds, counts, the sha256 of every file, the augmentation of the views

A frame is the concatenation of the chosen layers' per-frame outputs (``layers`` records each block's columns),
the raw features before any post-processing or normalisation. float16 halves the size; the values are layer
activations of order 1, where float16 keeps 3 significant digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from research_job import schema
from research_job.errors import ArtifactError
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout, artifact_version
from research_job.provenance import code_version, sha256_bytes, sha256_file, utc_now

F16 = np.dtype("<f2")
I64 = np.dtype("<i8")


def _pack(blocks: Sequence[np.ndarray], dim: int) -> tuple[bytes, bytes, int]:
    """(float16 frame bytes, int64 offset bytes, frame count) of ``blocks`` ([T_i, dim] each)."""
    counts = [int(b.shape[0]) for b in blocks]
    for b in blocks:
        if b.ndim != 2 or b.shape[1] != dim:
            raise ArtifactError(f"frame block of shape {b.shape}, expected [T, {dim}]")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(I64)
    data = np.concatenate(list(blocks)).astype(F16) if blocks else np.zeros((0, dim), F16)
    if not np.all(np.isfinite(data)):
        raise ArtifactError("frame features are not finite in float16 (overflow or NaN)")
    return np.ascontiguousarray(data).tobytes(), offsets.tobytes(), int(offsets[-1])


def write_frames(
    layout: ArtifactLayout,
    track_ids: Sequence[str],
    frames: Sequence[np.ndarray],
    *,
    model: dict[str, Any],
    layers: Sequence[dict[str, Any]],
    frame_sec: float,
    hop_sec: float,
    views: Sequence[Sequence[np.ndarray]] | None = None,
    view_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the frame files of ``layout`` (validated meta, atomic, meta last) and return the meta.

    Args:
        track_ids: the rows of ``track_ids.json``; ``frames[i]`` is ``[T_i, dim]`` of track i.
        model: ``{name, version, weights_sha256}`` of the backbone.
        layers: ``[{name, dim}]`` in column order (their ``offset`` is filled in).
        views: ``views[i][v]`` the frames of view v of track i (every track the same number of views), or None.
        view_spec: how the views were made (``{n_views, seconds, chain, augmentation, seed}``).
    """
    cols, blocks = 0, []
    for layer in layers:
        blocks.append({"name": str(layer["name"]), "dim": int(layer["dim"]), "offset": cols})
        cols += int(layer["dim"])
    if len(frames) != len(track_ids):
        raise ArtifactError(f"{len(frames)} frame blocks for {len(track_ids)} tracks")
    data, offs, count = _pack(frames, cols)
    meta: dict[str, Any] = {
        "schema_version": "1.0",
        "artifact_version": artifact_version(layout, str(model["name"])),
        "model": {k: model.get(k) for k in ("name", "version", "weights_sha256")},
        "layers": blocks,
        "dim": cols,
        "dtype": "float16",
        "byte_order": "little",
        "frame_sec": float(frame_sec),
        "hop_sec": float(hop_sec),
        "n_tracks": len(track_ids),
        "count": count,
        "track_ids_sha256": sha256_file(layout.track_ids_json),
        "files": {
            "frames": layout.frames_f16.name,
            "frames_sha256": sha256_bytes(data),
            "offsets": layout.frames_offsets.name,
            "offsets_sha256": sha256_bytes(offs),
        },
        "views": None,
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    vdata = voffs = None
    if views is not None:
        n_views = len(views[0]) if views else 0
        if any(len(v) != n_views for v in views) or len(views) != len(track_ids) or n_views < 1:
            raise ArtifactError("views must hold the same number (>= 1) of views for every track")
        vdata, voffs, vcount = _pack([b for track in views for b in track], cols)
        meta["views"] = {
            **(view_spec or {}),
            "n_views": n_views,
            "count": vcount,
            "files": {
                "views": layout.views_f16.name,
                "views_sha256": sha256_bytes(vdata),
                "offsets": layout.views_offsets.name,
                "offsets_sha256": sha256_bytes(voffs),
            },
        }
    schema.validate("frames_meta", meta, source=layout.frames_meta)
    write_bytes(layout.frames_f16, data)
    write_bytes(layout.frames_offsets, offs)
    if vdata is not None and voffs is not None:
        write_bytes(layout.views_f16, vdata)
        write_bytes(layout.views_offsets, voffs)
    else:
        layout.views_f16.unlink(missing_ok=True)
        layout.views_offsets.unlink(missing_ok=True)
    schema.write_artifact(layout.frames_meta, "frames_meta", meta)
    return meta


@dataclass(frozen=True)
class Frames:
    """The frame features of a version folder, read back and verified (:func:`load_frames`)."""

    meta: dict[str, Any]
    data: np.ndarray  # float16 [count, dim]
    offsets: np.ndarray  # int64 [n_tracks + 1]
    view_data: np.ndarray | None
    view_offsets: np.ndarray | None

    @property
    def n_tracks(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_views(self) -> int:
        return int(self.meta["views"]["n_views"]) if self.meta.get("views") else 0

    def of(self, row: int) -> np.ndarray:
        """Track row ``row``'s frames, float32 [T, dim]."""
        return self.data[self.offsets[row] : self.offsets[row + 1]].astype(np.float32)

    def view(self, row: int, v: int) -> np.ndarray:
        """Frames of view ``v`` of track row ``row``, float32 [T, dim]."""
        if self.view_data is None or self.view_offsets is None or not 0 <= v < self.n_views:
            raise ArtifactError(f"no view {v} (this folder has {self.n_views} views per track)")
        j = row * self.n_views + v
        return self.view_data[self.view_offsets[j] : self.view_offsets[j + 1]].astype(np.float32)

    def pooled(self) -> np.ndarray:
        """The mean frame of every track, float32 [n_tracks, dim]."""
        return np.stack([self.of(i).mean(axis=0) for i in range(self.n_tracks)]).astype(np.float32)


def _read(path: Any, dtype: np.dtype, sha: str, what: str) -> np.ndarray:
    if not path.is_file():
        raise ArtifactError(f"Missing {path} (named in frames_meta.json)")
    if sha256_file(path) != sha:
        raise ArtifactError(f"{path}: sha256 differs from frames_meta.json {what}")
    return np.fromfile(path, dtype=dtype)


def _offsets_problem(offs: np.ndarray, entries: int, count: int) -> str | None:
    if offs.size != entries + 1 or offs[0] != 0 or offs[-1] != count or np.any(np.diff(offs) < 1):
        return f"offsets must be {entries + 1} increasing values from 0 to {count}, every track at least one frame"
    return None


def load_frames(layout: ArtifactLayout) -> Frames:
    """Read and verify the frame files: sha256 of each, sizes, offsets, and the track rows they belong to.

    Raises:
        ArtifactError: missing (run embed with frames), or a file does not match ``frames_meta.json``.
    """
    if not layout.frames_meta.is_file():
        raise ArtifactError(f"Missing {layout.frames_meta}: embed with --frames <layers> first")
    meta = schema.read_artifact(layout.frames_meta, "frames_meta")
    if sha256_file(layout.track_ids_json) != meta["track_ids_sha256"]:
        raise ArtifactError(
            f"{layout.frames_meta} was written for other track rows than {layout.track_ids_json}"
        )
    dim, f = int(meta["dim"]), meta["files"]
    raw = _read(layout.frames_f16, F16, f["frames_sha256"], "files.frames_sha256")
    offs = _read(layout.frames_offsets, I64, f["offsets_sha256"], "files.offsets_sha256")
    if raw.size != meta["count"] * dim:
        raise ArtifactError(f"{layout.frames_f16}: {raw.size} values, expected {meta['count']} x {dim}")
    why = _offsets_problem(offs, int(meta["n_tracks"]), int(meta["count"]))
    if why:
        raise ArtifactError(f"{layout.frames_offsets}: {why}")
    vdata = voffs = None
    v = meta.get("views")
    if v:
        vdata = _read(layout.views_f16, F16, v["files"]["views_sha256"], "views.files.views_sha256")
        voffs = _read(layout.views_offsets, I64, v["files"]["offsets_sha256"], "views.files.offsets_sha256")
        if vdata.size != v["count"] * dim:
            raise ArtifactError(f"{layout.views_f16}: {vdata.size} values, expected {v['count']} x {dim}")
        why = _offsets_problem(voffs, int(meta["n_tracks"]) * int(v["n_views"]), int(v["count"]))
        if why:
            raise ArtifactError(f"{layout.views_offsets}: {why}")
        vdata = vdata.reshape(-1, dim)
    return Frames(meta, raw.reshape(-1, dim), offs, vdata, voffs)
