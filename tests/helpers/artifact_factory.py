"""Seeded generator of a small, complete, schema-valid artifact version folder (for publish tests).

Writes what the pipeline steps write (metadata CSV, embeddings.f32 + track_ids.json + embeddings_meta.json,
faiss / hnswlib indexes + index_meta.json) without running them, and the real ``eval_results.json`` of the
vectors (:func:`research_job.evaluation.evaluate_folder`, as evaluate computes it): vectors are drawn around
one centre per composer so that nearest neighbours mean something. Every JSON goes through
``research_job.schema.write_artifact``, so it matches the schemas on main.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from research_job.embeddings import write_embeddings
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, write_tracks_csv
from research_job.provenance import sha256_file
from research_job.schema import write_artifact


@dataclass(frozen=True)
class Corpus:
    """What was generated: the folder, the vectors (float32, L2-normalised) and the metadata rows."""

    layout: ArtifactLayout
    vectors: np.ndarray
    track_ids: list[str]
    rows: list[dict[str, object]]


def make_version(
    root: Path,
    *,
    model: str = "fake-model",
    n: int = 120,
    dim: int = 16,
    n_composers: int = 8,
    album_size: int = 6,
    seed: int = 0,
    created_at: str = "2026-11-22T04:00:00Z",
    indexes: tuple[str, ...] = ("faiss-flat", "hnswlib"),
    hnsw_m: int = 16,
    with_eval: bool = True,
) -> Corpus:
    """Write a version folder ``<root>/v1_model_<model>`` and return what it holds.

    Args:
        indexes: any of ``faiss-flat``, ``faiss-hnsw``, ``hnswlib``.
        created_at: also decides the default release name of a publish.
    """
    rng = np.random.default_rng(seed)
    layout = ArtifactLayout.for_model(root, model)
    centres = rng.standard_normal((n_composers, dim))
    composer_of = rng.integers(0, n_composers, size=n)
    x = centres[composer_of] + 0.8 * rng.standard_normal((n, dim))
    vectors = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    track_ids = [f"t{i:05d}" for i in range(n)]
    rows: list[dict[str, object]] = []
    for i, tid in enumerate(track_ids):
        missing = i % 17 == 5
        composer = None if missing else f"composer {int(composer_of[i])}"
        album = f"al{i // album_size:04d}"
        rows.append(
            {
                "track_id": tid,
                "album_id": album,
                "track_no": i % album_size + 1,
                "title": f'Piece {i}, "quoted", comma',
                "composer": composer,
                "audio_s3_key": f"catalogue/{album}/{tid}.m4a",
                "duration_sec": 30.0 + i % 7,
                "composer_raw": None if missing else f"Composer {int(composer_of[i])}",
                "composer_missing": missing,
            }
        )
    write_tracks_csv(layout.tracks_csv, [TrackRow(**r) for r in rows])  # type: ignore[arg-type]

    write_embeddings(
        layout,
        vectors,
        track_ids,
        model_name=model,
        info={
            "version": "fake-1",
            "weights_sha256": None,
            "pooling": "mean",
            "layer": None,
            "params": {"seed": seed},
        },
        dim=dim,
        sample_rate=16000,
        stats={"n_input_tracks": n, "n_embedded": n, "n_failed": 0, "audio_sec": 30.0 * n, "wall_sec": 1.0},
        created_at=created_at,
    )
    emb_sha = sha256_file(layout.embeddings_f32)
    artifact_version = layout.version_dir.name

    layout.index_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in indexes:
        t0 = time.perf_counter()
        if name in ("faiss-flat", "faiss-hnsw"):
            import faiss

            if name == "faiss-flat":
                ix = faiss.IndexFlatIP(dim)
                path, typ, params, exact = layout.faiss_index, "IndexFlatIP", {}, True
            else:
                ix = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
                ix.hnsw.efConstruction = 100
                path, typ, exact = layout.faiss_hnsw_index, "IndexHNSWFlat", False
                params = {"M": hnsw_m, "ef_construction": 100, "ef_search": 64}
            ix.add(vectors)
            faiss.write_index(ix, str(path) + ".tmp")
            Path(str(path) + ".tmp").replace(path)
            lib, version = "faiss", faiss.__version__
        elif name == "hnswlib":
            import hnswlib

            ix = hnswlib.Index(space="ip", dim=dim)
            ix.init_index(max_elements=n, ef_construction=100, M=hnsw_m, random_seed=seed)
            ix.add_items(vectors, np.arange(n), num_threads=1)
            path = layout.hnsw_index
            ix.save_index(str(path) + ".tmp")
            Path(str(path) + ".tmp").replace(path)
            lib, version, typ, exact = "hnswlib", "0.8.0", "hnswlib.Index", False
            params = {"M": hnsw_m, "ef_construction": 100, "ef_search": 64}
        else:
            raise ValueError(f"Unknown index {name!r}. Known: faiss-flat, faiss-hnsw, hnswlib")
        entries.append(
            {
                "name": name,
                "library": lib,
                "library_version": version,
                "type": typ,
                "file": path.name,
                "space": "ip",
                "exact": exact,
                "params": params,
                "build_sec": round(time.perf_counter() - t0, 4),
                "size_bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "recall_at_5": None if exact else 1.0,
                "recall_at_10": None if exact else 1.0,
            }
        )
    write_artifact(
        layout.index_meta,
        "index_meta",
        {
            "schema_version": "1.0",
            "artifact_version": artifact_version,
            "metric": "cosine",
            "count": n,
            "dim": dim,
            "embeddings_sha256": emb_sha,
            "recall_queries": n,
            "indexes": entries,
            "created_at": created_at,
            "code_version": "0.1.0",
        },
    )
    if with_eval:
        # the real evaluation of these vectors: validate (and so publish) recomputes it and refuses placeholders
        from research_job.evaluation import LabelEval, evaluate_folder

        ev, _ = evaluate_folder(layout, LabelEval(resamples=100))
        ev["created_at"] = created_at
        write_artifact(layout.eval_results, "eval_results", ev)
    return Corpus(layout, vectors, track_ids, rows)
