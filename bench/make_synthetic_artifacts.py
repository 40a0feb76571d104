"""Generate a schema-valid artifact version folder of N x D synthetic embeddings (for the eval and Node benchmarks).

Writes ``<out>/v1_model_synthetic-n<N>-d<D>/`` with ``embeddings/{embeddings.f32, track_ids.json,
embeddings_meta.json}``, ``metadata/tracks_metadata.csv``, the columnar metadata sidecar ``index/tracks_columns.{json,
bin}`` (:mod:`research_job.metadata_columns`, as build-index writes it; ``add_columns`` adds it to an older folder)
and, unless ``--no-hnsw``, ``index/{hnsw.index, index_meta.json}`` (hnswlib, M=16, ef_construction=200, labels =
row numbers). JSON files go through
``research_job.schema.write_artifact`` so they are validated against ``artifact_schema/``.

Vectors are the seeded Gaussian mixture of :mod:`bench.synthetic`; each mixture cluster belongs to one composer
(about 5 clusters per composer, so a composer is not one tight blob), tracks of a composer are grouped into albums
of about 10, and 2 % of tracks have no composer. Same arguments -> same bytes (except timestamps).

Run: ``python -m bench.make_synthetic_artifacts --out .cache/bench/artifacts --n 100000 --dim 200``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.synthetic import mixture_centres, sample_mixture

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 64


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def synthetic_catalogue(
    n: int, dim: int, seed: int = 0
) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """Vectors (float32, unit rows), track ids and metadata rows of a synthetic catalogue of ``n`` tracks."""
    n_clusters = max(16, n // 100)
    centres, weights = mixture_centres(n_clusters, dim, seed)
    x, cluster = sample_mixture(n, centres, weights, 1.0, seed + 1)
    rng = np.random.default_rng(seed + 3)
    n_composers = max(2, n_clusters // 5)
    composer_of_cluster = rng.integers(0, n_composers, size=n_clusters)
    composer = composer_of_cluster[cluster]
    missing = rng.random(n) < 0.02
    ids = [f"t{i:07d}" for i in range(n)]
    # albums: consecutive tracks of one composer in groups of 10
    order = np.argsort(composer, kind="stable")
    album = np.empty(n, dtype=np.int64)
    track_no = np.empty(n, dtype=np.int64)
    album[order] = np.arange(n) // 10
    track_no[order] = np.arange(n) % 10 + 1
    rows = []
    for i in range(n):
        name = None if missing[i] else f"Composer {int(composer[i]):05d}"
        rows.append(
            {
                "track_id": ids[i],
                "album_id": f"a{int(album[i]):06d}",
                "track_no": int(track_no[i]),
                "title": f"Synthetic track {i}",
                "composer": name,
                "audio_s3_key": f"audio/a{int(album[i]):06d}/{ids[i]}.m4a",
                "duration_sec": 30.0,
                "composer_raw": name,
                "composer_missing": bool(missing[i]),
            }
        )
    return x, ids, rows


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    from research_job.metadata import CSV_COLUMNS

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(
            [
                "" if r[c] is None else ("true" if r[c] is True else "false" if r[c] is False else r[c])
                for c in CSV_COLUMNS
            ]
        )
    return buf.getvalue().encode("utf-8")


def add_neighbors(vdir: Path, k: int) -> dict[str, Any]:
    """Add ``index/neighbors.i32`` (the exact top-``k`` table, :mod:`research_job.neighbors`) to a complete
    folder with an ``index_meta.json``, and list it there; reused when present. Returns the table's entry."""
    from research_job import neighbors, schema
    from research_job.embeddings import load_embeddings
    from research_job.layout import ArtifactLayout

    layout = ArtifactLayout(vdir)
    meta = schema.read_artifact(layout.index_meta, "index_meta")
    done = vdir / f".complete-neighbors-k{k}"
    if done.is_file() and meta.get("neighbors", {}).get("k") == k:
        return meta["neighbors"]
    x, ids, _ = load_embeddings(layout)
    _, entry = neighbors.build(x, ids, k, layout.neighbors_table)
    schema.write_artifact(layout.index_meta, "index_meta", {**meta, "neighbors": entry})
    done.write_text(_now() + "\n", encoding="utf-8")
    return entry


def add_columns(vdir: Path) -> dict[str, Any] | None:
    """Write the columnar metadata sidecar of a complete folder (reused when its header is there); its header."""
    from research_job import metadata_columns, schema
    from research_job.layout import ArtifactLayout

    layout = ArtifactLayout(vdir)
    if layout.tracks_columns.is_file() and layout.tracks_columns_bin.is_file():
        return schema.read_artifact(layout.tracks_columns, "tracks_columns")
    meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
    ids = schema.read_artifact(layout.track_ids_json, "track_ids")["track_ids"]
    return metadata_columns.write(layout, ids, meta["files"]["track_ids_sha256"], meta["artifact_version"])


def make_artifacts(
    out_root: str | Path, n: int, dim: int, *, seed: int = 0, hnsw: bool = True, threads: int = 0
) -> Path:
    """Write the version folder for ``n`` x ``dim`` and return its path (reused when already complete).

    Raises:
        research_job.errors.SchemaValidationError: a generated JSON file does not match its schema.
    """
    from research_job import schema
    from research_job.embeddings import write_embeddings
    from research_job.io.atomic import write_bytes
    from research_job.layout import ArtifactLayout

    name = f"synthetic-n{n}-d{dim}-s{seed}"
    version = f"v1_model_{name}"
    vdir = Path(out_root) / version
    done = vdir / ".complete" if not hnsw else vdir / ".complete-hnsw"
    if done.is_file():
        add_columns(vdir)
        return vdir
    t0 = time.perf_counter()
    x, ids, rows = synthetic_catalogue(n, dim, seed)
    emb_dir, meta_dir, idx_dir = vdir / "embeddings", vdir / "metadata", vdir / "index"
    for d in (emb_dir, meta_dir, idx_dir):
        d.mkdir(parents=True, exist_ok=True)
    write_bytes(meta_dir / "tracks_metadata.csv", _csv_bytes(rows))
    gen_sec = time.perf_counter() - t0
    write_embeddings(
        ArtifactLayout(vdir),
        x,
        ids,
        model_name=name,
        info={
            "version": "bench.synthetic gaussian mixture on the sphere",
            "weights_sha256": None,
            "pooling": "none",
            "layer": None,
            "params": {"seed": seed, "n_clusters": max(16, n // 100), "spread": 1.0},
        },
        dim=dim,
        sample_rate=16000,
        stats={
            "n_input_tracks": n,
            "n_embedded": n,
            "n_failed": 0,
            "audio_sec": 30.0 * n,
            "wall_sec": gen_sec,
        },
    )
    add_columns(vdir)
    emb_path = emb_dir / "embeddings.f32"
    emb_sha = _sha256_file(emb_path)
    if hnsw:
        import hnswlib

        t1 = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=n, M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, random_seed=seed)
        index.add_items(x, np.arange(n), num_threads=threads or -1)
        index.set_ef(HNSW_EF_SEARCH)
        build_sec = time.perf_counter() - t1
        idx_path = idx_dir / "hnsw.index"
        tmp = idx_dir / "hnsw.index.tmp"
        index.save_index(str(tmp))
        tmp.replace(idx_path)
        from importlib import metadata

        schema.write_artifact(
            idx_dir / "index_meta.json",
            "index_meta",
            {
                "schema_version": "1.0",
                "artifact_version": version,
                "metric": "cosine",
                "count": n,
                "dim": dim,
                "embeddings_sha256": emb_sha,
                "recall_queries": 0,
                "indexes": [
                    {
                        "name": "hnswlib",
                        "library": "hnswlib",
                        "library_version": metadata.version("hnswlib"),
                        "type": "hnswlib.Index",
                        "file": "hnsw.index",
                        "space": "ip",
                        "exact": False,
                        "params": {
                            "M": HNSW_M,
                            "ef_construction": HNSW_EF_CONSTRUCTION,
                            "ef_search": HNSW_EF_SEARCH,
                        },
                        "build_sec": round(build_sec, 3),
                        "size_bytes": idx_path.stat().st_size,
                        "sha256": _sha256_file(idx_path),
                        "recall_at_5": None,
                        "recall_at_10": None,
                    }
                ],
                "created_at": _now(),
                "code_version": "bench-synthetic",
            },
        )
    done.write_text(_now() + "\n", encoding="utf-8")
    return vdir


def main(argv: list[str] | None = None) -> int:
    """CLI: write one synthetic version folder and print its path."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="artifacts root; the version folder is created inside")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-hnsw", action="store_true", help="skip the hnswlib index (and index_meta.json)")
    ap.add_argument("--threads", type=int, default=0, help="hnswlib build threads (0 = all cores)")
    ap.add_argument(
        "--neighbors-k", type=int, default=0, help="also write the exact top-K table (needs the index)"
    )
    a = ap.parse_args(argv)
    if a.n < 1 or a.dim < 1 or a.neighbors_k < 0:
        ap.error(f"--n and --dim must be >= 1, --neighbors-k >= 0 (got {a.n}, {a.dim}, {a.neighbors_k})")
    if a.neighbors_k and a.no_hnsw:
        ap.error("--neighbors-k is listed in index_meta.json, which --no-hnsw does not write")
    vdir = make_artifacts(a.out, a.n, a.dim, seed=a.seed, hnsw=not a.no_hnsw, threads=a.threads)
    if a.neighbors_k:
        add_neighbors(vdir, a.neighbors_k)
    print(vdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
