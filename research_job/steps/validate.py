"""validate: check a whole version folder and report every problem (file and mismatch), not just the first.

Checks: each JSON artifact against its schema (step reports too, when their schema exists), every CSV row
against ``tracks_metadata_row``, ``embeddings.f32`` size = N x D x 4, N = len(track_ids) = meta count, ids
unique and present in the metadata CSV, rows finite and unit-norm, checksums in the sidecars match the files,
each index loads with the right ntotal / dim, and the eval results refer to the same embeddings sha256.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from research_job import neighbors, schema
from research_job.config import ValidateConfig
from research_job.errors import ArtifactError, ResearchJobError
from research_job.index import BACKENDS
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.models.base import sha256_file

LOG = logging.getLogger(__name__)


def _read_json(path: Path, name: str, problems: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return schema.read_artifact(path, name)
    except ResearchJobError as e:
        problems.append(str(e))
    try:  # still use what can be read for the cross-checks
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _check_csv(layout: ArtifactLayout, problems: list[str]) -> set[str] | None:
    """Track ids of the metadata CSV (every row schema-checked), or None when it cannot be read."""
    try:
        rows = read_tracks_csv(layout.tracks_csv)
    except ResearchJobError as e:
        problems.append(str(e))
        return None
    return {r.track_id for r in rows}


def check(layout: ArtifactLayout, unit_norm_tol: float = 1e-4) -> list[str]:
    """Every problem found in the version folder ``layout`` (empty list = valid)."""
    problems: list[str] = []
    if not layout.version_dir.is_dir():
        return [f"{layout.version_dir}: no such version folder"]
    csv_ids = _check_csv(layout, problems)
    known = set(schema.schema_names())
    for path, name in (
        (layout.export_report, "export_report"),
        (layout.pull_report, "pull_report"),
        (layout.standardize_report, "standardize_report"),
    ):
        if path.is_file() and name in known:
            _read_json(path, name, problems)

    # embeddings
    emb_sha = None
    meta = _read_json(layout.embeddings_meta, "embeddings_meta", problems)
    tids = _read_json(layout.track_ids_json, "track_ids", problems)
    dim = None
    if meta is None and layout.embeddings_f32.exists():
        problems.append(f"{layout.embeddings_meta}: missing")
    if meta is not None:
        dim = meta.get("dim")
        files = meta.get("files", {})
        for key, path in (
            ("embeddings_sha256", layout.embeddings_f32),
            ("track_ids_sha256", layout.track_ids_json),
        ):
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif files.get(key) != sha256_file(path):
                problems.append(
                    f"{path}: sha256 {sha256_file(path)} != embeddings_meta.json files.{key} {files.get(key)}"
                )
        emb_sha = files.get("embeddings_sha256")
        pp = meta.get("postprocess") or {}
        if pp.get("file"):
            pp_path = layout.embeddings_dir / pp["file"]
            if not pp_path.is_file():
                problems.append(f"{pp_path}: missing (named in embeddings_meta.json postprocess)")
            elif sha256_file(pp_path) != pp.get("sha256"):
                problems.append(f"{pp_path}: sha256 differs from embeddings_meta.json postprocess.sha256")
    ids: list[str] = []
    if isinstance(tids, dict):
        ids = list(tids.get("track_ids", []))
        if tids.get("count") != len(ids):
            problems.append(f"{layout.track_ids_json}: count {tids.get('count')} != {len(ids)} ids listed")
        dup = sorted(t for t, c in Counter(ids).items() if c > 1)
        if dup:
            problems.append(f"{layout.track_ids_json}: duplicate track ids {dup[:5]}")
        if csv_ids is not None:
            absent = [t for t in ids if t not in csv_ids]
            if absent:
                problems.append(
                    f"{layout.track_ids_json}: {len(absent)} ids not in {layout.tracks_csv}, e.g. {absent[:3]}"
                )
    if meta is not None and tids is not None and meta.get("count") != len(ids):
        problems.append(
            f"{layout.embeddings_meta}: count {meta.get('count')} != {len(ids)} track ids in {layout.track_ids_json}"
        )
    vectors = None
    if isinstance(dim, int) and dim > 0 and layout.embeddings_f32.is_file():
        size = layout.embeddings_f32.stat().st_size
        expect = len(ids) * dim * 4
        if size != expect:
            problems.append(
                f"{layout.embeddings_f32}: {size} bytes, expected N x D x 4 = {len(ids)} x {dim} x 4 = {expect}"
            )
        elif ids:
            vectors = np.fromfile(layout.embeddings_f32, dtype="<f4").reshape(len(ids), dim)
            finite = np.isfinite(vectors).all(axis=1)
            if not finite.all():
                bad = np.nonzero(~finite)[0]
                problems.append(
                    f"{layout.embeddings_f32}: {bad.size} rows with NaN/inf, e.g. rows {bad[:5].tolist()}"
                )
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            off = np.nonzero(finite & (np.abs(norms - 1.0) > unit_norm_tol))[0]
            if off.size:
                problems.append(
                    f"{layout.embeddings_f32}: {off.size} rows not unit-norm (tol {unit_norm_tol:g}), "
                    f"e.g. row {int(off[0])} norm {norms[off[0]]:.6f}"
                )

    # indexes
    imeta = _read_json(layout.index_meta, "index_meta", problems)
    if isinstance(imeta, dict):
        if imeta.get("count") != len(ids):
            problems.append(f"{layout.index_meta}: count {imeta.get('count')} != {len(ids)} embeddings")
        if dim is not None and imeta.get("dim") != dim:
            problems.append(f"{layout.index_meta}: dim {imeta.get('dim')} != embeddings dim {dim}")
        if emb_sha is not None and imeta.get("embeddings_sha256") != emb_sha:
            problems.append(f"{layout.index_meta}: embeddings_sha256 differs from embeddings_meta.json")
        for entry in imeta.get("indexes", []):
            path = layout.index_dir / str(entry.get("file"))
            if not path.is_file():
                problems.append(f"{path}: missing (listed in index_meta.json)")
                continue
            if entry.get("size_bytes") != path.stat().st_size:
                problems.append(
                    f"{path}: {path.stat().st_size} bytes != index_meta.json size_bytes {entry.get('size_bytes')}"
                )
            if entry.get("sha256") != sha256_file(path):
                problems.append(f"{path}: sha256 differs from index_meta.json")
                continue
            backend = BACKENDS.get(str(entry.get("name")))
            if backend is None or not isinstance(imeta.get("dim"), int):
                continue
            try:
                index = backend.load(path, imeta["dim"])
            except Exception as e:  # noqa: BLE001 - any load failure is a reported problem
                problems.append(f"{path}: cannot be loaded as {entry.get('name')}: {e}")
                continue
            if index.ntotal != len(ids):
                problems.append(f"{path}: holds {index.ntotal} vectors, expected {len(ids)}")
            if index.dim != imeta["dim"]:
                problems.append(f"{path}: dim {index.dim} != {imeta['dim']}")
        table = imeta.get("neighbors")
        if isinstance(table, dict):
            problems.extend(_table_problems(layout, table, len(ids)))
    # evaluation
    ev = _read_json(layout.eval_results, "eval_results", problems)
    if isinstance(ev, dict):
        if emb_sha is not None and ev.get("embeddings_sha256") != emb_sha:
            problems.append(
                f"{layout.eval_results}: embeddings_sha256 {ev.get('embeddings_sha256')} != {emb_sha}"
            )
        if ev.get("n_tracks") != len(ids):
            problems.append(f"{layout.eval_results}: n_tracks {ev.get('n_tracks')} != {len(ids)} embeddings")
    _read_json(layout.sample_top5_json, "sample_topk", problems)
    return problems


def _table_problems(layout: ArtifactLayout, entry: dict[str, Any], count: int) -> list[str]:
    """Size, checksum and values of ``index/neighbors.i32`` against its ``index_meta.json`` entry."""
    path = layout.neighbors_table
    try:
        table = neighbors.read(path, count, int(entry.get("k", 0)))
    except ArtifactError as e:
        return [str(e)]
    out = []
    if entry.get("size_bytes") != path.stat().st_size:
        out.append(
            f"{path}: {path.stat().st_size} bytes != index_meta.json size_bytes {entry.get('size_bytes')}"
        )
    if entry.get("sha256") != sha256_file(path):
        out.append(f"{path}: sha256 differs from index_meta.json")
    out.extend(f"{path}: {p}" for p in neighbors.problems(table))
    return out


def run(cfg: ValidateConfig) -> dict[str, Any]:
    """Validate the version folder of ``cfg``.

    Returns:
        ``{"version_dir", "problems": []}`` when valid.

    Raises:
        ArtifactError: listing every problem (also logged one per line).
    """
    layout = cfg.common.layout
    problems = check(layout, cfg.unit_norm_tol)
    for p in problems:
        LOG.error("%s", p)
    if problems:
        raise ArtifactError(f"{len(problems)} problem(s) in {layout.version_dir}: " + " | ".join(problems))
    LOG.info("%s is valid", layout.version_dir)
    return {"version_dir": str(layout.version_dir), "problems": []}
