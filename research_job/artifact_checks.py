"""Check a whole version folder against the one artifact list, the schemas and itself; report every problem.

Used by the validate step and by publish (which refuses a folder with problems). Driven by
:func:`research_job.layout.artifacts`: every listed JSON file present is validated against its schema, every
listed file is checked against the sidecar that describes it (size, shape and sha256), a required file that is
missing and a file the list does not know are problems. The cross-checks: ``embeddings.f32`` size = N x D x 4,
N = len(track_ids) = meta count, ids unique and present in the metadata CSV, rows finite and unit-norm, each
index loads with the right ntotal / dim, the neighbour table's values, segment files against
``segments_meta.json``, the frame features against ``frames_meta.json``, a trained head (``head.pt``,
``frozen.f32``) against ``head_meta.json``, and the eval results referring to the same embeddings sha256.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from research_job import neighbors, schema
from research_job.errors import ArtifactError, ResearchJobError
from research_job.index import BACKENDS
from research_job.layout import Artifact, ArtifactLayout, artifact_of, artifacts
from research_job.metadata import read_tracks_csv
from research_job.provenance import sha256_file


class Report:
    """The problems found so far and the facts later checks need (ids, dim, the embeddings' sha256)."""

    def __init__(self, layout: ArtifactLayout) -> None:
        self.layout = layout
        self.problems: list[str] = []
        self.json: dict[str, Any] = {}
        self.ids: list[str] = []
        self.csv_ids: set[str] | None = None
        self.dim: int | None = None
        self.emb_sha: str | None = None

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def sha_matches(self, path: Path, expected: Any, where: str) -> bool:
        """Record a problem when ``path`` is missing or its sha256 differs from ``expected`` (named by ``where``)."""
        if not path.is_file():
            self.add(f"{path}: missing (named in {where})")
            return False
        got = sha256_file(path)
        if got != expected:
            self.add(f"{path}: sha256 differs from {where} ({got} != {expected})")
            return False
        return True


def listed_files(layout: ArtifactLayout) -> tuple[list[tuple[str, Artifact]], list[str]]:
    """(every file of the folder with the list entry it belongs to, the files no entry holds), POSIX paths.

    Files inside listed folders (audio, checkpoints) count as that folder's; ``*.tmp`` files are unfinished
    writes and are in neither list.
    """
    known: list[tuple[str, Artifact]] = []
    unknown: list[str] = []
    root = layout.version_dir
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for fn in sorted(filenames):
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            if fn.endswith(".tmp"):
                continue
            entry = artifact_of(rel)
            if entry is None:
                unknown.append(rel)
            else:
                known.append((rel, entry))
    return known, unknown


def _check_listing(rep: Report) -> None:
    """Schemas of the listed JSON files; required files; files the list does not know."""
    files, unknown = listed_files(rep.layout)
    for rel in unknown:
        rep.add(f"{rep.layout.version_dir / rel}: not an artifact of artifact_schema/artifacts.json")
    present = {rel for rel, _ in files}
    for a in artifacts().values():
        if a.required and not a.is_folder and a.path not in present:
            rep.add(f"{rep.layout.version_dir / a.path}: missing (a version folder needs it)")
        if a.format == "json" and a.path in present and a.schema is not None:
            path = rep.layout.path(a.key)
            try:
                rep.json[a.key] = schema.read_artifact(path, a.schema)
            except ResearchJobError as e:
                rep.add(str(e))
                with contextlib.suppress(OSError, UnicodeDecodeError, json.JSONDecodeError):
                    # still use what can be read for the cross-checks
                    rep.json[a.key] = json.loads(path.read_text(encoding="utf-8"))
    if rep.layout.tracks_csv.is_file():
        try:
            rep.csv_ids = {r.track_id for r in read_tracks_csv(rep.layout.tracks_csv)}
        except ResearchJobError as e:
            rep.add(str(e))


def _check_embeddings(rep: Report, unit_norm_tol: float) -> None:
    layout = rep.layout
    meta = rep.json.get("embeddings_meta")
    tids = rep.json.get("track_ids_json")
    if not isinstance(meta, dict):
        return
    rep.dim = meta.get("dim") if isinstance(meta.get("dim"), int) else None
    files = meta.get("files", {})
    rep.sha_matches(
        layout.embeddings_f32, files.get("embeddings_sha256"), "embeddings_meta.json files.embeddings_sha256"
    )
    rep.sha_matches(
        layout.track_ids_json, files.get("track_ids_sha256"), "embeddings_meta.json files.track_ids_sha256"
    )
    rep.emb_sha = files.get("embeddings_sha256")
    pp = meta.get("postprocess") or {}
    if pp.get("file"):
        rep.sha_matches(
            layout.embeddings_dir / str(pp["file"]),
            pp.get("sha256"),
            "embeddings_meta.json postprocess.sha256",
        )
    if isinstance(tids, dict):
        rep.ids = list(tids.get("track_ids", []))
        if tids.get("count") != len(rep.ids):
            rep.add(f"{layout.track_ids_json}: count {tids.get('count')} != {len(rep.ids)} ids listed")
        dup = sorted(t for t, c in Counter(rep.ids).items() if c > 1)
        if dup:
            rep.add(f"{layout.track_ids_json}: duplicate track ids {dup[:5]}")
        if rep.csv_ids is not None:
            absent = [t for t in rep.ids if t not in rep.csv_ids]
            if absent:
                rep.add(
                    f"{layout.track_ids_json}: {len(absent)} ids not in {layout.tracks_csv}, e.g. {absent[:3]}"
                )
        if meta.get("count") != len(rep.ids):
            rep.add(
                f"{layout.embeddings_meta}: count {meta.get('count')} != {len(rep.ids)} track ids in {layout.track_ids_json}"
            )
    if rep.dim and layout.embeddings_f32.is_file():
        vectors = _vectors(rep, layout.embeddings_f32, len(rep.ids), rep.dim)
        if vectors is not None and vectors.size:
            _check_rows(rep, layout.embeddings_f32, vectors, unit_norm_tol)


def _vectors(rep: Report, path: Path, count: int, dim: int) -> np.ndarray | None:
    """The float32 [count, dim] rows of ``path``, or None (and a problem) when its size disagrees."""
    size = path.stat().st_size
    expect = count * dim * 4
    if size != expect:
        rep.add(f"{path} has {size} bytes, expected N x D x 4 = {expect} ({count} x {dim} x 4)")
        return None
    return np.fromfile(path, dtype="<f4").reshape(count, dim)


def _check_rows(rep: Report, path: Path, vectors: np.ndarray, unit_norm_tol: float) -> None:
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.nonzero(~finite)[0]
        rep.add(f"{path}: {bad.size} rows with NaN/inf, e.g. rows {bad[:5].tolist()}")
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    off = np.nonzero(finite & (np.abs(norms - 1.0) > unit_norm_tol))[0]
    if off.size:
        rep.add(
            f"{path}: {off.size} rows not unit-norm (tol {unit_norm_tol:g}), e.g. row {int(off[0])} norm {norms[off[0]]:.6f}"
        )


def _check_segments(rep: Report, unit_norm_tol: float) -> None:
    """``segments.f32`` and ``segments.csv`` against ``segments_meta.json`` (and the two files' presence)."""
    layout = rep.layout
    meta = rep.json.get("segments_meta")
    present = [p for p in (layout.segments_f32, layout.segments_csv) if p.is_file()]
    if not isinstance(meta, dict):
        for p in present:
            rep.add(f"{p}: present without a readable {layout.segments_meta.name}")
        return
    files = meta.get("files", {})
    f32_ok = rep.sha_matches(
        layout.segments_f32, files.get("segments_sha256"), "segments_meta.json files.segments_sha256"
    )
    rep.sha_matches(layout.segments_csv, files.get("table_sha256"), "segments_meta.json files.table_sha256")
    count, dim = meta.get("count"), meta.get("dim")
    if f32_ok and isinstance(count, int) and isinstance(dim, int):
        vectors = _vectors(rep, layout.segments_f32, count, dim)
        if vectors is not None and vectors.size:
            _check_rows(rep, layout.segments_f32, vectors, unit_norm_tol)
    if rep.dim is not None and dim != rep.dim:
        rep.add(f"{layout.segments_meta}: dim {dim} != embeddings dim {rep.dim}")


def _check_frames(rep: Report) -> None:
    """The frame (and view) files against ``frames_meta.json`` and the track rows they belong to."""
    from research_job.frames import load_frames

    layout = rep.layout
    meta = rep.json.get("frames_meta")
    present = [
        p
        for p in (layout.frames_f16, layout.frames_offsets, layout.views_f16, layout.views_offsets)
        if p.is_file()
    ]
    if not isinstance(meta, dict):
        for p in present:
            rep.add(f"{p}: present without a readable {layout.frames_meta.name}")
        return
    try:
        frames = load_frames(layout)
    except ResearchJobError as e:
        rep.add(str(e))
        return
    if frames.n_tracks != len(rep.ids):
        rep.add(f"{layout.frames_meta}: n_tracks {frames.n_tracks} != {len(rep.ids)} embeddings")


def _check_head(rep: Report) -> None:
    """A head folder's ``head.pt`` and ``frozen.f32`` against ``head_meta.json`` (sha256, size, shapes), its split
    against the track rows, and the embeddings against the head (model name, dim)."""
    layout = rep.layout
    meta = rep.json.get("head_meta")
    present = [p for p in (layout.head_pt, layout.head_frozen, layout.head_curves_json) if p.is_file()]
    if not isinstance(meta, dict):
        for p in present:
            rep.add(f"{p}: present without a readable {layout.head_meta.name}")
        return
    files = meta.get("files", {})
    if rep.sha_matches(layout.head_pt, files.get("head_sha256"), "head_meta.json files.head_sha256"):
        if layout.head_pt.stat().st_size != files.get("size_bytes"):
            rep.add(
                f"{layout.head_pt}: {layout.head_pt.stat().st_size} bytes != head_meta.json size_bytes {files.get('size_bytes')}"
            )
        try:
            from research_job.heads.apply import load_module

            load_module(layout, meta)
        except ResearchJobError as e:
            rep.add(str(e))
        except Exception as e:  # noqa: BLE001 - any load failure of the weights is a reported problem
            rep.add(f"{layout.head_pt}: cannot be loaded as a head: {type(e).__name__}: {e}")
    if rep.sha_matches(layout.head_frozen, files.get("frozen_sha256"), "head_meta.json files.frozen_sha256"):
        dim = files.get("frozen_dim")
        if isinstance(dim, int):
            _vectors(rep, layout.head_frozen, len(rep.ids), dim)
    emeta = rep.json.get("embeddings_meta")
    if isinstance(emeta, dict):
        model = emeta.get("model", {})
        if model.get("name") != meta.get("model_name") or model.get("weights_sha256") != files.get(
            "head_sha256"
        ):
            rep.add(
                f"{layout.embeddings_meta}: model {model.get('name')!r} / weights {model.get('weights_sha256')!r}, "
                f"head_meta.json records {meta.get('model_name')!r} / {files.get('head_sha256')!r}"
            )
    if rep.dim is not None and meta.get("out_dim") != rep.dim:
        rep.add(f"{layout.head_meta}: out_dim {meta.get('out_dim')} != embeddings dim {rep.dim}")
    split = meta.get("split", {})
    ids = set(rep.ids)
    parts = {part: set(split.get(part, [])) for part in ("train", "val", "test")}
    for part, got in parts.items():
        if got - ids:
            rep.add(f"{layout.head_meta}: split.{part} has {len(got - ids)} ids not in track_ids.json")
        if split.get("counts", {}).get(part) != len(got):
            rep.add(
                f"{layout.head_meta}: split.counts.{part} {split.get('counts', {}).get(part)} != {len(got)} ids"
            )
    if parts["train"] & (parts["val"] | parts["test"]) or parts["val"] & parts["test"]:
        rep.add(f"{layout.head_meta}: a track id is in two split parts")
    curves = rep.json.get("head_curves_json")
    if isinstance(curves, dict):
        rep.sha_matches(layout.head_curves_png, curves.get("png_sha256"), "curves.json png_sha256")


def _check_indexes(rep: Report) -> None:
    layout = rep.layout
    imeta = rep.json.get("index_meta")
    if not isinstance(imeta, dict):
        return
    if imeta.get("count") != len(rep.ids):
        rep.add(f"{layout.index_meta}: count {imeta.get('count')} != {len(rep.ids)} embeddings")
    if rep.dim is not None and imeta.get("dim") != rep.dim:
        rep.add(f"{layout.index_meta}: dim {imeta.get('dim')} != embeddings dim {rep.dim}")
    if rep.emb_sha is not None and imeta.get("embeddings_sha256") != rep.emb_sha:
        rep.add(f"{layout.index_meta}: embeddings_sha256 differs from embeddings_meta.json")
    for entry in imeta.get("indexes", []):
        path = layout.index_dir / str(entry.get("file"))
        if not path.is_file():
            rep.add(f"{path}: missing (listed in index_meta.json)")
            continue
        if entry.get("size_bytes") != path.stat().st_size:
            rep.add(
                f"{path}: {path.stat().st_size} bytes != index_meta.json size_bytes {entry.get('size_bytes')}"
            )
        if not rep.sha_matches(path, entry.get("sha256"), "index_meta.json sha256"):
            continue
        backend = BACKENDS.get(str(entry.get("name")))
        if backend is None or not isinstance(imeta.get("dim"), int):
            continue
        try:
            index = backend.load(path, imeta["dim"])
        except Exception as e:  # noqa: BLE001 - any load failure is a reported problem
            rep.add(f"{path}: cannot be loaded as {entry.get('name')}: {e}")
            continue
        if index.ntotal != len(rep.ids):
            rep.add(f"{path}: holds {index.ntotal} vectors, expected {len(rep.ids)}")
        if index.dim != imeta["dim"]:
            rep.add(f"{path}: dim {index.dim} != {imeta['dim']}")
    table = imeta.get("neighbors")
    if isinstance(table, dict):
        _check_table(rep, table)


def _check_table(rep: Report, entry: dict[str, Any]) -> None:
    """Size, checksum and values of ``index/neighbors.i32`` against its ``index_meta.json`` entry."""
    path = rep.layout.neighbors_table
    try:
        table = neighbors.read(path, len(rep.ids), int(entry.get("k", 0)))
    except ArtifactError as e:
        rep.add(str(e))
        return
    if entry.get("size_bytes") != path.stat().st_size:
        rep.add(
            f"{path}: {path.stat().st_size} bytes != index_meta.json size_bytes {entry.get('size_bytes')}"
        )
    rep.sha_matches(path, entry.get("sha256"), "index_meta.json neighbors.sha256")
    for p in neighbors.problems(table):
        rep.add(f"{path}: {p}")


def _check_eval(rep: Report) -> None:
    layout = rep.layout
    ev = rep.json.get("eval_results")
    if not isinstance(ev, dict):
        return
    if rep.emb_sha is not None and ev.get("embeddings_sha256") != rep.emb_sha:
        rep.add(f"{layout.eval_results}: embeddings_sha256 {ev.get('embeddings_sha256')} != {rep.emb_sha}")
    n, which = ev.get("n_tracks"), ev.get("tracks", "all")
    # an evaluation of a track subset (evaluate --tracks multi_label_albums) scores fewer tracks, never more
    if which == "all" and n != len(rep.ids):
        rep.add(f"{layout.eval_results}: n_tracks {n} != {len(rep.ids)} embeddings")
    elif which != "all" and not (isinstance(n, int) and 0 < n <= len(rep.ids)):
        rep.add(
            f"{layout.eval_results}: n_tracks {n} of tracks {which!r} is not 1..{len(rep.ids)} embeddings"
        )


def check(layout: ArtifactLayout, unit_norm_tol: float = 1e-4) -> list[str]:
    """Every problem found in the version folder ``layout`` (empty list = valid)."""
    if not layout.version_dir.is_dir():
        return [f"{layout.version_dir}: no such version folder"]
    rep = Report(layout)
    _check_listing(rep)
    _check_embeddings(rep, unit_norm_tol)
    _check_segments(rep, unit_norm_tol)
    _check_frames(rep)
    _check_head(rep)
    _check_indexes(rep)
    _check_eval(rep)
    return rep.problems
