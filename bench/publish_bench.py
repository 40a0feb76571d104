"""Publish benchmark: S3 (moto server over HTTP) throughput, hnswlib bytes per vector, pgvector COPY/index/query.

Run: ``python bench/publish_bench.py [--out bench/results/publish.json]`` (about a minute on 2 cores).
Everything is local: moto's S3 server on 127.0.0.1 and a throw-away PostgreSQL (pgserver wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from research_job.publish.pgvector import connect, nearest_pgvector, publish_pgvector, table_name_for
from research_job.publish.s3 import publish_s3, verify_published
from tests.helpers.artifact_factory import make_version
from tests.helpers.publish_fixtures import FAKE_AWS_ENV, moto_s3_server, pg_server, s3_client


def bench_s3(root: Path, n: int, dim: int) -> dict:
    t0 = time.perf_counter()
    c = make_version(root, model="bench-model", n=n, dim=dim, indexes=("faiss-flat", "faiss-hnsw", "hnswlib"))
    gen_sec = time.perf_counter() - t0
    out: dict = {"n": n, "dim": dim, "generate_sec": round(gen_sec, 2)}
    hnsw_size = c.layout.hnsw_index.stat().st_size
    out["hnswlib_M"] = 16
    out["hnswlib_file_bytes"] = hnsw_size
    out["hnswlib_bytes_per_vector"] = round(hnsw_size / n, 1)
    out["hnswlib_formula_bytes_per_vector"] = (
        dim * 4 + 16 * 2 * 4 + 4 + 8
    )  # data + level-0 links + count + label
    # in a fresh process: in this one the allocator reuses pages freed after building the index
    code = (
        "import hnswlib, sys\n"
        "def rss():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) * 1024\n"
        f"ix = hnswlib.Index(space='ip', dim={dim}); before = rss()\n"
        f"ix.load_index({str(c.layout.hnsw_index)!r}, max_elements={n}); print(rss() - before)\n"
    )
    delta = int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    out["hnswlib_loaded_rss_bytes_per_vector"] = round(delta / n, 1)
    os.environ.update(FAKE_AWS_ENV)
    with moto_s3_server() as url:
        cl = s3_client(url)
        cl.create_bucket(Bucket="bench-artifacts")
        for label, threshold in (("single_part", 1 << 40), ("multipart_8MiB", 8 << 20)):
            prefix = f"bench-{label}"
            r = publish_s3(
                c.layout.version_dir,
                bucket="bench-artifacts",
                prefix=prefix,
                client=cl,
                multipart_threshold=threshold,
                multipart_chunksize=8 << 20,
            )
            t1 = time.perf_counter()
            r2 = publish_s3(
                c.layout.version_dir,
                bucket="bench-artifacts",
                prefix=prefix,
                client=cl,
                multipart_threshold=threshold,
            )
            noop = time.perf_counter() - t1
            t2 = time.perf_counter()
            v = verify_published(
                "bench-artifacts", prefix, "bench-model", dest=root / f"cache-{label}", client=cl
            )
            dl = time.perf_counter() - t2
            out[label] = {
                "files": r["files"],
                "bytes": r["bytes_total"],
                "multipart_uploads": r["multipart_uploads"],
                "publish_wall_sec": r["wall_sec"],
                "upload_sec": r["upload_sec"],
                "publish_mb_per_sec": round(r["bytes_total"] / 1e6 / r["wall_sec"], 1),
                "upload_mb_per_sec": r["upload_mb_per_sec"],
                "republish_noop_sec": round(noop, 3),
                "republish_status": r2["status"],
                "download_verify_sec": round(dl, 3),
                "download_mb_per_sec": round(r["bytes_total"] / 1e6 / dl, 1),
                "downloaded": v["downloaded"],
            }
    return out


def bench_pgvector(root: Path, n: int, dim: int, n_queries: int) -> dict:
    c = make_version(
        root, model="pg-bench", n=n, dim=dim, n_composers=50, album_size=10, indexes=("hnswlib",)
    )
    out: dict = {"n": n, "dim": dim, "hnsw_m": 16, "hnsw_ef_construction": 64}
    with pg_server() as url:
        r = publish_pgvector(c.layout.version_dir, database_url=url, hnsw_m=16, hnsw_ef_construction=64)
        out.update(copy_sec=r["copy_sec"], index_build_sec=r["index_sec"], publish_wall_sec=r["wall_sec"])
        conn = connect(url)
        conn.autocommit = True
        table = table_name_for(r["version"])
        out["table_bytes"] = conn.execute("SELECT pg_table_size(%s)", (table,)).fetchone()[0]
        out["hnsw_index_bytes"] = conn.execute("SELECT pg_relation_size(%s)", (f"{table}_hnsw",)).fetchone()[
            0
        ]
        rng = np.random.default_rng(0)
        queries = rng.choice(n, size=n_queries, replace=False)
        x = c.vectors.astype(np.float64)
        for ef in (40, 100):
            lat, rec = [], []
            for i in queries:
                t0 = time.perf_counter()
                hits = nearest_pgvector(conn, r["version"], c.track_ids[i], 5, ef_search=ef)
                lat.append(time.perf_counter() - t0)
                s = x @ x[i]
                s[i] = -np.inf
                rows = np.arange(n)
                want = set(np.lexsort((rows, -s))[:5].tolist())
                rec.append(len(want & {h["row_id"] for h in hits}) / 5)
            out[f"ef_search_{ef}"] = {
                "queries": n_queries,
                "recall_at_5": round(float(np.mean(rec)), 4),
                "latency_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 2),
                "latency_ms_p95": round(float(np.percentile(lat, 95)) * 1e3, 2),
            }
        lat = []
        for i in queries[:100]:
            t0 = time.perf_counter()
            nearest_pgvector(conn, r["version"], c.track_ids[i], 5, exact=True)
            lat.append(time.perf_counter() - t0)
        out["exact_scan_latency_ms_p50"] = round(float(np.percentile(lat, 50)) * 1e3, 2)
        conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench/results/publish.json")
    ap.add_argument("--s3-n", type=int, default=15000)
    ap.add_argument("--pg-n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--queries", type=int, default=500)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        res = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "s3_moto": bench_s3(Path(d) / "s3", a.s3_n, a.dim),
            "pgvector": bench_pgvector(Path(d) / "pg", a.pg_n, a.dim, a.queries),
        }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
