"""build-index: ``embeddings.f32`` -> ``index/faiss.index``, ``faiss_hnsw.index``, ``hnsw.index``, ``neighbors.i32``
+ ``index_meta.json``, and the embedded tracks' metadata as columns (``tracks_columns.json`` + ``.bin``,
:mod:`research_job.metadata_columns`), which the Node API loads instead of parsing the CSV.

Every index uses inner product on the L2-normalised rows (= cosine), ids = row numbers. The recall@5 and @10 of
each ANN index are measured against the exact reference ranking (:mod:`research_job.search`) with the query's
own row excluded on both sides, over all rows or a seeded sample of ``recall_queries``. ``ef_search`` is
doubled from the configured value until recall@5 >= ``target_recall`` (or ``max_ef_search``); the value used is
what ``index_meta.json`` records, since the Node API must search with the same one.

With ``neighbors_k`` > 0 it also writes the exact top-``neighbors_k`` table of every track
(:mod:`research_job.neighbors`), whose first 10 columns then serve as the recall ground truth.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from research_job import metadata_columns, neighbors, schema
from research_job.config import CommonConfig, option
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError, ConfigError
from research_job.index import BACKENDS
from research_job.index.base import VectorIndex
from research_job.layout import artifact_version
from research_job.provenance import code_version, sha256_file, utc_now
from research_job.rerank import RerankOptions
from research_job.search import search
from research_job.steps import Step

LOG = logging.getLogger(__name__)

TARGET_RECALL = 0.99
MAX_EF_SEARCH = 4096
ORDER = ("faiss-flat", "faiss-hnsw", "hnswlib")


@dataclass(frozen=True)
class BuildIndexConfig(RerankOptions):
    """build-index: embeddings -> index/faiss.index, faiss_hnsw.index, hnsw.index, neighbors.i32, index_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    hnsw_m: int = option(16, "HNSW graph degree M (both HNSW indexes)")
    ef_construction: int = option(200, "HNSW candidate list size while building")
    ef_search: int = option(64, f"first HNSW search ef tried; doubled until recall@5 >= {TARGET_RECALL}")
    recall_queries: int = option(
        2000, "corpus vectors used as queries to measure ANN recall (all when fewer)"
    )
    seed: int = option(0, "seed of the recall sample and of the HNSW builds")
    #: an exact all-pairs search, O(N^2 D): ~30 s at 100k x 200, ~50 min at 1M on 2 cores
    neighbors_k: int = option(20, "K of index/neighbors.i32, every track's exact top-K; 0 = no table")


def check(cfg: BuildIndexConfig) -> None:
    """Refuse HNSW parameters and counts that cannot build.

    Raises:
        ConfigError: naming the bad value.
    """
    if cfg.hnsw_m < 2 or cfg.ef_construction < 1 or cfg.ef_search < 1:
        raise ConfigError(
            f"hnsw_m must be >= 2 and ef_construction, ef_search >= 1; got {cfg.hnsw_m}, "
            f"{cfg.ef_construction}, {cfg.ef_search}"
        )
    if cfg.neighbors_k < 0:
        raise ConfigError(f"neighbors_k must be >= 0 (0 = no neighbour table), got {cfg.neighbors_k}")
    if cfg.recall_queries < 1:
        raise ConfigError(f"recall_queries must be >= 1, got {cfg.recall_queries}")
    if cfg.rerank != "none" and not cfg.neighbors_k:
        raise ConfigError(f"rerank {cfg.rerank!r} orders the neighbour table: set neighbors_k >= 1")
    _ = cfg.rerank_spec  # refuses bad re-ranking parameters


def recall_sample(n: int, n_queries: int, seed: int) -> np.ndarray:
    """Rows used as recall queries: all rows when ``n <= n_queries``, else a seeded sorted sample."""
    if n <= n_queries:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_queries, replace=False))


def ann_topk_excluding_self(index: VectorIndex, vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Top-k ids of ``vectors[rows]`` from ``index`` with the query's own row removed (-1 pads)."""
    kk = min(k + 1, index.ntotal)
    _, ids = index.search(vectors[rows], kk)
    out = np.full((rows.size, k), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        got = [int(j) for j in ids[i] if j >= 0 and j != r][:k]
        out[i, : len(got)] = got
    return out


def recall_at(ann: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean over queries of |ANN top-k ∩ exact top-k| / |exact top-k| (exact -1 pads ignored)."""
    vals = []
    for a, e in zip(ann[:, :k], exact[:, :k], strict=True):
        truth = {int(x) for x in e if x >= 0}
        if truth:
            vals.append(len(truth & {int(x) for x in a if x >= 0}) / len(truth))
    return float(np.mean(vals)) if vals else 1.0


def run(cfg: BuildIndexConfig) -> dict[str, Any]:
    """Build the three indexes, measure ANN recall, write ``index_meta.json``.

    Returns:
        the ``index_meta.json`` dict.

    Raises:
        ArtifactError: embeddings missing or empty; ConfigError: bad HNSW parameters.
    """
    check(cfg)
    layout = cfg.common.layout
    vectors, ids, emb_meta = load_embeddings(layout)
    n, dim = vectors.shape
    if n == 0:
        raise ArtifactError(f"{layout.embeddings_f32} has no rows")
    rows = recall_sample(n, cfg.recall_queries, cfg.seed)
    table_entry = None
    if cfg.neighbors_k:
        layout.index_dir.mkdir(parents=True, exist_ok=True)
        spec = cfg.rerank_spec
        table, table_entry = neighbors.build(vectors, ids, cfg.neighbors_k, layout.neighbors_table, spec)
        LOG.info("Exact top-%d of all %d tracks in %.2fs", cfg.neighbors_k, n, table_entry["build_sec"])
    else:
        layout.neighbors_table.unlink(missing_ok=True)  # a table of earlier embeddings must not outlive them
    if cfg.neighbors_k >= 10 and cfg.rerank == "none":  # a re-ranked table is not the cosine ground truth
        exact = table[rows, :10].astype(np.int64)
    else:
        t0 = time.perf_counter()
        exact = search(vectors, ids, vectors[rows], [ids[r] for r in rows], 10).rows
        LOG.info("Exact top-10 of %d recall queries in %.2fs", rows.size, time.perf_counter() - t0)
    hnsw_params = {"M": cfg.hnsw_m, "ef_construction": cfg.ef_construction, "ef_search": cfg.ef_search}
    entries = []
    for name in ORDER:
        backend = BACKENDS[name]
        params: dict[str, Any] = {} if backend.exact else dict(hnsw_params)
        t0 = time.perf_counter()
        index = backend.build(vectors, {**params, "seed": cfg.seed + 100})
        build_sec = time.perf_counter() - t0
        r5 = r10 = None
        if not backend.exact:
            ef = cfg.ef_search
            while True:
                index.set_ef(ef)
                ann = ann_topk_excluding_self(index, vectors, rows, 10)
                r5, r10 = recall_at(ann, exact, 5), recall_at(ann, exact, 10)
                if r5 >= TARGET_RECALL or ef >= MAX_EF_SEARCH:
                    break
                ef = min(MAX_EF_SEARCH, ef * 2)
            if r5 < TARGET_RECALL:
                LOG.warning("%s: recall@5 %.4f < %.2f even at ef_search %d", name, r5, TARGET_RECALL, ef)
            params["ef_search"] = ef
        path = layout.path(backend.artifact)
        index.save(path)
        entries.append(
            {
                "name": name,
                "library": backend.library,
                "library_version": backend.library_version(),
                "simd": backend.simd(),
                "type": backend.type_name,
                "file": path.name,
                "space": "ip",
                "exact": backend.exact,
                "params": params,
                "build_sec": round(build_sec, 4),
                "size_bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "recall_at_5": r5,
                "recall_at_10": r10,
            }
        )
        LOG.info("%s: built in %.2fs, recall@5 %s, recall@10 %s, params %s", name, build_sec, r5, r10, params)
    meta = {
        "schema_version": "1.0",
        "artifact_version": artifact_version(layout, emb_meta["model"]["name"]),
        "metric": "cosine",
        "count": n,
        "dim": dim,
        "embeddings_sha256": emb_meta["files"]["embeddings_sha256"],
        "recall_queries": int(rows.size),
        "indexes": entries,
        **({"neighbors": table_entry} if table_entry else {}),
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    # the serving step owns what the API loads: the metadata of these rows, columnar (no CSV parse at start-up);
    # written before index_meta.json, which stays the last file of the step
    cols = metadata_columns.write(
        layout, ids, emb_meta["files"]["track_ids_sha256"], meta["artifact_version"]
    )
    if cols is not None:
        LOG.info(
            "Columnar metadata of %d tracks: %s (%d bytes)", n, layout.tracks_columns_bin, cols["size_bytes"]
        )
    schema.write_artifact(layout.index_meta, "index_meta", meta)
    return meta


STEP = Step(
    name="build_index",
    config=BuildIndexConfig,
    summary="Build the FAISS exact, FAISS HNSW and hnswlib cosine indexes and the exact neighbour table.",
    example="research-job build-index --hnsw-m 16 --ef-search 64 --neighbors-k 20",
    run=run,
    check=check,
    pipeline=50,
)
