"""Node API under load from a separate process (autocannon, loopback only, bounded durations).

For each synthetic artifact folder (``bench/make_synthetic_artifacts.py``) and each mode (``hnsw`` and ``exact``: the
search paths themselves, with the neighbour table off; ``table``: the precomputed exact neighbour table in front of
HNSW, ``method: "precomputed"``; see ``MODES``):
start ``node node_api/dist/src/server.js`` on a free 127.0.0.1 port, pinned to the first usable CPU while the
load generator is pinned to the others (never sharing a core), time spawn -> ``GET /health`` 200 and read
the server's RSS, then run ``bench/node/load.mjs`` (autocannon) against the trivial route ``/health`` (the
reference: the framework's ceiling on this machine, in the same run) and ``/tracks/:id/nearest?k=5`` with a
seeded random id per request, in alternation: several short rounds, each measuring both routes back to back,
the fraction taken per round and its median reported (this VM's speed drifts by up to ~1.7x over seconds, so
two long runs one after the other compared different machines); requests/s and exact p50/p95/p99 latency
pooled over the rounds.
The served top-5 of a sample of tracks is compared with exact numpy search (recall@5 of the API), and Node's
exact-search latency with one connection (minus /health's) with numpy's single-threaded single query.
Every server started here is stopped here (SIGTERM, then SIGKILL after a bounded wait).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    CACHE_DIR,
    ROOT,
    log,
    machine_facts,
    run_child,
    skipped,
    summarize,
    utc_now,
)

NODE_DIR = ROOT / "node_api"
SERVER_JS = NODE_DIR / "dist" / "src" / "server.js"
LOAD_JS = ROOT / "bench" / "node" / "load.mjs"
AUTOCANNON = ROOT / "bench" / "node" / "node_modules" / "autocannon"

# Each route is measured in alternation with /health (load.mjs --rounds): ``rounds`` rounds of ``duration_s``
# seconds per route, the ratio taken per round and its median reported (this VM's speed drifts over seconds).
QUICK = {
    "sizes": [(20_000, 200, True)],
    "duration_s": 1,
    "rounds": 4,
    "connections": 10,
    "recall_sample": 200,
    "neighbors_k": 20,
    "startup_limit_s": 180,
    "latency_duration_s": 1,
    "latency_rounds": 2,
}
FULL = {
    "sizes": [(100_000, 200, True), (1_000_000, 200, False)],
    "duration_s": 2,
    "rounds": 8,
    "connections": 10,
    "recall_sample": 500,
    "neighbors_k": 20,
    "startup_limit_s": 900,
    "latency_duration_s": 2,
    "latency_rounds": 3,
}
#: label -> (VECTOR_BACKEND, NEIGHBORS_TABLE): the HNSW and exact search paths themselves (table off), and the
#: precomputed exact neighbour table in front of HNSW (what a catalogue serves for its own tracks)
MODES = {"hnsw": ("hnsw", "off"), "exact": ("exact", "off"), "table": ("hnsw", "require")}

TARGETS = {
    "hnsw_rps_fraction_of_health": 0.70,
    "hnsw_p95_ms": 5.0,
    "hnsw_recall_at_5": 0.99,
    "exact_vs_numpy_single_ratio": 2.0,
}


def _cpu_split() -> tuple[set[int], set[int]] | None:
    """(server CPUs, load-generator CPUs): the first usable CPU for the server, the rest for autocannon, so the
    two never share a core (left to the scheduler they sometimes did, and `/health` then swung between ~13k and
    ~22k r/s run to run); None on a machine with one usable CPU."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else None


def _pinned(cpus: set[int] | None):  # noqa: ANN202 (a preexec_fn)
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback URL built here)
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


class Server:
    """One Node API process on a free loopback port; a context manager that always stops it."""

    def __init__(
        self,
        artifacts: Path,
        backend: str,
        log_path: Path,
        log_level: str = "warn",
        extra_env: dict[str, str] | None = None,
        pin: bool = True,
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "ARTIFACTS_DIR": str(artifacts),
                "VECTOR_BACKEND": backend,
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
            }
        )
        env["LOG_LEVEL"] = log_level
        env.update(extra_env or {})
        self.env_used = {k: env[k] for k in ("VECTOR_BACKEND", "LOG_LEVEL", *(extra_env or {}))}
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.t_spawn = time.perf_counter()
        split = _cpu_split() if pin else None
        self.proc = subprocess.Popen(
            ["node", str(SERVER_JS)],
            cwd=NODE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_pinned(split[0] if split else None),  # noqa: PLW1509 (no threads at this point)
        )

    def wait_ready(self, limit_s: float) -> float:
        """Seconds from spawn to the first ``/health`` 200; raises TimeoutError / RuntimeError."""
        deadline = self.t_spawn + limit_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode} during start-up")
            status, _ = _get(self.url + "/health", timeout=2.0)
            if status == 200:
                return time.perf_counter() - self.t_spawn
            time.sleep(0.02)  # polling interval of a bounded wait, not a fixed sleep
        raise TimeoutError(f"/health not 200 within {limit_s:.0f} s")

    def rss(self) -> int | None:
        import psutil

        try:
            return int(psutil.Process(self.proc.pid).memory_info().rss)
        except psutil.Error:
            return None

    def peak_rss(self) -> int | None:
        """The process's peak resident set (VmHWM of /proc/<pid>/status; None where there is no /proc)."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _startup_phases(log_path: Path) -> list[dict[str, Any]]:
    """The loader's ``phase`` lines (name, ms and what it reports) from an info-level server log."""
    out = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "phase" in rec:
            out.append({k: v for k, v in rec.items() if k not in ("level", "time", "pid", "hostname", "msg")})
    return out


#: start-up targets (issue 16): seconds from spawn to the first /health 200, by N
STARTUP_TARGETS_S = {100_000: 0.5, 1_000_000: 3.0}


def _csv_twin(vdir: Path, work: Path) -> Path:
    """The same version folder without its columnar metadata sidecar (hard links, a copy where links fail): what
    the Node API loads from the CSV, the reference of the sidecar's start-up."""
    from research_job.layout import ArtifactLayout

    layout = ArtifactLayout(vdir)
    skip = {layout.rel(layout.tracks_columns), layout.rel(layout.tracks_columns_bin)}
    twin = work / "csv_twin" / vdir.name
    if twin.is_dir():
        shutil.rmtree(twin)
    for src in sorted(vdir.rglob("*")):
        rel = src.relative_to(vdir).as_posix()
        if not src.is_file() or rel in skip:
            continue
        dst = twin / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return twin


#: the start-up paths `startup_paths` compares: (version folder, server environment, pinned to one CPU)
STARTUP_PATHS: dict[str, tuple[str, dict[str, str], bool]] = {
    # the metadata CSV (the twin folder without the sidecar), one CPU: the reference of the sidecar
    "csv": ("twin", {}, True),
    # the columnar sidecar, one CPU (the server's CPU of the throughput runs)
    "columns": ("folder", {}, True),
    # the sidecar with every schema compiled at start-up: the reference of the precompiled validators
    "columns_compiled": ("folder", {"PRECOMPILED_VALIDATORS": "off"}, True),
    # the sidecar on every CPU of the machine: the read and its checksum overlap (loader readVectors)
    "columns_all_cpus": ("folder", {}, False),
}


def startup_paths(vdir: Path, work: Path, rounds: int = 3, limit_s: float = 300) -> dict[str, Any]:
    """Start-up of one version folder along each of STARTUP_PATHS (from the CSV, from the columnar sidecar, with
    the validators compiled at start-up, on all CPUs), in alternation, ``rounds`` times each (order reversed every
    round), exact backend, neighbour table off: seconds from spawn to the first ``/health`` 200, the loader's phases
    (log level info), the RSS after start and the peak RSS (VmHWM). Returns every launch and the medians, the
    ratios to the sidecar's start-up and the load average before and after."""
    twin = _csv_twin(vdir, work)
    n = json.loads((vdir / "embeddings" / "embeddings_meta.json").read_text())["count"]
    load_before = list(os.getloadavg())
    launches: dict[str, list[dict[str, Any]]] = {label: [] for label in STARTUP_PATHS}
    for r in range(rounds):
        for label in list(STARTUP_PATHS) if r % 2 == 0 else list(STARTUP_PATHS)[::-1]:
            folder, extra, pin = STARTUP_PATHS[label]
            log_path = work / f"startup_{n}_{label}_{r}.log"
            env = {"NEIGHBORS_TABLE": "off", **extra}
            path = twin if folder == "twin" else vdir
            with Server(path, "exact", log_path, log_level="info", extra_env=env, pin=pin) as srv:
                sec = srv.wait_ready(limit_s)
                launch = {"startup_sec": sec, "rss_after_start": srv.rss(), "peak_rss": srv.peak_rss()}
            phases = _startup_phases(log_path)
            launch["phases_ms"] = {p["phase"]: p.get("ms") for p in phases}
            launch["metadata_from"] = next((p.get("from") for p in phases if p["phase"] == "metadata"), None)
            launches[label].append(launch)
            log(
                f"node start-up N={n} {label} round {r}: {sec:.2f} s, peak RSS {(launch['peak_rss'] or 0) / 2**20:.0f} MiB"
            )
    out: dict[str, Any] = {
        "n": n,
        "artifacts": str(vdir),
        "rounds": rounds,
        "paths": {k: {"folder": f, "env": e, "pinned_one_cpu": p} for k, (f, e, p) in STARTUP_PATHS.items()},
        # the machine's load (1, 5, 15 min) when these launches began and ended: start-up is CPU-bound
        "loadavg_before": load_before,
        "loadavg_after": list(os.getloadavg()),
        "launches": launches,
    }
    for label, ls in launches.items():
        out[label] = {
            "startup_sec_median": float(np.median([x["startup_sec"] for x in ls])),
            "peak_rss_median": float(np.median([x["peak_rss"] or 0 for x in ls])),
            "rss_after_start_median": float(np.median([x["rss_after_start"] or 0 for x in ls])),
            "phases_ms_median": {
                k: float(np.median([x["phases_ms"].get(k) or 0 for x in ls])) for k in ls[0]["phases_ms"]
            },
        }
    cols = out["columns"]["startup_sec_median"]
    out["speedup"] = out["csv"]["startup_sec_median"] / cols
    out["speedup_precompiled"] = out["columns_compiled"]["startup_sec_median"] / cols
    target = STARTUP_TARGETS_S.get(n)
    if target is not None:
        every = out["columns_all_cpus"]["startup_sec_median"]
        out["target_s"] = target
        out["target_status"] = (
            f"N={n:,}: start-up {cols:.2f} s from the sidecar on one CPU, {every:.2f} s on all "
            f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} "
            f"(target < {target} s: one CPU {'met' if cols < target else 'MISSED'}, all CPUs "
            f"{'met' if every < target else 'MISSED'}); same-run references: from the CSV "
            f"{out['csv']['startup_sec_median']:.2f} s, validators compiled at start-up "
            f"{out['columns_compiled']['startup_sec_median']:.2f} s"
        )
    return out


def _drain(url: str, limit_s: float = 120.0) -> float:
    """Wait (bounded) until ``/health`` answers again: requests still queued from the last load must not
    spill into the next measurement. Returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if _get(url + "/health", timeout=limit_s)[0] == 200:
            break
    return time.perf_counter() - t0


def _load(
    url: str, paths: list[str], duration: float, rounds: int, connections: int, ids_file: Path | None
) -> dict[str, Any]:
    """``bench/node/load.mjs``: ``paths`` in alternation for ``rounds`` rounds of ``duration`` seconds each;
    returns its JSON (``paths``: one summary per path, all rounds pooled; ``rounds``: requests/s per path)."""
    _drain(url)
    cmd = ["node", str(LOAD_JS), "--url", url, "--duration", str(duration), "--rounds", str(rounds)]
    for p in paths:
        cmd += ["--path", p]
    cmd += ["--connections", str(connections)]
    if ids_file is not None:
        cmd += ["--ids", str(ids_file)]
    split = _cpu_split()
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=(duration * rounds + 2) * len(paths) * 3 + 30,
        cwd=LOAD_JS.parent,
        preexec_fn=_pinned(split[1] if split else None),  # noqa: PLW1509
    )
    if out.returncode != 0:
        raise RuntimeError(f"load.mjs failed ({out.returncode}): {out.stderr[-1000:]}")
    return json.loads(out.stdout)


def _round_ratios(res: dict[str, Any]) -> dict[str, Any]:
    """Per-round requests/s of the second path over the first (the reference, measured just before it), with
    their median (the figure reported), min and max, and the ratio of the pooled rates."""
    ratios = [r[1] / r[0] for r in res["rounds"] if r[0] > 0]
    if not ratios:
        raise RuntimeError(f"no reference request completed in any round: {res['rounds']}")
    pooled = res["paths"][1]["requests_per_s"] / res["paths"][0]["requests_per_s"]
    return {
        "median": float(np.median(ratios)),
        "min": min(ratios),
        "max": max(ratios),
        "per_round": ratios,
        "pooled": pooled,
    }


def _served_recall(url: str, vectors: np.ndarray, ids: list[str], sample: int, k: int = 5) -> dict[str, Any]:
    """recall@k of the API's /nearest against exact numpy search (self excluded) on a seeded sample of tracks."""
    rng = np.random.default_rng(7)
    rows = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    hits = 0
    mismatched_order = 0
    methods: dict[str, int] = {}
    for r in rows:
        s = vectors @ vectors[r]
        s[r] = -np.inf
        top = np.argpartition(-s, k)[: k + 1]
        top = top[np.lexsort((top, -s[top]))][:k]
        status, body = _get(f"{url}/tracks/{ids[r]}/nearest?k={k}", timeout=10)
        if status != 200:
            raise RuntimeError(f"/tracks/{ids[r]}/nearest returned {status}: {body[:200]!r}")
        doc = json.loads(body)
        methods[doc.get("method")] = methods.get(doc.get("method"), 0) + 1
        got = [h["track_id"] for h in doc["hits"]]
        want = [ids[i] for i in top]
        hits += len(set(got) & set(want))
        mismatched_order += got != want
    return {
        "n_queries": len(rows),
        "recall_at_5": hits / (k * len(rows)),
        "lists_not_identical": int(mismatched_order),
        "methods": methods,
    }


def child_numpy_single(params: dict[str, Any], out: Path) -> None:
    """numpy single-query exact top-5 (self excluded) with this process's thread count (1): the reference."""
    from bench.common import dump_partial

    n, d = params["n"], params["dim"]
    x = np.fromfile(params["embeddings"], dtype="<f4").reshape(n, d)
    rng = np.random.default_rng(3)
    lat = []
    for r in rng.choice(n, size=min(300, n), replace=False):
        t0 = time.perf_counter()
        s = x @ x[r]
        s[r] = -np.inf
        top = np.argpartition(-s, 5)[:6]
        top[np.lexsort((top, -s[top]))][:5]
        lat.append((time.perf_counter() - t0) * 1e3)
    dump_partial(out, {"single_ms": summarize(lat[10:]), "threads": os.environ.get("OPENBLAS_NUM_THREADS")})


def run(mode: str) -> dict[str, Any]:
    """Run the Node API benchmark in ``mode``; returns the result dict."""
    cfg = QUICK if mode == "quick" else FULL
    result: dict[str, Any] = {
        "benchmark": "node",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts(
            {"server": "node (one event loop)", "load_generator": "separate node process"}
        ),
        "cpu_pinning": (
            {"server": sorted(split[0]), "load_generator": sorted(split[1])}
            if (split := _cpu_split())
            else None
        ),
        "targets": TARGETS,
        "runs": [],
    }
    why = None
    if shutil.which("node") is None:
        why = "node is not installed"
    elif not SERVER_JS.is_file():
        why = f"not available yet: node_api ({SERVER_JS.relative_to(ROOT)} missing: build it with `make node-build`)"
    elif not AUTOCANNON.is_dir():
        why = "autocannon not installed: run `npm --prefix bench/node ci` (bench/node/package-lock.json)"
    if why:
        result.update(skipped(why))
        return result
    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    result["machine"]["node"] = node_v
    from bench.make_synthetic_artifacts import add_neighbors, make_artifacts

    art_root = CACHE_DIR / "artifacts"
    work = CACHE_DIR / "node"
    work.mkdir(parents=True, exist_ok=True)
    for n, dim, with_hnsw in cfg["sizes"]:
        log(f"node: artifacts N={n} D={dim} (hnsw index: {with_hnsw})")
        t0 = time.perf_counter()
        vdir = make_artifacts(art_root, n, dim, hnsw=with_hnsw)
        gen_sec = time.perf_counter() - t0
        ids = json.loads((vdir / "embeddings" / "track_ids.json").read_text())["track_ids"]
        ids_file = work / f"ids_{n}.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        vectors = np.fromfile(vdir / "embeddings" / "embeddings.f32", dtype="<f4").reshape(n, dim)
        ref = run_child(
            "bench.node_bench", "child_numpy_single",
            {"embeddings": str(vdir / "embeddings" / "embeddings.f32"), "n": n, "dim": dim},
            threads=1, timeout_s=300, out_path=work / f"numpy_single_{n}_{dim}.json",
        )  # fmt: skip
        table_k = cfg["neighbors_k"] if with_hnsw else 0
        if table_k:
            t0 = time.perf_counter()
            table_entry = add_neighbors(vdir, table_k)
            log(f"node: neighbour table K={table_k} ({table_entry['build_sec']:.1f} s when built)")
        modes = MODES if with_hnsw else {"exact": MODES["exact"]}
        for backend, (vector_backend, table_mode) in modes.items():
            entry: dict[str, Any] = {
                "n": n, "dim": dim, "backend": backend, "artifacts": str(vdir), "generate_sec": gen_sec,
                "numpy_single_ref": ref, "vector_backend": vector_backend, "neighbors_table": table_mode,
            }  # fmt: skip
            if table_k:
                entry["neighbors_k"] = table_k
                entry["neighbors_build_sec"] = table_entry["build_sec"]
            env = {"NEIGHBORS_TABLE": table_mode}
            if not with_hnsw:
                entry["hnsw_note"] = "hnsw index not generated at this N (build time on 2 cores): exact only"
            log(f"node: server N={n} backend={backend}")
            try:
                # start-up profile: a first launch at log level info, whose loader logs each phase with its time
                info_log = work / f"server_{n}_{backend}_startup.log"
                with Server(vdir, vector_backend, info_log, log_level="info", extra_env=env) as srv:
                    entry["startup_sec_info_launch"] = srv.wait_ready(cfg["startup_limit_s"])
                entry["startup_phases"] = _startup_phases(info_log)
                with Server(vdir, vector_backend, work / f"server_{n}_{backend}.log", extra_env=env) as srv:
                    entry["server_env"] = srv.env_used
                    entry["startup_sec"] = srv.wait_ready(cfg["startup_limit_s"])
                    entry["rss_after_start"] = srv.rss()
                    paths = ["/health", "/tracks/{id}/nearest?k=5"]
                    loaded = _load(
                        srv.url, paths, cfg["duration_s"], cfg["rounds"], cfg["connections"], ids_file
                    )
                    one = _load(srv.url, paths, cfg["latency_duration_s"], cfg["latency_rounds"], 1, ids_file)
                    entry["rss_after_load"] = srv.rss()
                    h, q = loaded["paths"]
                    h1, q1 = one["paths"]
                    entry["health"], entry["nearest"] = h, q
                    entry["health_1conn"], entry["nearest_1conn"] = h1, q1
                    entry["rounds_rps"] = loaded["rounds"]
                    entry["rps_fraction"] = _round_ratios(loaded)
                    entry["rps_fraction_of_health"] = entry["rps_fraction"]["median"]
                    if q1["latency_ms"]["p50"] is None or h1["latency_ms"]["p50"] is None:
                        raise RuntimeError(
                            f"no request completed in a 1-connection run: {q1['requests']=}, {h1['requests']=}"
                        )
                    entry["search_ms_1conn_minus_health"] = q1["latency_ms"]["p50"] - h1["latency_ms"]["p50"]
                    # the route's own cost without queueing: /health's request latency over /nearest's, both with
                    # one connection in this run (an estimate of the reachable fraction, not a strict bound: under
                    # load the server and the load generator overlap differently)
                    entry["latency_ratio_1conn"] = h1["latency_ms"]["p50"] / q1["latency_ms"]["p50"]
                    if "single_ms" in ref:
                        entry["node_vs_numpy_single"] = (
                            entry["search_ms_1conn_minus_health"] / ref["single_ms"]["median"]
                        )
                    # the exact backend is exact by construction: a small sample checks parity only
                    sample = cfg["recall_sample"] if backend != "exact" else min(50, cfg["recall_sample"])
                    entry["served_recall"] = _served_recall(srv.url, vectors, ids, sample)
                    for name, res in (("health", h), ("nearest", q)):
                        if res["ok_2xx"] != res["requests"]:
                            entry.setdefault("warnings", []).append(f"{name}: non-2xx {res['statuses']}")
                entry["status"] = "ok"
                log(
                    f"  {backend}: start {entry['startup_sec']:.2f} s, health {h['requests_per_s']:.0f} r/s, "
                    f"nearest {q['requests_per_s']:.0f} r/s p95 {q['latency_ms']['p95']:.2f} ms, "
                    f"recall@5 {entry['served_recall']['recall_at_5']:.4f}"
                )
            except (
                RuntimeError,
                TimeoutError,
                subprocess.TimeoutExpired,
                json.JSONDecodeError,
                KeyError,
            ) as e:
                entry["status"] = "error"
                entry["error"] = f"{type(e).__name__}: {e}"
                log(f"node: N={n} {backend}: {entry['error']}")
            result["runs"].append(entry)
        # start-up from the columnar metadata sidecar against the CSV, same folder, same run
        try:
            result.setdefault("startup_paths", []).append(
                startup_paths(vdir, work, cfg.get("startup_rounds", 2), cfg["startup_limit_s"])
            )
        except (RuntimeError, TimeoutError, OSError) as e:
            log(f"node: N={n} start-up paths: {type(e).__name__}: {e}")
    result["target_status"] = _targets(result)
    return result


def _targets(result: dict[str, Any]) -> list[str]:
    out = [s["target_status"] for s in result.get("startup_paths", []) if "target_status" in s]
    for r in result["runs"]:
        if r.get("status") != "ok":
            continue
        tag = f"N={r['n']:,} {r['backend']}"
        if r["backend"] in ("hnsw", "table"):
            f, p95 = r["rps_fraction_of_health"], r["nearest"]["latency_ms"]["p95"]
            rec = r["served_recall"]["recall_at_5"]
            bound = r.get("latency_ratio_1conn")
            out.append(
                f"{tag}: {f:.0%} of /health r/s (target >= 70%: {'met' if f >= 0.7 else 'MISSED'}"
                + (f"; 1-connection latency ratio /health : /nearest {bound:.0%}" if bound else "")
                + ")"
            )
            out.append(f"{tag}: p95 {p95:.2f} ms (target < 5 ms: {'met' if p95 < 5 else 'MISSED'})")
            out.append(f"{tag}: recall@5 {rec:.4f} (target >= 0.99: {'met' if rec >= 0.99 else 'MISSED'})")
        elif "node_vs_numpy_single" in r:
            x = r["node_vs_numpy_single"]
            out.append(
                f"{tag}: Node exact search {r['search_ms_1conn_minus_health']:.2f} ms = {x:.2f}x numpy 1-thread "
                f"single query (target <= 2x: {'met' if x <= 2 else 'MISSED'})"
            )
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _fraction(r: dict[str, Any]) -> str:
    f = r.get("rps_fraction")
    if not f:
        return f"{r['rps_fraction_of_health']:.0%}"
    return f"{f['median']:.0%} [{f['min']:.0%}-{f['max']:.0%}]"


def markdown(result: dict[str, Any]) -> str:
    """The Markdown section of ``docs/benchmarks.md`` for one Node API result."""
    lines = [f"### Node API under load ({result['mode']}, {result['created_at']})", ""]
    if result.get("status") == "skipped":
        return "\n".join(lines + [f"Skipped: {result['reason']}", ""])
    r0 = next((r for r in result["runs"] if r.get("status") == "ok"), None)
    conns = r0["nearest"]["connections"] if r0 else "?"
    dur = r0["nearest"]["duration_s"] if r0 else "?"
    rounds = r0["nearest"].get("rounds", 1) if r0 else "?"
    lines += [
        f"autocannon from a separate process, loopback, CPU pinning {result.get('cpu_pinning')} (server, load "
        f"generator), {conns} connections, {rounds} rounds of {dur} s per route (`/health`, then `/nearest`, "
        "back to back) after a 1 s warm-up each, a seeded random track id per request; % of /health is the "
        "median of the per-round ratios [min-max]; latency percentiles over every request of all rounds. "
        "Reference: `/health` on the same server in the same run. Server log level: "
        f"{(r0 or {}).get('server_env', {}).get('LOG_LEVEL')}. Node {result['machine'].get('node')}.",
        "",
        "Targets: " + "; ".join(result.get("target_status") or ["none measured"]) + ".",
        "",
        "| N | D | backend | start-up s | RSS after start | RSS after load | /health r/s | /nearest r/s | "
        "% of /health | 1-conn latency ratio | p50 ms | p95 ms | p99 ms | recall@5 (API vs exact) | 1-conn search ms | "
        "numpy 1t ms | Node/numpy |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['n']:,} | {r['dim']} | {r['backend']} | {r.get('status')}: {r.get('error')} |"
            )
            continue
        lat = r["nearest"]["latency_ms"]
        ref = r["numpy_single_ref"].get("single_ms", {}).get("median")
        ratio = r.get("node_vs_numpy_single")
        lines.append(
            f"| {r['n']:,} | {r['dim']} | {r['backend']} | {r['startup_sec']:.2f} | "
            f"{(r['rss_after_start'] or 0) / 2**20:.0f} MiB | {(r['rss_after_load'] or 0) / 2**20:.0f} MiB | "
            f"{r['health']['requests_per_s']:,.0f} | {r['nearest']['requests_per_s']:,.0f} | "
            f"{_fraction(r)} | {_pct(r.get('latency_ratio_1conn'))} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['p99']:.2f} | "
            f"{r['served_recall']['recall_at_5']:.4f} | {r['search_ms_1conn_minus_health']:.3f} | "
            f"{'-' if ref is None else f'{ref:.3f}'} | {'-' if ratio is None else f'{ratio:.2f}'} |"
        )
    sp = result.get("startup_paths") or []
    if sp:
        lines += [
            "",
            "Start-up along each path (`STARTUP_PATHS`: metadata from the CSV or from the columnar sidecar, the "
            "validators precompiled or compiled at start-up, one CPU or all), exact backend, alternating launches, "
            "medians:",
            "",
            "| N | path | start-up s | peak RSS | RSS after start | metadata ms | embeddings ms |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for s in sp:
            for label in [k for k in STARTUP_PATHS if k in s]:
                m = s[label]
                ph = m["phases_ms_median"]
                lines.append(
                    f"| {s['n']:,} | {label} | {m['startup_sec_median']:.2f} | {m['peak_rss_median'] / 2**20:.0f} MiB | "
                    f"{m['rss_after_start_median'] / 2**20:.0f} MiB | {ph.get('metadata', 0):.0f} | "
                    f"{ph.get('embeddings', 0):.0f} |"
                )
    phases = [r for r in result["runs"] if r.get("startup_phases")]
    if phases:
        lines += ["", "Start-up phases (from a separate launch at log level info, ms):", ""]
        for r in phases:
            desc = ", ".join(
                f"{p['phase']} {p.get('ms')}"
                + (f" (ef {p['ef']}, sample {p.get('sample_size')})" if "ef" in p else "")
                for p in r["startup_phases"]
            )
            lines.append(f"- N={r['n']:,} {r['backend']}: {desc}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bench.node_bench --startup DIR [DIR ...]``: the start-up of each folder from the sidecar and
    from the CSV (``startup_paths``), as JSON on stdout (the rest of this benchmark runs from ``bench.run``)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument(
        "--startup", nargs="+", type=Path, required=True, help="version folders (with the sidecar)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=CACHE_DIR / "node")
    a = ap.parse_args(argv)
    if not SERVER_JS.is_file():
        ap.error(f"{SERVER_JS} missing: build it with `make node-build`")
    a.work.mkdir(parents=True, exist_ok=True)
    res = {"created_at": utc_now(), "machine": machine_facts({}), "runs": []}
    for vdir in a.startup:
        res["runs"].append(startup_paths(vdir, a.work, a.rounds))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
