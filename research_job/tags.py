"""Track-level tag scores kept beside the embeddings: ``embeddings/tags.f32`` and ``embeddings/tags.json``.

Written by the embed step when the model is a tagger too (:func:`research_job.models.base.tag_blocks_of`:
musicnn's ``taggram``, the sigmoid outputs of its 50 training tags per 3 s patch; a fusion of musicnn checkpoints
has one block per member), from the same forward pass as the pooled vectors. Read by the report, which describes
each cluster by the tags its tracks score above the catalogue. Files (both listed in
``artifact_schema/artifacts.json``)::

    tags.f32    little-endian float32 [n_tracks, dim]: row i (of track_ids.json) is the mean over the track's
                frames of each tag's per-frame probability; columns in the order of ``blocks``
    tags.json   schema ``tags_meta``: the model, the blocks (tagging model, vocabulary, first column, tag names),
                counts, the sha256 of tags.f32 and of the track_ids.json its rows follow

Raw model outputs: the embeddings' post-processing does not apply to tags.
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

F32 = np.dtype("<f4")


def write_tags(
    layout: ArtifactLayout,
    track_ids: Sequence[str],
    values: np.ndarray,
    *,
    model: dict[str, Any],
    blocks: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Write ``tags.f32`` and ``tags.json`` (validated, atomic, meta last) after ``track_ids.json``; return the meta.

    Args:
        track_ids: the rows of ``track_ids.json`` (already written); ``values[i]`` are track i's tag scores.
        model: ``{name, version, weights_sha256}`` of the embeddings' model.
        blocks: ``[{model, vocabulary, tags}]`` in column order (their ``offset`` is filled in).

    Raises:
        ArtifactError: a shape that does not match, or a value outside [0, 1] (not a probability) or not finite.
    """
    x = np.asarray(values, dtype=np.float32)
    cols, out_blocks = 0, []
    for b in blocks:
        out_blocks.append(
            {"model": str(b["model"]), "vocabulary": str(b["vocabulary"]), "offset": cols,
             "tags": [str(t) for t in b["tags"]]}
        )  # fmt: skip
        cols += len(b["tags"])
    if x.shape != (len(track_ids), cols):
        raise ArtifactError(f"tag scores of shape {x.shape}, expected {(len(track_ids), cols)}")
    if not np.all(np.isfinite(x)) or x.size and (x.min() < 0 or x.max() > 1):
        raise ArtifactError("tag scores must be finite probabilities in [0, 1]")
    data = np.ascontiguousarray(x, dtype=F32).tobytes()
    meta = {
        "schema_version": "1.0",
        "artifact_version": artifact_version(layout, str(model["name"])),
        "model": {k: model.get(k) for k in ("name", "version", "weights_sha256")},
        "pooling": "mean",
        "blocks": out_blocks,
        "dim": cols,
        "n_tracks": len(track_ids),
        "dtype": "float32",
        "byte_order": "little",
        "track_ids_sha256": sha256_file(layout.track_ids_json),
        "files": {"tags": layout.path("tags_f32").name, "tags_sha256": sha256_bytes(data)},
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    schema.validate("tags_meta", meta, source=layout.path("tags_meta"))
    write_bytes(layout.path("tags_f32"), data)
    schema.write_artifact(layout.path("tags_meta"), "tags_meta", meta)
    return meta


def remove_tags(layout: ArtifactLayout) -> None:
    """Delete the tag files (embeddings of a model without tags must not keep an earlier model's)."""
    for key in ("tags_meta", "tags_f32"):
        layout.path(key).unlink(missing_ok=True)


@dataclass(frozen=True)
class Tags:
    """The tag scores of a version folder, read back and verified (:func:`load_tags`)."""

    meta: dict[str, Any]
    values: np.ndarray  # float32 [n_tracks, dim]

    def block(self, i: int) -> tuple[dict[str, Any], np.ndarray]:
        """Block ``i``'s description and its columns of every track, float32 [n_tracks, len(tags)]."""
        b = self.meta["blocks"][i]
        return b, self.values[:, b["offset"] : b["offset"] + len(b["tags"])]


def load_tags(layout: ArtifactLayout) -> Tags:
    """Read and verify the tag files: the schema, the sha256 and size of ``tags.f32``, the track rows it follows.

    Raises:
        ArtifactError: missing (the model gives no tags, or embed ran before tags were kept), or not matching.
    """
    meta_path, data_path = layout.path("tags_meta"), layout.path("tags_f32")
    if not meta_path.is_file():
        raise ArtifactError(f"Missing {meta_path}: embed keeps tags only for models that give them (musicnn)")
    meta = schema.read_artifact(meta_path, "tags_meta")
    if not layout.track_ids_json.is_file() or sha256_file(layout.track_ids_json) != meta["track_ids_sha256"]:
        raise ArtifactError(
            f"{meta_path} was written for other track rows than {layout.track_ids_json}; rerun embed"
        )
    if not data_path.is_file() or sha256_file(data_path) != meta["files"]["tags_sha256"]:
        raise ArtifactError(f"{data_path}: missing or its sha256 differs from {meta_path.name}; rerun embed")
    dim, n = int(meta["dim"]), int(meta["n_tracks"])
    ends = [b["offset"] + len(b["tags"]) for b in meta["blocks"]]
    starts = [b["offset"] for b in meta["blocks"]]
    if starts != [0, *ends[:-1]] or ends[-1] != dim:
        raise ArtifactError(f"{meta_path}: blocks do not tile the {dim} columns")
    raw = np.fromfile(data_path, dtype=F32)
    if raw.size != n * dim:
        raise ArtifactError(f"{data_path}: {raw.size} values, expected {n} x {dim}")
    return Tags(meta, raw.reshape(n, dim))
