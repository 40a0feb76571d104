"""Index build and search on synthetic clustered vectors, against exact search and the memory-bandwidth bound.

For each dataset (N x D, a seeded Gaussian mixture on the sphere, see :mod:`bench.synthetic`):

* references, each in its own child process with 1 and with all BLAS threads: exact numpy search
  (single-query ``X @ q`` + argpartition, and blocked batched ``Q @ X.T``), which also writes the ground truth;
  and the full-scan memory bound: N*D*4 bytes / measured read bandwidth = the least time a scan can take;
* one child per index family (FAISS Flat, FAISS HNSW, FAISS IVF-Flat, FAISS IVF-PQ, hnswlib): build time and
  threads, index size, RSS delta of the build, then for each search parameter single-query latency (1 thread,
  one query per call, the way a server searches), batched QPS (all threads) and recall@5/@10 against exact.

A family's child is killed past ``build_limit_s``; what it measured up to then is kept and the reason recorded.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    CACHE_DIR,
    dump_partial,
    log,
    machine_facts,
    memory_bandwidth,
    peak_rss_bytes,
    repeat,
    rss_bytes,
    run_child,
    summarize,
    usable_cpus,
    utc_now,
)
from bench.synthetic import dataset, exact_topk, recall_at

K = 10

QUICK = {
    "datasets": [(30_000, 200)],
    "n_queries": 500,
    "n_single": 200,
    "batch_repeats": 3,
    "build_limit_s": 240,
    "hnsw_ef": [16, 32, 64, 128],
    "nprobe": [1, 4, 16, 64],
}
FULL = {
    "datasets": [(100_000, 200), (100_000, 768), (1_000_000, 200), (1_000_000, 768)],
    "n_queries": 1000,
    "n_single": 300,
    "batch_repeats": 3,
    "build_limit_s": 1800,
    "hnsw_ef": [16, 32, 64, 128, 256],
    "nprobe": [1, 4, 16, 64, 128],
}

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200


def _load(path: str) -> np.ndarray:
    return np.ascontiguousarray(np.load(path, mmap_mode="r"))


def _single_latency(search_one, queries: np.ndarray, n_single: int) -> dict[str, float | int]:
    lat = []
    for q in queries[:n_single]:
        q1 = q[None, :]
        t0 = time.perf_counter()
        search_one(q1)
        lat.append(time.perf_counter() - t0)
    return summarize([x * 1e3 for x in lat])


# ---------------------------------------------------------------------------------------------------- children
def child_exact(params: dict[str, Any], out: Path) -> None:
    """Exact numpy search with the thread count of this process; writes ground truth when asked."""
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "0"))
    res: dict[str, Any] = {"threads": threads, "rss_start": rss_bytes()}
    base = _load(params["base"])
    queries = np.load(params["queries"])
    res["rss_loaded"] = rss_bytes()

    def one(q1: np.ndarray) -> None:
        s = base @ q1[0]
        top = np.argpartition(-s, K - 1)[:K]
        top[np.argsort(-s[top], kind="stable")]

    one(queries[0:1])  # warm-up
    res["single_ms"] = _single_latency(one, queries, params["n_single"])
    dump_partial(out, res)
    truth: list[np.ndarray] = []

    def batch() -> None:
        truth.append(exact_topk(base, queries, K))

    times = repeat(batch, params["batch_repeats"], warmup=0)
    res["batch_sec"] = summarize(times)
    res["batch_qps"] = summarize([len(queries) / t for t in times])
    if params.get("truth_out"):
        np.save(params["truth_out"], truth[0])
    res["peak_rss"] = peak_rss_bytes()
    dump_partial(out, res)


def _faiss_build(family: str, base: np.ndarray, p: dict[str, Any]):
    import faiss

    d = base.shape[1]
    if family == "faiss-flat":
        index = faiss.IndexFlatIP(d)
        index.add(base)
        return index, {}
    if family == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(base)
        return index, {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
    n = len(base)
    nlist = int(2 ** round(np.log2(4 * np.sqrt(n))))
    n_train = min(n, 64 * nlist)
    train = base[np.random.default_rng(0).choice(n, n_train, replace=False)]
    quantizer = faiss.IndexFlatIP(d)
    if family == "faiss-ivf-flat":
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        extra = {"nlist": nlist, "n_train": n_train}
    elif family == "faiss-ivf-pq":
        m = d // 8 if d % 8 == 0 else d // 4 if d % 4 == 0 else d // 2
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        extra = {"nlist": nlist, "n_train": n_train, "pq_m": m, "pq_nbits": 8, "code_bytes": m}
    else:
        raise ValueError(f"Unknown index family {family!r}. Known: {', '.join(FAMILIES)}")
    index.train(train)
    index.add(base)
    return index, extra


def child_index(params: dict[str, Any], out: Path) -> None:
    """Build one index family, then measure every search parameter; results are dumped after each step."""
    family = params["family"]
    threads = int(params["threads"])
    base = _load(params["base"])
    queries = np.load(params["queries"])
    truth = np.load(params["truth"])
    res: dict[str, Any] = {"family": family, "n": len(base), "dim": base.shape[1], "build_threads": threads}
    rss0 = rss_bytes()
    res["phase"] = "build"
    dump_partial(out, res)
    if family == "hnswlib":
        import hnswlib

        t0 = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.init_index(
            max_elements=len(base), M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, random_seed=0
        )
        index.add_items(base, np.arange(len(base)), num_threads=threads)
        res["build_sec"] = time.perf_counter() - t0
        res["params"] = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
        with tempfile.TemporaryDirectory() as tmp:
            index.save_index(os.path.join(tmp, "h.index"))
            res["index_bytes"] = os.path.getsize(os.path.join(tmp, "h.index"))
        sweep = params["hnsw_ef"]

        def set_param(v: int) -> None:
            index.set_ef(max(v, K))

        def search(q: np.ndarray, nthreads: int) -> np.ndarray:
            labels, _ = index.knn_query(q, k=K, num_threads=nthreads)
            return labels.astype(np.int64)

        param_name = "ef"
    else:
        import faiss

        faiss.omp_set_num_threads(threads)
        t0 = time.perf_counter()
        index, extra = _faiss_build(family, base, params)
        res["build_sec"] = time.perf_counter() - t0
        res["params"] = extra
        res["index_bytes"] = int(faiss.serialize_index(index).nbytes)
        if family == "faiss-flat":
            sweep, param_name = [None], None
        elif family == "faiss-hnsw":
            sweep, param_name = params["hnsw_ef"], "efSearch"
        else:
            sweep, param_name = params["nprobe"], "nprobe"

        def set_param(v: int | None) -> None:
            if family == "faiss-hnsw":
                index.hnsw.efSearch = max(int(v), K)
            elif v is not None:
                index.nprobe = int(v)

        def search(q: np.ndarray, nthreads: int) -> np.ndarray:
            faiss.omp_set_num_threads(nthreads)
            _, labels = index.search(q, K)
            return labels

    res["rss_delta_build"] = rss_bytes() - rss0
    res["phase"] = "search"
    res["search"] = []
    dump_partial(out, res)
    for v in sweep:
        set_param(v)
        entry: dict[str, Any] = {"param": param_name, "value": v}
        search(queries[:1], 1)
        entry["single_ms"] = _single_latency(lambda q: search(q, 1), queries, params["n_single"])
        found: list[np.ndarray] = []
        for t in sorted({1, threads}):
            times = repeat(
                lambda t=t, found=found: found.append(search(queries, t)), params["batch_repeats"], warmup=0
            )
            entry[f"batch_qps_{t}t"] = summarize([len(queries) / x for x in times])
        entry["batch_qps"] = entry[f"batch_qps_{threads}t"]
        entry["batch_threads"] = threads
        entry["recall_at_5"] = recall_at(found[0], truth, 5)
        entry["recall_at_10"] = recall_at(found[0], truth, 10)
        res["search"].append(entry)
        dump_partial(out, res)
        log(
            f"  {family} {param_name}={v}: single p50 {entry['single_ms']['median']:.3f} ms, "
            f"batch {entry['batch_qps']['median']:.0f} q/s, recall@10 {entry['recall_at_10']:.4f}"
        )
    res["phase"] = "done"
    res["peak_rss"] = peak_rss_bytes()
    dump_partial(out, res)


FAMILIES = ["faiss-flat", "faiss-hnsw", "faiss-ivf-flat", "faiss-ivf-pq", "hnswlib"]


# ---------------------------------------------------------------------------------------------------- driver
def run(
    mode: str, *, families: list[str] | None = None, datasets: list[tuple[int, int]] | None = None
) -> dict[str, Any]:
    """Run the index benchmark in ``mode`` ("quick" or "full"); returns the result dict (not yet written).

    ``datasets`` replaces the mode's N x D list (recorded in the result as ``datasets_overridden``).
    """
    cfg = dict(QUICK if mode == "quick" else FULL)
    if datasets:
        cfg["datasets"] = datasets
    threads = usable_cpus()
    families = families or FAMILIES
    work = CACHE_DIR / "index"
    log(f"index: measuring memory bandwidth (single thread, {512} MiB array)")
    bw = memory_bandwidth()
    read_bw = bw["read_bytes_per_s"]["median"]
    result: dict[str, Any] = {
        "benchmark": "index",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts({"build": threads, "batched_search": threads, "single_query": 1}),
        "data": (
            "seeded Gaussian mixture on the unit sphere: max(16, N/100) random unit centres with Dirichlet(2) "
            "weights, each point = centre + N(0, 1/D) noise (norm ~1), L2-normalised; queries are held-out "
            "points of the same mixture (not in the base set)"
        ),
        "k": K,
        "memory_bandwidth": bw,
        "config": {k: v for k, v in cfg.items() if k != "datasets"},
        "datasets_overridden": bool(datasets),
        "hnsw_build": {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
        "datasets": [],
    }
    for n, dim in cfg["datasets"]:
        log(f"index: dataset N={n} D={dim}")
        t0 = time.perf_counter()
        paths = dataset(n, dim, cfg["n_queries"], seed=0, cache_dir=work)
        entry: dict[str, Any] = {"n": n, "dim": dim, "n_queries": cfg["n_queries"]}
        entry["generate_sec"] = time.perf_counter() - t0
        scan_bytes = n * dim * 4
        entry["full_scan_bytes"] = scan_bytes
        entry["memory_bound_ms_per_query"] = scan_bytes / read_bw * 1e3
        truth_path = work / f"truth_n{n}_d{dim}_q{cfg['n_queries']}.npy"
        refs = {}
        for t in sorted({1, threads}):
            log(f"index: exact numpy reference, {t} thread(s)")
            p = {
                "base": str(paths["base"]),
                "queries": str(paths["queries"]),
                "n_single": cfg["n_single"],
                "batch_repeats": cfg["batch_repeats"],
                "truth_out": str(truth_path) if t == threads else None,
            }
            refs[f"numpy_{t}t"] = run_child(
                "bench.index_bench",
                "child_exact",
                p,
                threads=t,
                timeout_s=cfg["build_limit_s"] * 2,
                out_path=work / f"exact_{n}_{dim}_{t}.json",
            )
        entry["exact_reference"] = refs
        if not truth_path.is_file():
            entry["indexes"] = []
            entry["error"] = "exact reference did not finish: no ground truth, indexes not measured"
            result["datasets"].append(entry)
            continue
        entry["indexes"] = []
        for fam in families:
            log(f"index: {fam} N={n} D={dim}")
            p = {
                "family": fam,
                "threads": threads,
                "base": str(paths["base"]),
                "queries": str(paths["queries"]),
                "truth": str(truth_path),
                "n_single": cfg["n_single"],
                "batch_repeats": cfg["batch_repeats"],
                "hnsw_ef": cfg["hnsw_ef"],
                "nprobe": cfg["nprobe"],
            }
            r = run_child(
                "bench.index_bench",
                "child_index",
                p,
                threads=threads,
                timeout_s=cfg["build_limit_s"],
                out_path=work / f"{fam}_{n}_{dim}.json",
            )
            r.setdefault("family", fam)
            if r["status"] == "timeout":
                r["reason"] = (
                    f"stopped at the {cfg['build_limit_s']} s limit per configuration during "
                    f"{r.get('phase', 'start-up')}; entries below are what was measured before"
                )
                log(f"index: {fam} {r['reason']}")
            entry["indexes"].append(r)
        result["datasets"].append(entry)
    return result


# ---------------------------------------------------------------------------------------------------- output
def _fmt_bytes(b: float | None) -> str:
    if b is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(b) < 1024:
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


def _dataset_run_note(ds: dict[str, Any]) -> str:
    """When a dataset was measured by its own run (``--datasets``, merged by ``bench.run``): when, the load
    average and the read bandwidth of that run."""
    if "measured_at" not in ds:
        return ""
    load = ds.get("machine", {}).get("loadavg_1m_5m_15m") or []
    bw = ds.get("memory_bandwidth", {}).get("read_bytes_per_s", {}).get("median")
    parts = [f" Measured in its own run at {ds['measured_at']}"]
    if load:
        parts.append(f"load average {load[0]:.2f} at its start")
    if bw:
        parts.append(f"read bandwidth {bw / 1e9:.1f} GB/s")
    return ", ".join(parts) + "."


def markdown(result: dict[str, Any]) -> str:
    """The Markdown section of ``docs/benchmarks.md`` for one index result."""
    bw = result["memory_bandwidth"]["read_bytes_per_s"]["median"]
    lines = [
        f"### Index build and search ({result['mode']}, {result['created_at']})",
        "",
        f"Data: {result['data']}. k = {result['k']}. Single-query latency: one query per call, 1 thread. "
        f"Batched: all queries in one call, {result['machine']['threads'].get('batched_search')} threads. "
        f"Measured read bandwidth {bw / 1e9:.1f} GB/s (1 thread). Ratios are against exact numpy search "
        "with 1 thread, measured in the same run.",
        "",
    ]
    threads = result["machine"]["threads"].get("batched_search", 1)
    tcols = sorted({1, threads})
    for ds in result["datasets"]:
        n, d = ds["n"], ds["dim"]
        refs = ds.get("exact_reference", {})
        r1 = refs.get("numpy_1t", {})
        ref_single = r1.get("single_ms", {}).get("median")
        ref_qps = {t: refs.get(f"numpy_{t}t", {}).get("batch_qps", {}).get("median") for t in tcols}
        bcols = "".join(f" batched q/s {t}t | x exact {t}t |" for t in tcols)
        lines += [
            f"#### N = {n:,}, D = {d}",
            "",
            f"Full-scan memory bound: {ds['memory_bound_ms_per_query']:.3f} ms per query "
            f"({_fmt_bytes(ds['full_scan_bytes'])} / read bandwidth).{_dataset_run_note(ds)}",
            "",
            "| index | param | build s | size | RSS delta | single p50 ms | single p95 ms | x exact 1t (single) |"
            + bcols
            + " recall@5 | recall@10 |",
            "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(tcols) + "---:|---:|",
        ]
        empty = " |" * (2 * len(tcols) + 5)
        for key, ref in refs.items():
            if "single_ms" not in ref:
                lines.append(
                    f"| exact {key} | - | - | - | - | {ref.get('status')}: {ref.get('error', '')[-200:]} |"
                )
                continue
            s = ref["single_ms"]
            q = ref.get("batch_qps", {}).get("median")
            own_t = int(key.split("_")[1][:-1])
            bq = "".join(
                f" {q:,.0f} | {q / ref_qps[t]:.2f} |" if t == own_t and q and ref_qps[t] else " - | - |"
                for t in tcols
            )
            lines.append(
                f"| exact {key} (reference) | - | - | - | - | {s['median']:.3f} | {s['p95']:.3f} | "
                f"{ref_single / s['median']:.2f} |" + bq + " 1 | 1 |"
            )
        for ix in ds.get("indexes", []):
            head = (
                f"| {ix['family']} | {{p}} | {ix.get('build_sec', float('nan')):.1f} | "
                f"{_fmt_bytes(ix.get('index_bytes'))} | {_fmt_bytes(ix.get('rss_delta_build'))} |"
            )
            if not ix.get("search"):
                err = (ix.get("error") or "").strip().splitlines()
                why = ix.get("reason") or (err[-1] if err else ix.get("status"))
                lines.append(head.format(p="-") + f" {ix.get('status')}: {why} |")
                continue
            for e in ix["search"]:
                p = "-" if e["param"] is None else f"{e['param']}={e['value']}"
                s = e["single_ms"]
                sx = f"{ref_single / s['median']:.1f}" if ref_single else "-"
                bq = ""
                for t in tcols:
                    q = e.get(f"batch_qps_{t}t", {}).get("median")
                    bq += f" {q:,.0f} | {q / ref_qps[t]:.1f} |" if q and ref_qps[t] else " - | - |"
                lines.append(
                    head.format(p=p)
                    + f" {s['median']:.3f} | {s['p95']:.3f} | {sx} |"
                    + bq
                    + f" {e['recall_at_5']:.4f} | {e['recall_at_10']:.4f} |"
                )
            if ix.get("status") == "timeout":
                lines.append(f"| {ix['family']} | | | | | {ix.get('reason')} |" + empty)
        lines.append("")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Recall@10 against batched queries/s, one panel per dataset, exact numpy references as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dss = result["datasets"]
    fig, axes = plt.subplots(1, len(dss), figsize=(6 * len(dss), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], dss, strict=True):
        for ix in ds.get("indexes", []):
            pts = [(e["batch_qps"]["median"], e["recall_at_10"]) for e in ix.get("search", [])]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=ix["family"])
        for key, ref in ds.get("exact_reference", {}).items():
            if "batch_qps" in ref:
                ax.plot(
                    [ref["batch_qps"]["median"]],
                    [1.0],
                    marker="*",
                    markersize=12,
                    ls="",
                    label=f"exact {key}",
                )
        ax.set_xscale("log")
        ax.set_xlabel("batched queries / s (median)")
        ax.set_ylabel("recall@10 vs exact")
        ax.set_title(f"N={ds['n']:,} D={ds['dim']} ({result['mode']})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
