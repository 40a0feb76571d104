"""Write and read the ``recs/`` files of a version folder (little-endian, row-major binaries + JSON).

``recs_meta.json`` is written last and records every file's sha256, shape and dtype; a reader checks each binary's
size against its shape and the track ids' checksum against ``embeddings/track_ids.json`` before it trusts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout
from research_job.provenance import sha256_file
from research_job.recs.scoring import RecsArtifacts

#: artifact key -> (numpy little-endian dtype, dtype name recorded) of each binary file
BINARIES: dict[str, tuple[str, str]] = {
    "recs_user_factors": ("<f4", "float32"),
    "recs_item_factors": ("<f4", "float32"),
    "recs_user_items": ("<i4", "int32"),
    "recs_user_items_offsets": ("<i8", "int64"),
    "recs_user_items_weights": ("<f4", "float32"),
}
JSONS = ("recs_user_ids", "recs_popularity")


def binary_arrays(arts: RecsArtifacts) -> dict[str, np.ndarray]:
    """The served arrays of ``arts`` by artifact key."""
    return {
        "recs_user_factors": arts.user_factors,
        "recs_item_factors": arts.item_factors,
        "recs_user_items": arts.indices,
        "recs_user_items_offsets": arts.indptr,
        "recs_user_items_weights": arts.weights,
    }


def write_binaries(layout: ArtifactLayout, arts: RecsArtifacts) -> dict[str, dict[str, Any]]:
    """Write the binary files atomically; their ``files`` entries for recs_meta.json."""
    files: dict[str, dict[str, Any]] = {}
    for key, arr in binary_arrays(arts).items():
        dtype, name = BINARIES[key]
        path = layout.path(key)
        write_bytes(path, np.ascontiguousarray(arr, dtype=dtype).tobytes())
        files[key] = {"file": path.name, "sha256": sha256_file(path), "shape": list(arr.shape), "dtype": name}
    return files


def write_json(layout: ArtifactLayout, key: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Write one JSON file (schema-validated); its ``files`` entry."""
    path = layout.path(key)
    schema.write_artifact(path, key, obj)
    return {"file": path.name, "sha256": sha256_file(path), "shape": None, "dtype": "json"}


def _read_binary(layout: ArtifactLayout, key: str, entry: dict[str, Any]) -> np.ndarray:
    path = layout.path(key)
    if not path.is_file():
        raise ArtifactError(f"Missing {path} (listed in recs_meta.json; rerun train-recs)")
    dtype = BINARIES[key][0]
    shape = [int(s) for s in entry["shape"]]
    want = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if path.stat().st_size != want:
        raise ArtifactError(f"{path}: {path.stat().st_size} bytes, recs_meta.json shape {shape} needs {want}")
    return np.fromfile(path, dtype=dtype).reshape(shape)


def read_recs(version_dir: Path) -> RecsArtifacts:
    """See :func:`research_job.recs.scoring.load_recs`."""
    layout = ArtifactLayout(version_dir)
    meta_path = layout.path("recs_meta")
    if not meta_path.is_file():
        raise ArtifactError(f"Missing {meta_path} (run research-job train-recs)")
    meta = schema.read_artifact(meta_path, "recs_meta")
    vectors, track_ids, _ = load_embeddings(layout)
    got = sha256_file(layout.track_ids_json)
    if got != meta["embeddings"]["track_ids_sha256"]:
        raise ArtifactError(
            f"{layout.path('recs_meta')}: trained on track ids {meta['embeddings']['track_ids_sha256']}, "
            f"{layout.track_ids_json} is {got} (rerun train-recs)"
        )
    arrays = {key: _read_binary(layout, key, meta["files"][key]) for key in BINARIES}
    users = schema.read_artifact(layout.path("recs_user_ids"), "recs_user_ids")["user_ids"]
    pop = schema.read_artifact(layout.path("recs_popularity"), "recs_popularity")
    row = {t: i for i, t in enumerate(track_ids)}

    def vector(entries: list[dict[str, Any]]) -> np.ndarray:
        v = np.zeros(len(track_ids), dtype=np.float64)
        for e in entries:
            v[row[e["track_id"]]] = float(e["score"])
        return v

    hybrid = meta["models"]["hybrid"]
    return RecsArtifacts(
        user_ids=list(users),
        track_ids=list(track_ids),
        user_factors=arrays["recs_user_factors"].astype(np.float32),
        item_factors=arrays["recs_item_factors"].astype(np.float32),
        embeddings=vectors,
        indptr=arrays["recs_user_items_offsets"].astype(np.int64),
        indices=arrays["recs_user_items"].astype(np.int32),
        weights=arrays["recs_user_items_weights"].astype(np.float32),
        trending=vector(pop["trending"]),
        popular=vector(pop["global"]),
        cf_weight=float(hybrid["cf_weight"]),
        light_user_events=float(hybrid["light_user_events"]),
    )
