"""Check a whole version folder against the one artifact list, the schemas and itself; report every problem.

Used by the validate step and by publish (which refuses a folder with problems). Driven by
:func:`research_job.layout.artifacts`: every listed JSON file present is validated against its schema, every
listed file is checked against the sidecar that describes it (size, shape and sha256), a required file that is
missing and a file the list does not know are problems. The cross-checks: ``embeddings.f32`` size = N x D x 4,
N = len(track_ids) = meta count, ids unique and present in the metadata CSV, rows finite and unit-norm, every
index file (its name and space as the Node API expects) passes the structural checks the Node API makes (hnswlib's
graph bounds, :mod:`research_job.hnsw_file`), loads with the right ntotal / dim and holds the embeddings' vectors (a seeded sample of rows), the neighbour
table's values and order and, on a seeded sample of rows, its lists against a fresh exact ranking, segment files
against ``segments_meta.json``, the frame features against ``frames_meta.json``, a trained head (``head.pt``,
``frozen.f32``) against ``head_meta.json``, the metadata CSV against ``export_report.json``, a similarity matrix
against ``similarity_meta.json``, the audio previews against ``previews.json`` and the embedded tracks, a
release's ``manifest.json`` (an S3 cache folder) against the files, and the evaluation: ``eval_results.json`` and
``sample_top5.json`` recomputed from the embeddings and the metadata with the
parameters they record (:mod:`research_job.evaluation`, the code evaluate writes them with), ``sample_top5.md``
rendered again from ``sample_top5.json``; ``excerpt_results.json`` (whose figures need the audio) by its
embeddings sha256 and version only.

Whatever the Node API refuses at load (``node_api/src/lib/loader.ts``) is a problem here too: the rows it checks
(:mod:`research_job.node_sample`) are always among the sampled ones. Cost on N tracks of dimension D: reading and
hashing every file; the evaluation's cost (:mod:`research_job.evaluation`: one N x N product, the bootstrap, KMeans);
the neighbour table's order, O(N k D); ``sample`` + 8 exact searches for the table, O(sample N D); ``sample`` + 64
vectors per index.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from research_job import evaluation, hnsw_file, neighbors, schema
from research_job.errors import ArtifactError, ResearchJobError
from research_job.index import BACKENDS
from research_job.layout import Artifact, ArtifactLayout, artifact_of, artifacts
from research_job.metadata import read_tracks_csv
from research_job.node_sample import sample_rows
from research_job.provenance import sha256_file

#: rows of every sampled check beyond the Node API's own (validate --sample); seeded, so a rerun checks the same
DEFAULT_SAMPLE = 64
#: the Node API's samples at load: (rows, seed) of the HNSW vectors and of the neighbour-table spot check
NODE_HNSW_SAMPLE = (64, 1)
NODE_TABLE_SAMPLE = (8, 2)
#: keys of eval_results.json that describe the run, not its result (never compared with a recomputation)
_RUN_FACTS = ("timings", "created_at", "code_version")
#: relative and absolute tolerance of a recomputed figure (the same code on the same bytes: only BLAS order)
_REL_TOL, _ABS_TOL = 1e-9, 1e-12
#: differences named in one problem line
_SHOWN = 5


class Report:
    """The problems found so far and the facts later checks need (ids, dim, the embeddings' sha256)."""

    def __init__(self, layout: ArtifactLayout, sample: int = DEFAULT_SAMPLE) -> None:
        self.layout = layout
        self.sample = sample
        self.problems: list[str] = []
        self.json: dict[str, Any] = {}
        #: keys of the JSON artifacts that passed their schema (only those feed a recomputation)
        self.valid: set[str] = set()
        self.ids: list[str] = []
        self.csv_ids: set[str] | None = None
        self.dim: int | None = None
        self.emb_sha: str | None = None
        #: the embeddings, once their size, checksum and rows checked out (None otherwise)
        self.vectors: np.ndarray | None = None
        #: the embeddings, ids and metadata checked out: recomputations from them are meaningful
        self.inputs_ok = False

    def rows(self, node: tuple[int, int]) -> np.ndarray:
        """The rows of a sampled check: the Node API's sample ``node`` (size, seed) and ``sample`` more (seed 0)."""
        n = len(self.ids)
        extra = (
            np.random.default_rng(0).choice(n, size=min(self.sample, n), replace=False) if n else np.zeros(0)
        )
        return np.union1d(sample_rows(n, *node), extra.astype(np.int64)).astype(np.int64)

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
    from research_job.publish.manifest import MANIFEST_NAME

    files, unknown = listed_files(rep.layout)
    for rel in unknown:
        if rel == MANIFEST_NAME:  # a release's cache folder (checked by _check_manifest)
            continue
        rep.add(f"{rep.layout.version_dir / rel}: not an artifact of artifact_schema/artifacts.json")
    present = {rel for rel, _ in files}
    for a in artifacts().values():
        if a.required and not a.is_folder and a.path not in present:
            rep.add(f"{rep.layout.version_dir / a.path}: missing (a version folder needs it)")
        if a.format == "json" and a.path in present and a.schema is not None:
            path = rep.layout.path(a.key)
            try:
                rep.json[a.key] = schema.read_artifact(path, a.schema)
                rep.valid.add(a.key)
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
    """The embeddings, ids and their sidecar against each other and the metadata; sets ``rep.vectors`` and
    ``rep.inputs_ok`` when they all check out."""
    layout = rep.layout
    meta = rep.json.get("embeddings_meta")
    tids = rep.json.get("track_ids_json")
    if not isinstance(meta, dict):
        return
    before = len(rep.problems)
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
    seg = meta.get("segments")
    if isinstance(seg, dict):
        rep.sha_matches(
            layout.embeddings_dir / str(seg.get("file")),
            seg.get("sha256"),
            "embeddings_meta.json segments.sha256",
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
    vectors = None
    if rep.dim and layout.embeddings_f32.is_file():
        vectors = _vectors(rep, layout.embeddings_f32, len(rep.ids), rep.dim)
        if vectors is not None and vectors.size:
            _check_rows(rep, layout.embeddings_f32, vectors, unit_norm_tol)
    ok = len(rep.problems) == before and rep.csv_ids is not None and vectors is not None
    ok = ok and {"embeddings_meta", "track_ids_json"} <= rep.valid
    if ok:
        rep.vectors, rep.inputs_ok = vectors, True


def _check_sources(rep: Report) -> None:
    """``sources.json`` and ``raw.f32`` (what an incremental run copies from) against the meta and each other:
    a base whose raw rows or fingerprints are off would copy wrong vectors into the next version."""
    layout = rep.layout
    meta = rep.json.get("embeddings_meta")
    files = meta.get("files", {}) if isinstance(meta, dict) else {}
    if not files.get("sources"):
        return  # written before incremental embedding existed
    where = "embeddings_meta.json files.sources_sha256"
    if not rep.sha_matches(layout.embed_sources, files.get("sources_sha256"), where):
        return
    src = rep.json.get("embed_sources")
    if not isinstance(src, dict) or "embed_sources" not in rep.valid:
        return
    raw = src["raw"]
    if not rep.sha_matches(layout.raw_f32, raw["sha256"], f"{layout.embed_sources} raw.sha256"):
        return
    if raw["count"] != len(rep.ids) or raw["dim"] != rep.dim:
        rep.add(
            f"{layout.embed_sources}: raw is {raw['count']} x {raw['dim']}, the embeddings "
            f"{len(rep.ids)} x {rep.dim}"
        )
    elif layout.raw_f32.stat().st_size != raw["count"] * raw["dim"] * 4:
        rep.add(
            f"{layout.raw_f32}: {layout.raw_f32.stat().st_size} bytes, not {raw['count']} x {raw['dim']} float32"
        )
    listed = [t["track_id"] for t in src["tracks"]]
    if rep.csv_ids is not None and set(listed) != rep.csv_ids:
        extra = sorted(set(listed) - rep.csv_ids)[:3]
        lacking = sorted(rep.csv_ids - set(listed))[:3]
        rep.add(
            f"{layout.embed_sources}: fingerprints do not cover {layout.tracks_csv} "
            f"(not in the CSV: {extra}, without a fingerprint: {lacking})"
        )


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
    """``index_meta.json`` against the embeddings, and every index file it lists (see :func:`_check_index`)."""
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
    _same_version(rep, layout.index_meta, imeta)
    for entry in imeta.get("indexes", []):
        _check_index(rep, entry, imeta.get("dim"))
    table = imeta.get("neighbors")
    if isinstance(table, dict):
        _check_table(rep, table)


def _same_version(rep: Report, path: Path, obj: dict[str, Any]) -> None:
    """``obj``'s artifact_version is the embeddings' (the Node API refuses a file of another version)."""
    emeta = rep.json.get("embeddings_meta")
    want = emeta.get("artifact_version") if isinstance(emeta, dict) else None
    if want is not None and obj.get("artifact_version") != want:
        rep.add(f"{path}: artifact_version {obj.get('artifact_version')!r} != embeddings_meta.json {want!r}")


def _check_index(rep: Report, entry: dict[str, Any], dim: Any) -> None:
    """One listed index: its file name and space, size, sha256, structure (hnswlib), ntotal, dim and the vectors
    of the sampled rows, which must be the embeddings' rows bit for bit."""
    layout = rep.layout
    backend = BACKENDS.get(str(entry.get("name")))
    path = layout.index_dir / str(entry.get("file"))
    if backend is not None:
        want = layout.path(backend.artifact).relative_to(layout.index_dir).as_posix()
        if entry.get("file") != want or entry.get("space") != "ip":
            rep.add(
                f"{layout.index_meta}: {entry.get('name')} entry has file {entry.get('file')!r}, space "
                f"{entry.get('space')!r}; expected {want!r}, 'ip'"
            )
            return
    if not path.is_file():
        rep.add(f"{path}: missing (listed in index_meta.json)")
        return
    if entry.get("size_bytes") != path.stat().st_size:
        rep.add(
            f"{path}: {path.stat().st_size} bytes != index_meta.json size_bytes {entry.get('size_bytes')}"
        )
    if not rep.sha_matches(path, entry.get("sha256"), "index_meta.json sha256"):
        return
    if backend is None or not isinstance(dim, int):
        return
    if backend.name == "hnswlib":
        # hnswlib trusts the file: check its graph before the library reads it (a bad link is a crash)
        try:
            header = hnsw_file.check_file(path, len(rep.ids), dim)
        except ArtifactError as e:
            rep.add(str(e))
            return
        m = (entry.get("params") or {}).get("M")
        if m is not None and m != header.m:
            rep.add(f"{path}: M {header.m} != index_meta.json params.M {m}")
    try:
        index = backend.load(path, dim)
    except Exception as e:  # noqa: BLE001 - any load failure is a reported problem
        rep.add(f"{path}: cannot be loaded as {entry.get('name')}: {e}")
        return
    if index.ntotal != len(rep.ids):
        rep.add(f"{path}: holds {index.ntotal} vectors, expected {len(rep.ids)}")
        return
    if index.dim != dim:
        rep.add(f"{path}: dim {index.dim} != {dim}")
        return
    if rep.vectors is not None:
        _check_index_vectors(rep, path, index)


def _stored(index: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(the vectors ``index`` stores for ``rows``, its labels sorted, where the library lists them)."""
    lib = index.index
    if hasattr(lib, "get_items"):  # hnswlib: labels are the row numbers
        got = np.asarray(lib.get_items(rows.tolist(), return_type="numpy"), dtype=np.float32)
        return got.reshape(rows.size, -1), np.sort(np.asarray(lib.get_ids_list(), dtype=np.int64))
    return np.asarray(lib.reconstruct_batch(rows), dtype=np.float32).reshape(rows.size, -1), None


def _check_index_vectors(rep: Report, path: Path, index: Any) -> None:
    """The sampled rows' vectors in ``index`` equal the embeddings' (hnswlib: and its labels are 0..N-1)."""
    assert rep.vectors is not None
    rows = rep.rows(NODE_HNSW_SAMPLE)
    try:
        got, labels = _stored(index, rows)
    except Exception as e:  # noqa: BLE001 - an index that cannot give its vectors back is a reported problem
        rep.add(f"{path}: cannot read back the vectors of {rows.size} sampled rows: {type(e).__name__}: {e}")
        return
    n = len(rep.ids)
    if labels is not None and not np.array_equal(labels, np.arange(n)):
        at = (
            int(np.nonzero(labels != np.arange(labels.size))[0][0])
            if labels.size == n
            else min(labels.size, n)
        )
        rep.add(f"{path}: labels are not the row indices 0..{n - 1} (first difference at position {at})")
        return
    diff = np.nonzero((got != rep.vectors[rows]).any(axis=1))[0]
    if diff.size:
        r = int(rows[diff[0]])
        d = int(np.nonzero(got[diff[0]] != rep.vectors[r])[0][0])
        rep.add(
            f"{path}: vector of row {r} differs from row {r} of {rep.layout.embeddings_f32} (component {d}: "
            f"{float(got[diff[0], d])!r} != {float(rep.vectors[r, d])!r}); {diff.size} of {rows.size} sampled "
            "rows differ"
        )


def _check_table(rep: Report, entry: dict[str, Any]) -> None:
    """Size, checksum and values of ``index/neighbors.i32`` against its ``index_meta.json`` entry; a plain table's
    lists best first by cosine; the sampled rows' lists equal a fresh exact ranking (plain or re-ranked)."""
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
    if not rep.sha_matches(path, entry.get("sha256"), "index_meta.json neighbors.sha256"):
        return
    found = neighbors.problems(table)
    for p in found:
        rep.add(f"{path}: {p}")
    ranking = entry.get("ranking")
    rerank = None
    if ranking != neighbors.COSINE_RANKING:
        try:
            rerank = evaluation.rerank_of(entry.get("rerank"))
        except ResearchJobError as e:
            rep.add(f"{rep.layout.index_meta}: neighbors.rerank: {e}")
            return
        if rerank.method == "none":
            rep.add(
                f"{rep.layout.index_meta}: neighbors.ranking is {ranking!r} but no neighbors.rerank names the method"
            )
            return
    if found or rep.vectors is None:
        return
    if rerank is None:
        bad = neighbors.order_problem(table, rep.vectors)
        if bad:
            rep.add(f"{path}: {bad} (the table does not match {rep.layout.embeddings_f32})")
            return
    bad = neighbors.spot_check(table, rep.vectors, rep.ids, rep.rows(NODE_TABLE_SAMPLE), rerank)
    if bad:
        rep.add(f"{path}: {bad}: the table does not match {rep.layout.embeddings_f32}")


def _check_eval(rep: Report) -> None:
    """``eval_results.json`` against the embeddings (sha256, version, n_tracks), then every figure in it and in
    ``sample_top5.json`` against a recomputation with the recorded parameters; ``sample_top5.md`` against the
    Markdown of ``sample_top5.json``."""
    layout = rep.layout
    ev = rep.json.get("eval_results")
    _check_sample_files(rep, isinstance(ev, dict))
    if not isinstance(ev, dict):
        return
    before = len(rep.problems)
    if rep.emb_sha is not None and ev.get("embeddings_sha256") != rep.emb_sha:
        rep.add(f"{layout.eval_results}: embeddings_sha256 {ev.get('embeddings_sha256')} != {rep.emb_sha}")
    _same_version(rep, layout.eval_results, ev)
    n, which = ev.get("n_tracks"), ev.get("tracks", "all")
    # an evaluation of a track subset (evaluate --tracks multi_label_albums) scores fewer tracks, never more
    if which == "all" and n != len(rep.ids):
        rep.add(f"{layout.eval_results}: n_tracks {n} != {len(rep.ids)} embeddings")
    elif which != "all" and not (isinstance(n, int) and 0 < n <= len(rep.ids)):
        rep.add(
            f"{layout.eval_results}: n_tracks {n} of tracks {which!r} is not 1..{len(rep.ids)} embeddings"
        )
    if len(rep.problems) == before and rep.inputs_ok and "eval_results" in rep.valid:
        _recompute_eval(rep, ev)


def _check_excerpt(rep: Report) -> None:
    """``excerpt_results.json`` refers to these embeddings (its figures need the audio: not recomputed here)."""
    ex = rep.json.get("excerpt_results")
    path = rep.layout.path("excerpt_results")
    if not isinstance(ex, dict):
        return
    if rep.emb_sha is not None and ex.get("embeddings_sha256") != rep.emb_sha:
        rep.add(f"{path}: embeddings_sha256 {ex.get('embeddings_sha256')} != {rep.emb_sha}")
    _same_version(rep, path, ex)


def _check_report(rep: Report) -> None:
    """``report.json`` and ``clusters.json`` refer to these embeddings and this version; the clusters list every
    embedded track once; the figures report.json names are the ones in ``eval/figures/`` (by sha256)."""
    layout = rep.layout
    for key in ("report_json", "clusters_json"):
        obj, path = rep.json.get(key), layout.path(key)
        if not isinstance(obj, dict):
            continue
        if rep.emb_sha is not None and obj.get("embeddings_sha256") != rep.emb_sha:
            rep.add(
                f"{path}: embeddings_sha256 {obj.get('embeddings_sha256')} != {rep.emb_sha}; rerun report"
            )
        _same_version(rep, path, obj)
    clusters = rep.json.get("clusters_json")
    if isinstance(clusters, dict) and "clusters_json" in rep.valid and rep.ids:
        listed = [t["track_id"] for t in clusters["tracks"]]
        if sorted(listed) != sorted(rep.ids):
            rep.add(
                f"{layout.path('clusters_json')}: does not list every embedded track once ({len(listed)} rows)"
            )
        k = clusters["k"]
        if any(t["cluster"] >= k for t in clusters["tracks"]):
            rep.add(f"{layout.path('clusters_json')}: a track's cluster is not one of 0..{k - 1}")
    report = rep.json.get("report_json")
    if isinstance(report, dict) and "report_json" in rep.valid:
        folder = layout.path("report_figures_dir")
        for fig in report["figures"]:
            rep.sha_matches(folder / fig["name"], fig["sha256"], f"{layout.path('report_json').name} figures")


def _check_previews(rep: Report) -> None:
    """``previews/previews.json`` against the files of ``previews/`` (each named one there, with its size and
    sha256, no other ``.ogg`` file), the embedded tracks (no id unknown to track_ids.json, none twice) and its
    own counts; the version is the embeddings'."""
    layout = rep.layout
    folder, path = layout.previews_dir, layout.previews_json
    obj = rep.json.get("previews_json")
    if not isinstance(obj, dict) or "previews_json" not in rep.valid:
        if isinstance(obj, dict) or path.is_file():
            return  # the schema problem is already reported
        if folder.is_dir() and any(f.suffix == ".ogg" for f in folder.iterdir()):
            rep.add(f"{folder}: preview files present without a readable {path.name}")
        return
    _same_version(rep, path, obj)
    ids = set(rep.ids)
    seen: Counter[str] = Counter()
    named: set[str] = set()
    for t in obj["tracks"]:
        tid = t["track_id"]
        seen[tid] += 1
        if "track_ids_json" in rep.valid and tid not in ids:
            rep.add(f"{path}: track {tid!r} is not in {layout.track_ids_json.name}")
        named.add(t["file"])
        full = layout.version_dir / t["file"]
        if full.is_symlink() or not full.is_file():
            rep.add(f"{full}: missing (named in {path.name} for track {tid!r})")
        elif full.stat().st_size != t["size_bytes"]:
            rep.add(f"{full}: {full.stat().st_size} bytes != {path.name} size_bytes {t['size_bytes']}")
        else:
            rep.sha_matches(full, t["sha256"], f"{path.name} sha256 of track {tid!r}")
    for f in obj["failed"]:
        seen[f["track_id"]] += 1
        if "track_ids_json" in rep.valid and f["track_id"] not in ids:
            rep.add(f"{path}: failed track {f['track_id']!r} is not in {layout.track_ids_json.name}")
    twice = sorted(t for t, c in seen.items() if c > 1)
    if twice:
        rep.add(f"{path}: tracks listed more than once: {twice[:_SHOWN]}")
    if len(named) != len(obj["tracks"]):
        rep.add(f"{path}: two tracks name the same file")
    c, n_ok, n_failed = obj["counts"], len(obj["tracks"]), len(obj["failed"])
    if (c["tracks"], c["written"] + c["reused"], c["failed"]) != (n_ok + n_failed, n_ok, n_failed):
        rep.add(f"{path}: counts {c} disagree with the {n_ok} tracks and {n_failed} failed it lists")
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            rel = layout.rel(f)
            if f.suffix == ".ogg" and rel not in named:
                rep.add(f"{f}: not named in {path.name} (a preview of no track; rerun previews)")


def _check_sample_files(rep: Report, has_eval: bool) -> None:
    """The sample files come with what they are made from; the Markdown is the JSON's, byte for byte."""
    layout = rep.layout
    sample = rep.json.get("sample_top5_json")
    md = layout.sample_top5_md
    if layout.sample_top5_json.is_file() and not has_eval:
        rep.add(f"{layout.sample_top5_json}: present without {layout.eval_results.name} (its parameters)")
    if not md.is_file():
        return
    if "sample_top5_json" not in rep.valid or not isinstance(sample, dict):
        rep.add(f"{md}: present without a valid {layout.sample_top5_json.name} (what it is rendered from)")
        return
    try:
        got = md.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        rep.add(f"{md}: unreadable as UTF-8 text ({type(e).__name__})")
        return
    want = evaluation.sample_markdown(sample)
    if got != want:
        a, b = got.split("\n"), want.split("\n")
        line = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        rep.add(
            f"{md}: differs from the Markdown of {layout.sample_top5_json.name} from line {line + 1} on "
            f"({len(a)} lines, expected {len(b)}); rerun evaluate to write it again"
        )


def _recompute_eval(rep: Report, ev: dict[str, Any]) -> None:
    """Recompute eval_results.json (and sample_top5.json) with the parameters they record; report what differs."""
    layout = rep.layout
    sample = rep.json.get("sample_top5_json") if "sample_top5_json" in rep.valid else None
    try:
        params = evaluation.recorded_params(ev, sample)
        results, samples = evaluation.evaluate_folder(layout, params)
    except ResearchJobError as e:
        rep.add(f"{layout.eval_results}: cannot be recomputed with its recorded parameters: {e}")
        return
    except Exception as e:  # noqa: BLE001 - any failure of the recomputation is a reported problem
        rep.add(
            f"{layout.eval_results}: cannot be recomputed with its recorded parameters: {type(e).__name__}: {e}"
        )
        return
    inputs = f"{layout.embeddings_f32.name} and {layout.tracks_csv.name}"
    how = (
        f"k {params.k}, label {params.label}, tracks {params.tracks}, rerank {params.rerank.method}, "
        f"{params.resamples} resamples, seed {params.seed}"
    )
    recorded = {k: v for k, v in ev.items() if k not in _RUN_FACTS}
    computed = {k: v for k, v in results.items() if k not in _RUN_FACTS}
    diffs = differences(recorded, computed)
    if diffs:
        rep.add(
            f"{layout.eval_results}: {len(diffs)} value(s) differ from a recomputation from {inputs} ({how}): "
            + "; ".join(diffs[:_SHOWN])
            + ("; ..." if len(diffs) > _SHOWN else "")
        )
    if isinstance(sample, dict):
        diffs = differences(sample, samples)
        if diffs:
            rep.add(
                f"{layout.sample_top5_json}: {len(diffs)} value(s) differ from a recomputation from {inputs} "
                f"({how}, {params.n_samples} sampled queries): "
                + "; ".join(diffs[:_SHOWN])
                + ("; ..." if len(diffs) > _SHOWN else "")
            )


def _show(v: Any) -> str:
    """A value for a problem line: numbers as they are, a string in short (ASCII-escaped), containers by size."""
    if isinstance(v, dict):
        return f"an object of {len(v)} keys"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    if isinstance(v, str):
        return ascii(v if len(v) <= 40 else v[:40] + "...")
    return json.dumps(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def differences(recorded: Any, computed: Any, path: str = "") -> list[str]:
    """Every leaf where ``recorded`` and ``computed`` (JSON values) differ, as ``path recorded X, recomputed Y``;
    numbers within a relative 1e-9 (absolute 1e-12) are equal."""
    where = path or "(top level)"
    if isinstance(recorded, dict) and isinstance(computed, dict):
        out: list[str] = []
        for key in sorted(set(recorded) | set(computed)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in computed:
                out.append(f"{sub} recorded {_show(recorded[key])}, absent from the recomputation")
            elif key not in recorded:
                out.append(f"{sub} absent, recomputed {_show(computed[key])}")
            else:
                out += differences(recorded[key], computed[key], sub)
        return out
    if isinstance(recorded, list) and isinstance(computed, list):
        out = (
            []
            if len(recorded) == len(computed)
            else [f"{where} has {len(recorded)} entries, recomputed {len(computed)}"]
        )
        for i, (a, b) in enumerate(zip(recorded, computed, strict=False)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    if _is_number(recorded) and _is_number(computed):
        same = math.isclose(recorded, computed, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)
    else:
        same = type(recorded) is type(computed) and recorded == computed
    return [] if same else [f"{where} recorded {_show(recorded)}, recomputed {_show(computed)}"]


def _check_export_report(rep: Report) -> None:
    """The metadata CSV is the one ``export_report.json`` records (file name and sha256)."""
    report = rep.json.get("export_report")
    if not isinstance(report, dict):
        return
    out = report.get("output") or {}
    if out.get("file") != rep.layout.tracks_csv.name:
        rep.add(
            f"{rep.layout.path('export_report')}: output.file {out.get('file')!r} != {rep.layout.tracks_csv.name!r}"
        )
    elif rep.layout.tracks_csv.is_file():
        rep.sha_matches(rep.layout.tracks_csv, out.get("sha256"), "export_report.json output.sha256")


def _check_tracks_columns(rep: Report) -> None:
    """The columnar metadata sidecar, when present: its binary file (size, sha256), the CSV it records, and every
    row equal to the CSV's row of the same track id, in embeddings row order."""
    from research_job import metadata_columns

    layout = rep.layout
    if rep.csv_ids is None or not rep.ids or not metadata_columns.exists(layout):
        return
    if layout.tracks_columns.is_file() and "tracks_columns" not in rep.valid:
        return  # the listing named the header's schema problem
    rep.problems.extend(metadata_columns.differences(layout, rep.ids))


def _check_similarity(rep: Report) -> None:
    """A similarity matrix (compare-models) against ``similarity_meta.json``: sizes, checksums, its metadata."""
    from research_job.similarity_matrix import read_matrix

    layout = rep.layout
    meta = rep.json.get("similarity_meta")
    present = [layout.path(k) for k in ("similarity_f32", "similarity_track_ids") if layout.path(k).is_file()]
    if not isinstance(meta, dict):
        for p in present:
            rep.add(f"{p}: present without a readable {layout.path('similarity_meta').name}")
        return
    try:
        read_matrix(layout)
    except ResearchJobError as e:
        rep.add(str(e))
    if layout.tracks_csv.is_file():
        rep.sha_matches(
            layout.tracks_csv, meta.get("metadata_sha256"), "similarity_meta.json metadata_sha256"
        )


def _check_manifest(rep: Report) -> None:
    """A release's ``manifest.json`` (the Node API's verified S3 cache folder): its schema and content digest,
    the facts it states against embeddings_meta.json, every listed file's size and sha256, and every published
    file of the folder listed."""
    from research_job.publish.manifest import MANIFEST_NAME, content_digest, scan_files

    layout = rep.layout
    path = layout.version_dir / MANIFEST_NAME
    if not path.is_file():
        return
    try:
        manifest = schema.read_artifact(path, "manifest")
    except ResearchJobError as e:
        rep.add(str(e))
        return
    digest = content_digest(manifest["files"])
    if digest != manifest["content_sha256"]:
        rep.add(
            f"{path}: content digest of files is {digest} but content_sha256 says {manifest['content_sha256']}"
        )
    emeta = rep.json.get("embeddings_meta")
    if isinstance(emeta, dict):
        facts = {
            "artifact_version": emeta.get("artifact_version"),
            "model": (emeta.get("model") or {}).get("name"),
            "count": emeta.get("count"),
            "dim": emeta.get("dim"),
            "created_at": emeta.get("created_at"),
        }
        for key, want in facts.items():
            if manifest.get(key) != want:
                rep.add(f"{path}: {key} {_show(manifest.get(key))} != embeddings_meta.json {_show(want)}")
    listed = set()
    for f in manifest["files"]:
        listed.add(f["path"])
        full = layout.version_dir / f["path"]
        if not full.is_file() or full.is_symlink():
            rep.add(f"{full}: missing (listed in {MANIFEST_NAME})")
        elif full.stat().st_size != f["size_bytes"]:
            rep.add(f"{full}: {full.stat().st_size} bytes != {MANIFEST_NAME} size_bytes {f['size_bytes']}")
        else:
            rep.sha_matches(full, f["sha256"], f"{MANIFEST_NAME} sha256")
    for rel in scan_files(layout.version_dir, include_audio=bool(manifest.get("include_audio"))):
        if rel.as_posix() not in listed:
            rep.add(
                f"{layout.version_dir / rel}: not listed in {MANIFEST_NAME} (the folder is not that release)"
            )


def _check_interactions(rep: Report) -> None:
    """``interactions/interactions.csv`` is the file ``interactions_report.json`` records (name and sha256)."""
    report = rep.json.get("interactions_report")
    csv_path = rep.layout.path("interactions_csv")
    if not isinstance(report, dict) or not csv_path.is_file():
        return
    out = report.get("output") or {}
    if out.get("file") != csv_path.name:
        rep.add(
            f"{rep.layout.path('interactions_report')}: output.file {out.get('file')!r} != {csv_path.name!r}"
        )
    else:
        rep.sha_matches(csv_path, out.get("sha256"), "interactions_report.json output.sha256")


def _check_recs(rep: Report) -> None:
    """``recs/`` against ``recs_meta.json``: every file's sha256 and size against its recorded shape, the shapes
    against each other and the embeddings, the track ids' checksum, sorted unique user ids, the CSR (offsets from 0,
    monotone, ending at its length; track rows in range and ascending within a listener; non-zero weights), the
    popularity lists (known tracks, score order), the interactions' checksum, and recs_eval.json's headline equal to
    recs_meta.json's metrics."""
    from research_job.recs.artifacts import BINARIES

    layout = rep.layout
    keys = [*BINARIES, "recs_user_ids", "recs_popularity", "recs_eval"]
    meta = rep.json.get("recs_meta")
    if not isinstance(meta, dict) or "recs_meta" not in rep.valid:
        for key in keys:
            if layout.path(key).is_file():
                rep.add(f"{layout.path(key)}: present without a valid {layout.path('recs_meta').name}")
        return
    mpath = layout.path("recs_meta")
    _same_version(rep, mpath, meta)
    emb = meta["embeddings"]
    if layout.track_ids_json.is_file():
        rep.sha_matches(
            layout.track_ids_json, emb["track_ids_sha256"], "recs_meta.json embeddings.track_ids_sha256"
        )
    if rep.emb_sha is not None and emb["embeddings_sha256"] != rep.emb_sha:
        rep.add(
            f"{mpath}: embeddings_sha256 {emb['embeddings_sha256']} != embeddings_meta.json {rep.emb_sha}"
        )
    if rep.dim is not None and emb["dim"] != rep.dim:
        rep.add(f"{mpath}: embeddings dim {emb['dim']} != embeddings_meta.json dim {rep.dim}")
    csv_path = layout.path("interactions_csv")
    if csv_path.is_file():
        rep.sha_matches(
            csv_path, meta["data"]["interactions_sha256"], "recs_meta.json data.interactions_sha256"
        )
    files = meta["files"]
    arrays: dict[str, np.ndarray] = {}
    for key, entry in files.items():
        path = layout.path(key)
        if path.name != entry["file"]:
            rep.add(f"{mpath}: files.{key}.file {entry['file']!r} != {path.name!r}")
            continue
        if key in BINARIES and path.is_file():
            dtype = BINARIES[key][0]
            shape = entry["shape"] or []
            want = int(np.prod(shape)) * np.dtype(dtype).itemsize
            if entry["dtype"] != BINARIES[key][1] or not shape:
                rep.add(
                    f"{mpath}: files.{key} dtype {entry['dtype']!r} shape {shape}, expected {BINARIES[key][1]}"
                )
                continue
            if path.stat().st_size != want:
                rep.add(f"{path}: {path.stat().st_size} bytes, recs_meta.json shape {shape} needs {want}")
                continue
        if rep.sha_matches(path, entry["sha256"], f"recs_meta.json files.{key}.sha256") and key in BINARIES:
            arrays[key] = np.fromfile(path, dtype=BINARIES[key][0]).reshape(entry["shape"])
    users = rep.json.get("recs_user_ids")
    n_users = None
    if isinstance(users, dict) and "recs_user_ids" in rep.valid:
        ids = users["user_ids"]
        n_users = len(ids)
        if users["count"] != n_users:
            rep.add(f"{layout.path('recs_user_ids')}: count {users['count']} != {n_users} ids listed")
        if ids != sorted(ids):
            rep.add(f"{layout.path('recs_user_ids')}: user ids are not sorted")
    _check_recs_shapes(rep, meta, arrays, n_users)
    _check_recs_csr(rep, arrays)
    _check_recs_popularity(rep)
    ev = rep.json.get("recs_eval")
    if isinstance(ev, dict):
        _same_version(rep, layout.path("recs_eval"), ev)
        diffs = differences(meta["metrics"], ev.get("models"), "metrics")
        if diffs:
            rep.add(f"{mpath}: metrics differ from recs_eval.json models: {'; '.join(diffs[:_SHOWN])}")


def _check_recs_shapes(
    rep: Report, meta: dict[str, Any], arrays: dict[str, np.ndarray], n_users: int | None
) -> None:
    """The recorded shapes against the user ids, the track ids, the factors and each other."""
    mpath = rep.layout.path("recs_meta")
    factors = meta["models"]["als"]["factors"]
    shapes = {k: list(v["shape"] or []) for k, v in meta["files"].items()}
    nnz = shapes.get("recs_user_items", [None])[0]
    want: dict[str, list[Any]] = {
        "recs_item_factors": [len(rep.ids) if rep.ids else None, factors],
        "recs_user_items_weights": [nnz],
    }
    if n_users is not None:
        want["recs_user_factors"] = [n_users, factors]
        want["recs_user_items_offsets"] = [n_users + 1]
    for key, shape in want.items():
        got = shapes.get(key)
        if got is not None and any(w is not None and g != w for g, w in zip(got, shape, strict=False)):
            rep.add(f"{mpath}: files.{key}.shape {got}, expected {shape}")
    factors_ok = [k for k in ("recs_user_factors", "recs_item_factors") if k in arrays]
    for key in factors_ok:
        if not np.isfinite(arrays[key]).all():
            rep.add(f"{rep.layout.path(key)}: NaN or inf factors")


def _check_recs_csr(rep: Report, arrays: dict[str, np.ndarray]) -> None:
    """Offsets from 0, monotone, ending at the entries' count; track rows in range and ascending per listener."""
    off = arrays.get("recs_user_items_offsets")
    idx = arrays.get("recs_user_items")
    w = arrays.get("recs_user_items_weights")
    layout = rep.layout
    if off is None:
        return
    opath = layout.path("recs_user_items_offsets")
    if off.size == 0 or off[0] != 0 or (np.diff(off) < 0).any():
        at = int(np.argmax(np.diff(off) < 0)) if off.size > 1 else 0
        rep.add(f"{opath}: offsets do not start at 0 and never decrease (first bad step after position {at})")
        return
    if idx is None:
        return
    ipath = layout.path("recs_user_items")
    if off[-1] != idx.size:
        rep.add(f"{opath}: last offset {int(off[-1])} != {idx.size} entries in {ipath.name}")
        return
    n = len(rep.ids)
    if idx.size and (idx.min() < 0 or (n and idx.max() >= n)):
        rep.add(f"{ipath}: track rows out of range 0..{n - 1} (min {int(idx.min())}, max {int(idx.max())})")
        return
    if idx.size > 1:
        step = np.diff(idx.astype(np.int64))
        starts = np.zeros(idx.size - 1, dtype=bool)
        inner = off[1:-1]
        starts[inner[(inner > 0) & (inner < idx.size)] - 1] = True
        bad = np.flatnonzero((step <= 0) & ~starts)
        if bad.size:
            rep.add(f"{ipath}: track rows not strictly ascending within a listener (entry {int(bad[0]) + 1})")
    if w is not None and (w.size != idx.size or not np.isfinite(w).all() or (w == 0).any()):
        rep.add(f"{layout.path('recs_user_items_weights')}: weights must be finite, non-zero, one per entry")


def _check_recs_popularity(rep: Report) -> None:
    """The popularity lists name embedded tracks, once each, in score order (score desc, then row asc)."""
    pop = rep.json.get("recs_popularity")
    if not isinstance(pop, dict) or "recs_popularity" not in rep.valid or not rep.ids:
        return
    row = {t: i for i, t in enumerate(rep.ids)}
    path = rep.layout.path("recs_popularity")
    for name in ("global", "trending"):
        items = pop[name]
        unknown = [e["track_id"] for e in items if e["track_id"] not in row]
        if unknown:
            rep.add(f"{path}: {name} lists tracks not in track_ids.json, e.g. {unknown[:3]}")
            continue
        keys = [(-e["score"], row[e["track_id"]]) for e in items]
        if keys != sorted(keys) or len(set(k[1] for k in keys)) != len(keys):
            rep.add(f"{path}: {name} is not ordered by score desc, then track row asc (or repeats a track)")


def check(layout: ArtifactLayout, unit_norm_tol: float = 1e-4, *, sample: int = DEFAULT_SAMPLE) -> list[str]:
    """Every problem found in the version folder ``layout`` (empty list = valid).

    Args:
        unit_norm_tol: largest accepted | ||row|| - 1 | of an embedding row.
        sample: rows checked, beyond the Node API's own, against a fresh exact ranking (the neighbour table) and
            against the embeddings (each index's stored vectors); seeded.
    """
    if not layout.version_dir.is_dir():
        return [f"{layout.version_dir}: no such version folder"]
    rep = Report(layout, sample)
    _check_listing(rep)
    _check_embeddings(rep, unit_norm_tol)
    _check_sources(rep)
    _check_segments(rep, unit_norm_tol)
    _check_frames(rep)
    _check_head(rep)
    _check_indexes(rep)
    _check_tracks_columns(rep)
    _check_eval(rep)
    _check_excerpt(rep)
    _check_report(rep)
    _check_previews(rep)
    _check_export_report(rep)
    _check_similarity(rep)
    _check_interactions(rep)
    _check_recs(rep)
    _check_manifest(rep)
    return rep.problems
