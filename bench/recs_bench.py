"""Recommendations at catalogue scale: train-recs and the five Node endpoints on 100k tracks x 10k listeners.

1. A synthetic version folder (``bench/make_synthetic_artifacts.py``: a Gaussian mixture on the sphere, 100k x 200,
   hnswlib index, the exact top-20 neighbour table) and a seeded synthetic listening log for it: each listener has
   one to three favourite composers, a Zipf popularity skew inside them, ~60 events over 90 days in sessions, skips
   off-taste, likes on-taste (``listening_log``). Labelled synthetic in its ``origin`` column.
2. ``research-job export-interactions --csv-path`` and ``research-job train-recs`` on it, timed (the CLI, as a user
   runs it), with the evaluation table it writes (Recall@20, NDCG@20, MRR per model with bootstrap CIs).
3. The compiled Node API serving the folder with ``FEEDBACK_DATABASE_URL`` on a real PostgreSQL (pgserver), and
   ``bench/node/recs_load.mjs`` measuring each endpoint's latency (one connection: the per-request latency the
   issue's p95 budget is about) in rounds that alternate with the reference routes ``GET /health`` (the framework's
   floor) and ``GET /tracks/:id/nearest?k=20`` (the existing similarity route) of the same run.

Run: ``python -m bench.recs_bench [--quick]`` (``make bench-recs``) -> ``bench/results/recs_quick.json`` (or
``recs_full.json``) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE_DIR, ROOT, log, machine_facts, utc_now, write_result

NODE_DIR = ROOT / "node_api"
SERVER_JS = NODE_DIR / "dist" / "src" / "server.js"
LOAD_JS = ROOT / "bench" / "node" / "recs_load.mjs"
RJ = [str(Path(sys.executable).parent / "research-job")]

QUICK = {"tracks": 100_000, "dim": 200, "users": 10_000, "events_per_user": 60, "duration_s": 2, "rounds": 3,
         "requests_per_route": 200, "budget_p95_ms": 10.0}  # fmt: skip
FULL = {**QUICK, "duration_s": 5, "rounds": 5}
START = np.datetime64("2026-06-01T00:00:00", "s")
DAYS = 90


def listening_log(rows: list[dict[str, Any]], users: int, per_user: int, seed: int = 0) -> list[tuple]:
    """A seeded synthetic listening log for the catalogue ``rows``: (user_id, track_id, event, ts, duration, origin).

    Each listener has one to three favourite composers and draws 80 % of their plays from them (Zipf-skewed inside
    each composer, so a few tracks are popular), 20 % from the whole catalogue (Zipf too); off-taste plays are
    skipped half the time, on-taste ones liked 15 % of the time; events come in sessions of 3-12 consecutive plays
    a few minutes apart, the sessions spread over 90 days.
    """
    rng = np.random.default_rng(seed)
    n = len(rows)
    composers = np.array([r["composer"] or "" for r in rows])
    names, comp_idx = np.unique(composers, return_inverse=True)
    by_comp = [np.flatnonzero(comp_idx == c) for c in range(len(names))]
    global_pop = rng.permutation(n)  # rank -> track row: the catalogue's own popularity order
    out: list[tuple] = []
    for u in range(users):
        fav = rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False)
        t = START + np.timedelta64(int(rng.integers(0, 5 * 86400)), "s")
        left = per_user
        while left > 0:
            size = min(left, int(rng.integers(3, 13)))
            for _ in range(size):
                if rng.random() < 0.8:
                    pool = by_comp[int(rng.choice(fav))]
                    track = int(pool[min(len(pool) - 1, int(rng.zipf(1.3)) - 1)])
                    on = True
                else:
                    track = int(global_pop[min(n - 1, int(rng.zipf(1.2)) - 1)])
                    on = bool(comp_idx[track] in fav)
                skip = rng.random() < (0.1 if on else 0.5)
                ts = str(t.astype("datetime64[s]")) + "Z"
                uid = f"u{u:06d}"
                tid = rows[track]["track_id"]
                out.append(
                    (uid, tid, "skip" if skip else "play", ts, 8.0 if skip else 30.0, "synthetic-bench")
                )
                if on and not skip and rng.random() < 0.15:
                    out.append((uid, tid, "like", ts, "", "synthetic-bench"))
                t = t + np.timedelta64(int(rng.integers(30, 300)), "s")
            left -= size
            t = t + np.timedelta64(int(rng.integers(6 * 3600, int(DAYS * 86400 / max(1, per_user / 7)))), "s")
    return out


def write_log_csv(path: Path, events: list[tuple]) -> None:
    """The log as a CSV with export-interactions' source columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "track_id", "event", "ts", "duration_sec", "origin"])
        w.writerows(events)


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, **(env or {})})
    return time.perf_counter() - t0


def prepare(p: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The version folder with interactions/ and recs/ (reused when its recs_meta.json is there); timings."""
    from bench.make_synthetic_artifacts import add_neighbors, make_artifacts, synthetic_catalogue

    root = CACHE_DIR / "recs"
    vdir = make_artifacts(root, p["tracks"], p["dim"], hnsw=True)
    add_neighbors(vdir, 20)
    facts: dict[str, Any] = {"version_dir": str(vdir)}
    meta = vdir / "recs" / "recs_meta.json"
    log_csv = root / f"listening-u{p['users']}-e{p['events_per_user']}.csv"
    if not log_csv.is_file():
        _, _, rows = synthetic_catalogue(p["tracks"], p["dim"])
        t0 = time.perf_counter()
        events = listening_log(rows, p["users"], p["events_per_user"])
        write_log_csv(log_csv, events)
        facts["log_generate_sec"] = round(time.perf_counter() - t0, 2)
    if not meta.is_file():
        common = ["--version-dir", str(vdir)]
        facts["export_interactions_sec"] = round(
            _timed([*RJ, "export-interactions", *common, "--csv-path", str(log_csv)]), 2
        )
        facts["train_recs_sec"] = round(_timed([*RJ, "train-recs", *common]), 2)
    facts["recs_meta"] = json.loads(meta.read_text(encoding="utf-8"))
    facts["recs_eval"] = json.loads((vdir / "recs" / "recs_eval.json").read_text(encoding="utf-8"))
    return vdir, facts


def _spec(vdir: Path, n_req: int, seed: int = 1) -> dict[str, Any]:
    """The routes and their seeded requests: known listeners, catalogue seeds, feedback events."""
    rng = np.random.default_rng(seed)
    ids = json.loads((vdir / "embeddings" / "track_ids.json").read_text(encoding="utf-8"))["track_ids"]
    users = json.loads((vdir / "recs" / "user_ids.json").read_text(encoding="utf-8"))["user_ids"]
    tr = [ids[int(i)] for i in rng.integers(0, len(ids), n_req)]
    us = [users[int(i)] for i in rng.integers(0, len(users), n_req)]

    def post(name: str, bodies: list[dict[str, Any]], status: int = 200, **extra: Any) -> dict[str, Any]:
        path = "/" + name.split(" ")[1].lstrip("/")
        return {"name": name, "method": "POST", "status": status,
                "requests": [{"path": path, "body": b} for b in bodies], **extra}  # fmt: skip

    return {
        "routes": [
            {"name": "GET /health", "method": "GET", "requests": [{"path": "/health"}]},
            {"name": "GET /tracks/:id/nearest?k=20", "method": "GET",
             "requests": [{"path": f"/tracks/{t}/nearest?k=20"} for t in tr]},  # fmt: skip
            post("POST /recommend/similar", [{"track_ids": [t], "k": 20} for t in tr]),
            post("POST /radio/generate", [{"seed_track_id": t, "n": 25} for t in tr]),
            post("POST /daily-mix", [{"user_id": u, "k": 3, "size": 20} for u in us]),
            post("POST /recommend/user", [{"user_id": u, "k": 20} for u in us]),
            post("POST /recommend/user (content)", [{"user_id": u, "k": 20, "model": "content"} for u in us]),
            post("POST /recommend/user (cf)", [{"user_id": u, "k": 20, "model": "cf"} for u in us]),
            # every request a new idempotency key (the load script numbers them): each one is an INSERT
            post("POST /feedback", [{"user_id": u, "track_id": t, "event": "play", "idempotency_key": f"bench-{seed}"}
                                    for u, t in zip(us, tr, strict=True)], status=201, unique_key=True),
        ]
    }  # fmt: skip


def serve_and_measure(vdir: Path, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Start pgserver and the Node API on the folder, run recs_load.mjs; its result plus start-up facts."""
    from tests.helpers.node_server import free_port
    from tests.helpers.pg import start_postgres

    pg = start_postgres()
    port = free_port()
    env = {**os.environ, "ARTIFACTS_DIR": str(vdir), "ARTIFACT_SCHEMA_DIR": str(ROOT / "artifact_schema"),
           "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warn", "FEEDBACK_DATABASE_URL": pg.uri}  # fmt: skip
    proc = subprocess.Popen(["node", str(SERVER_JS)], cwd=NODE_DIR, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        import urllib.request

        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"node_api exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("node_api not healthy within 300 s")
            time.sleep(0.2)
        startup = time.perf_counter() - t0
        spec_path = work / "recs_spec.json"
        spec_path.write_text(json.dumps(_spec(vdir, p["requests_per_route"])), encoding="utf-8")
        out = subprocess.run(
            ["node", str(LOAD_JS), "--url", f"http://127.0.0.1:{port}", "--spec", str(spec_path),
             "--duration", str(p["duration_s"]), "--rounds", str(p["rounds"]), "--concurrency", "1"],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        res = json.loads(out.stdout)
        res["startup_s"] = round(startup, 2)
        return res
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        pg.stop()


def run(mode: str = "quick") -> dict[str, Any]:
    """The whole benchmark; the result written to bench/results/recs_<mode>.json."""
    p = QUICK if mode == "quick" else FULL
    if shutil.which("node") is None or not SERVER_JS.is_file():
        raise SystemExit("the Node API is not built: make node-build")
    vdir, facts = prepare(p)
    work = CACHE_DIR / "recs" / "work"
    work.mkdir(parents=True, exist_ok=True)
    log(f"recs bench: serving {vdir.name}")
    load = serve_and_measure(vdir, p, work)
    routes = {r["name"]: r for r in load["routes"]}
    ref = routes["GET /tracks/:id/nearest?k=20"]
    for r in load["routes"]:
        r["p95_over_nearest"] = round(r["p95_ms"] / ref["p95_ms"], 3) if ref["p95_ms"] else None
        # a route that answered with the wrong status measured something else: never within budget
        r["within_budget"] = r["errors"] == 0 and r["p95_ms"] < p["budget_p95_ms"]
    meta = facts.pop("recs_meta")
    ev = facts.pop("recs_eval")
    result = {
        "bench": "recs",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts(),
        "params": p,
        "prepare": facts,
        "train": {
            "timings_sec": meta.get("timings_sec"),
            "data": meta.get("data"),
            "models": meta.get("models"),
        },
        "eval": ev,
        "load": load,
    }
    write_result(f"recs_{mode}", result)
    return result


def markdown(result: dict[str, Any]) -> str:
    """The latency table (p50 / p95 / p99 per route, against the same run's reference routes)."""
    p = result["params"]
    lines = [
        f"Recommendation endpoints, {p['tracks']:,} tracks x {p['dim']} dims, {p['users']:,} listeners "
        f"(~{p['events_per_user']} events each), one connection, {p['rounds']} rounds x {p['duration_s']} s per "
        f"route in alternation (`make bench-recs`):",
        "",
        "| route | requests | errors | p50 ms | p95 ms | p99 ms | p95 / nearest p95 | p95 < 10 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["load"]["routes"]:
        lines.append(
            f"| `{r['name']}` | {r['n']} | {r['errors']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['p95_over_nearest']} | {'yes' if r['within_budget'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--full", action="store_true", help="longer rounds (5 x 5 s per route)")
    args = ap.parse_args(argv)
    result = run("full" if args.full else "quick")
    print(markdown(result))
    failed = [r["name"] for r in result["load"]["routes"] if r["errors"]]
    if failed:
        print(f"routes with errors (first_error in bench/results): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
