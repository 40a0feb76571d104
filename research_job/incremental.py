"""Incremental embedding: what a version folder must keep to be a base, and what a new run may copy from one.

Every embed run writes, beside ``embeddings.f32``:

* ``embeddings/raw.f32``: the model's raw pooled vectors (float32, rows in ``track_ids.json`` order), before the
  corpus post-processing: a centring or whitening fitted on the corpus must be refitted when the corpus changes,
  so the normalised rows cannot be copied, the raw ones can;
* ``embeddings/sources.json`` (schema ``embed_sources``): where the audio was read from and every input track's
  fingerprint (size, ETag, sha256 of its original file; :mod:`research_job.io.track_audio`), with the sha256 of
  ``raw.f32``.

:func:`plan` compares a base folder with the tracks and fingerprints of a new run: a track whose fingerprint is
the same (:func:`~research_job.io.track_audio.same_audio`) and whose base model is this one (name, version,
parameters, weights sha256) gets its raw vector and tag scores copied, or, when it failed in the base, the
same failure (the same bytes through the same model fail the same way), unless it failed only after the corpus
post-processing, which the new corpus may not repeat; a track whose file was missing has no fingerprint and is
always tried again. New and changed tracks are embedded; tracks absent from the metadata are
dropped. The counts go into ``embeddings_meta.json`` (``incremental``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.embed_work import POSTPROCESS_REASON
from research_job.errors import ArtifactError, ResearchJobError
from research_job.io.atomic import write_bytes
from research_job.io.track_audio import Fingerprint, same_audio
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow
from research_job.provenance import sha256_bytes, sha256_file

LOG = logging.getLogger(__name__)


def same_model(meta: Mapping[str, Any], name: str, info: Mapping[str, Any]) -> bool:
    """Whether ``embeddings_meta.json``'s model is the encoder ``name`` with ``info()`` (name, version, parameters
    and weights sha256): the test both a finished folder's reuse and an incremental run's copy make."""
    m = meta["model"]
    return bool(
        m["name"] == name
        and m["version"] == str(info.get("version"))
        and m["params"] == json.loads(json.dumps(info.get("params", {})))
        and m["weights_sha256"] == info.get("weights_sha256")
    )


def write_sources(
    layout: ArtifactLayout,
    raw: np.ndarray,
    ok_ids: Sequence[str],
    fingerprints: Mapping[str, Fingerprint | None],
    rows: Sequence[TrackRow],
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``raw.f32`` (rows of ``ok_ids``) and ``sources.json`` (every row's fingerprint); return the latter.

    Raises:
        ArtifactError: ``raw`` does not have one row per embedded id.
    """
    if raw.shape[0] != len(ok_ids):
        raise ArtifactError(f"raw vectors have {raw.shape[0]} rows for {len(ok_ids)} embedded tracks")
    data = np.ascontiguousarray(raw, dtype="<f4").tobytes(order="C")
    write_bytes(layout.raw_f32, data)
    doc = {
        "schema_version": "1.0",
        "source": dict(source),
        "raw": {
            "file": layout.raw_f32.name,
            "sha256": sha256_bytes(data),
            "count": len(ok_ids),
            "dim": int(raw.shape[1]) if raw.ndim == 2 else 0,
        },
        "tracks": [{"track_id": r.track_id, **_fp(fingerprints.get(r.track_id))} for r in rows],
    }
    schema.write_artifact(layout.embed_sources, "embed_sources", doc)
    return doc


def _fp(fp: Fingerprint | None) -> dict[str, Any]:
    fp = fp or {}
    return {"size": fp.get("size"), "etag": fp.get("etag"), "sha256": fp.get("sha256")}


@dataclass
class Plan:
    """What an incremental run copies from its base, and the counts of its report."""

    base: str
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    tags: dict[str, np.ndarray] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: why nothing could be copied (another model, no sources.json in the base), else None
    reason: str | None = None

    @property
    def copied(self) -> set[str]:
        """Track ids whose row or failure comes from the base (no model call)."""
        return set(self.vectors) | {f["track_id"] for f in self.failures}

    def report(self) -> dict[str, Any]:
        """The ``incremental`` object of ``embeddings_meta.json``."""
        return {"base": self.base, **self.counts, "reason": self.reason}


def _read_base(
    base: ArtifactLayout, dim: int
) -> tuple[dict[str, Any], list[str], np.ndarray, dict[str, Any]]:
    """(embeddings meta, track ids, raw vectors, sources) of a base folder, each verified.

    Raises:
        ArtifactError / SchemaValidationError / OSError: a file is missing, invalid or does not match its sha256.
    """
    meta = schema.read_artifact(base.embeddings_meta, "embeddings_meta")
    ids = schema.read_artifact(base.track_ids_json, "track_ids")["track_ids"]
    sources = schema.read_artifact(base.embed_sources, "embed_sources")
    if sha256_file(base.raw_f32) != sources["raw"]["sha256"]:
        raise ArtifactError(f"{base.raw_f32} does not match the sha256 recorded in {base.embed_sources}")
    raw = np.fromfile(base.raw_f32, dtype="<f4")
    if raw.size != len(ids) * dim or sources["raw"]["count"] != len(ids):
        raise ArtifactError(f"{base.raw_f32}: {raw.size} floats, expected {len(ids)} x {dim}")
    return meta, list(ids), raw.reshape(len(ids), dim), sources


def plan(
    base_dir: Path,
    rows: Sequence[TrackRow],
    fingerprints: Mapping[str, Fingerprint | None],
    *,
    model_name: str,
    info: Mapping[str, Any],
    dim: int,
    tag_count: int = 0,
) -> Plan:
    """What to copy from the version folder ``base_dir`` for these ``rows`` and their current ``fingerprints``.

    A base that cannot be read, lacks ``sources.json`` or was made by another model copies nothing (every track
    is embedded; ``reason`` says why). Tag scores are copied when the model gives ``tag_count`` of them.

    Raises:
        ArtifactError: ``base_dir`` is not a folder.
    """
    if not Path(base_dir).is_dir():
        raise ArtifactError(f"--base {base_dir} is not a folder: give the previous version folder")
    base = ArtifactLayout(Path(base_dir))
    out = Plan(base=str(base_dir))
    n = len(rows)
    out.counts = {"copied": 0, "copied_failures": 0, "embedded_new": 0, "embedded_changed": 0,
                  "retried_missing": 0, "retried_failures": 0, "removed": 0}  # fmt: skip
    try:
        meta, ids, raw, sources = _read_base(base, dim)
    except (OSError, ResearchJobError) as e:
        out.reason = f"the base cannot be used ({e})"
    else:
        if not same_model(meta, model_name, info):
            out.reason = (
                f"the base was made by another model ({meta['model']['name']} {meta['model']['version']})"
            )
    if out.reason is not None:
        LOG.warning("Incremental: %s; embedding all %d tracks", out.reason, n)
        out.counts["embedded_new"] = n
        return out
    old_fp = {t["track_id"]: t for t in sources["tracks"]}
    row_of = {t: i for i, t in enumerate(ids)}
    base_failures = {f["track_id"]: f for f in meta["failures"]}
    tags: dict[str, np.ndarray] = {}
    if tag_count:
        tags = _base_tags(base, ids, tag_count)
    current = {r.track_id for r in rows}
    out.counts["removed"] = sum(1 for t in old_fp if t not in current)
    for r in rows:
        tid = r.track_id
        if tid not in old_fp:
            out.counts["embedded_new"] += 1
            continue
        if old_fp[tid]["size"] is None:  # its file was missing in the base: try it again
            out.counts["retried_missing"] += 1
            continue
        if not same_audio(old_fp[tid], fingerprints.get(tid)):
            out.counts["embedded_changed"] += 1
            continue
        if tid in row_of and (not tag_count or tid in tags):
            out.vectors[tid] = raw[row_of[tid]]
            if tag_count:
                out.tags[tid] = tags[tid]
            out.counts["copied"] += 1
        elif tid in base_failures and base_failures[tid]["reason"] == POSTPROCESS_REASON:
            out.counts["retried_failures"] += 1  # failed only once centred on that corpus: try again
        elif tid in base_failures:
            out.failures.append(dict(base_failures[tid]))
            out.counts["copied_failures"] += 1
        else:  # fingerprinted, neither a row nor a failure: the base was cut short; embed it
            out.counts["embedded_changed"] += 1
    LOG.info(
        "Incremental from %s: %d copied (%d failures), %d new, %d changed, %d missing before, %d failed once "
        "centred, %d removed",
        base_dir,
        out.counts["copied"] + out.counts["copied_failures"],
        out.counts["copied_failures"],
        out.counts["embedded_new"],
        out.counts["embedded_changed"],
        out.counts["retried_missing"],
        out.counts["retried_failures"],
        out.counts["removed"],
    )
    return out


def _base_tags(base: ArtifactLayout, ids: Sequence[str], tag_count: int) -> dict[str, np.ndarray]:
    """The base's tag scores by track id (empty when it has none of this width: those rows are embedded)."""
    from research_job.tags import load_tags

    try:
        tags = load_tags(base)
    except (OSError, ResearchJobError):
        return {}
    if tags.values.shape != (len(ids), tag_count):
        return {}
    return dict(zip(ids, tags.values, strict=True))
