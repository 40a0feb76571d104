"""Load + reload soak of the Node API: hostile version folders installed and reloaded while it serves.

One server process on loopback serves a synthetic version folder (``bench/make_synthetic_artifacts.py``) under
a fixed-duration load (``bench/node/load.mjs``, autocannon: ``/tracks/:id/nearest`` with a seeded random id per
request). Meanwhile the folder it serves is rewritten in turn to a good version (two seeds, alternating) or to
one of the hostile folders an attacker or a careless operator can leave there (``HOSTILE``: a crafted
``hnsw.index`` with its sha256 re-recorded, links to ``/dev/zero`` and to a secret file outside the folder, a
FIFO as the CSV, a listed index that is missing, a truncated embeddings file, a JSON file that is not JSON),
and ``POST /models/reload`` is called after each. A good version must reload (200), a hostile one must be
refused (422, nothing of the secret in the body) while the old version keeps serving; every other answer, a
dropped connection or a dead server is a failure. Reported: requests, their statuses and connection errors,
reloads by outcome, RSS before and after, and whether the server then exits 0 on SIGTERM.

Run: ``python -m bench.run --quick --only soak`` (``make soak``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import CACHE_DIR, log, machine_facts, skipped, utc_now
from bench.make_synthetic_artifacts import make_artifacts
from bench.node_bench import AUTOCANNON, SERVER_JS, Server, _load
from research_job.hnsw_file import HEADER_BYTES as HNSW_HEADER
from research_job.provenance import sha256_bytes

QUICK = {"n": 5000, "dim": 64, "duration_s": 30, "connections": 10}
FULL = {"n": 50000, "dim": 200, "duration_s": 120, "connections": 50}
SECRET = "SOAK-SECRET-9c1e"
TOKEN = "soak-reload-token-0123456789"


def _crafted_index(live: Path) -> None:
    """Element 0's first level-0 link -> 0xFFFFFF00 (hnswlib would read far outside its buffer), with the
    file's sha256 and size re-recorded in index_meta.json."""
    f = live / "index" / "hnsw.index"
    b = bytearray(f.read_bytes())
    count = struct.unpack_from("<H", b, HNSW_HEADER)[0]
    struct.pack_into("<H", b, HNSW_HEADER, max(1, count))
    struct.pack_into("<I", b, HNSW_HEADER + 4, 0xFFFFFF00)
    f.write_bytes(bytes(b))
    meta_path = live / "index" / "index_meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    for e in meta["indexes"]:
        if e["name"] == "hnswlib":
            e["sha256"] = sha256_bytes(bytes(b))
            e["size_bytes"] = len(b)
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _link(target: str | Path, at: Path) -> None:
    at.unlink()
    at.symlink_to(target)


def _fifo(at: Path) -> None:
    at.unlink()
    os.mkfifo(at)


def _truncate(at: Path) -> None:
    with open(at, "r+b") as f:
        f.truncate(max(0, at.stat().st_size - 4))


HOSTILE: dict[str, Callable[[Path, Path], None]] = {
    "crafted_hnsw_index": lambda live, secret: _crafted_index(live),
    "embeddings_to_dev_zero": lambda live, secret: _link("/dev/zero", live / "embeddings" / "embeddings.f32"),
    "track_ids_to_secret": lambda live, secret: _link(secret, live / "embeddings" / "track_ids.json"),
    "csv_fifo": lambda live, secret: _fifo(live / "metadata" / "tracks_metadata.csv"),
    "listed_index_missing": lambda live, secret: (live / "index" / "hnsw.index").unlink(),
    "embeddings_truncated": lambda live, secret: _truncate(live / "embeddings" / "embeddings.f32"),
    "meta_not_json": lambda live, secret: (live / "embeddings" / "embeddings_meta.json").write_text(
        '{"x": ' + SECRET, encoding="utf-8"
    ),
}


def _install(src: Path, live: Path) -> None:
    """Make ``live`` hold exactly the files of ``src`` (links and special files left by a hostile round go)."""
    for sub in ("embeddings", "metadata", "index", "eval"):
        d = live / sub
        if d.exists():
            for p in d.iterdir():
                if p.is_symlink() or not p.is_file() or not (src / sub / p.name).is_file():
                    p.unlink()
    for f in src.rglob("*"):
        if f.is_file() and not f.name.startswith(".complete"):
            dst = live / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".soak-tmp")
            shutil.copyfile(f, tmp)
            tmp.replace(dst)


def _reload(url: str) -> tuple[int, str]:
    req = urllib.request.Request(
        url + "/models/reload", method="POST", headers={"authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 (loopback URL built here)
            return int(r.status), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        return 0, type(e).__name__


def _reload_loop(
    url: str, live: Path, goods: list[Path], secret: Path, stop: threading.Event, server: Server
) -> dict[str, Any]:
    """Alternate good and hostile folders in ``live`` with a reload after each until ``stop``."""
    plan = [("good", None)] + [(name, fn) for name, fn in HOSTILE.items()]
    counts: dict[str, dict[str, int]] = {}
    failures: list[str] = []
    secs: list[float] = []
    rss: list[tuple[float, int | None]] = []
    t_start = time.perf_counter()
    i = 0
    while not stop.is_set() and server.proc.poll() is None:
        kind, fn = plan[i % len(plan)]
        good = goods[(i // len(plan)) % len(goods)]
        _install(good, live)
        if fn is not None:
            fn(live, secret)
        t0 = time.perf_counter()
        status, body = _reload(url)
        secs.append(time.perf_counter() - t0)
        expected = 200 if kind == "good" else 422
        c = counts.setdefault(kind, {"reloads": 0, "as_expected": 0})
        c["reloads"] += 1
        if status == expected and SECRET not in body:
            c["as_expected"] += 1
        else:
            failures.append(f"{kind}: status {status} (expected {expected}): {body[:200]}")
        if kind == "good":
            rss.append((round(time.perf_counter() - t_start, 2), server.rss()))
        i += 1
    _install(goods[0], live)
    secs.sort()
    return {
        "reloads": i,
        "by_kind": counts,
        "failures": failures,
        "reload_sec_median": secs[len(secs) // 2] if secs else None,
        "reload_sec_max": secs[-1] if secs else None,
        "rss_after_good_reloads": rss,
    }


def run(mode: str) -> dict[str, Any]:
    """The soak in ``mode`` (quick: 30 s; full: 120 s); returns the result dict."""
    cfg = QUICK if mode == "quick" else FULL
    result: dict[str, Any] = {
        "benchmark": "soak",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts(
            {"server": "node (one event loop)", "load_generator": "separate node process"}
        ),
        "params": dict(cfg),
    }
    why = None
    if shutil.which("node") is None:
        why = "node is not installed"
    elif not SERVER_JS.is_file():
        why = "the Node API is not built: run `make node-build`"
    elif not AUTOCANNON.is_dir():
        why = "autocannon not installed: run `npm --prefix bench/node ci` (bench/node/package-lock.json)"
    if why:
        result.update(skipped(why))
        return result
    root = CACHE_DIR / "soak"
    goods = [make_artifacts(root, cfg["n"], cfg["dim"], seed=s) for s in (0, 1)]
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_s:
        tmp = Path(tmp_s)
        live = tmp / goods[0].name
        _install(goods[0], live)
        secret = tmp / "shadow"
        secret.write_text(f"root:{SECRET}:19000:0:99999:7:::\n", encoding="utf-8")
        ids = json.loads((live / "embeddings" / "track_ids.json").read_text(encoding="utf-8"))["track_ids"]
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
        log_path = root / "server.log"
        with Server(live, "auto", log_path, extra_env={"RELOAD_TOKEN": TOKEN, "RECALL_SAMPLE": "200"}) as srv:
            result["startup_sec"] = srv.wait_ready(300)
            result["rss_bytes_before"] = srv.rss()
            stop = threading.Event()
            box: dict[str, Any] = {}
            reloader = threading.Thread(
                target=lambda: box.update(_reload_loop(srv.url, live, goods, secret, stop, srv)), daemon=True
            )
            t0 = time.perf_counter()
            reloader.start()
            try:
                load = _load(
                    srv.url, ["/tracks/{id}/nearest?k=10"], cfg["duration_s"], 1, cfg["connections"], ids_file
                )
            finally:
                stop.set()
                reloader.join(timeout=300)
            result["wall_sec"] = time.perf_counter() - t0
            result["server_alive_after"] = srv.proc.poll() is None
            result["rss_bytes_after"] = srv.rss()
            result["reload"] = box
            s = load["paths"][0]
            result["load"] = {
                k: s[k]
                for k in ("path", "connections", "requests", "ok_2xx", "statuses", "errors", "timeouts")
            }
            result["load"]["requests_per_s"] = s["requests_per_s"]
            result["load"]["latency_ms"] = s["latency_ms"]
            srv.proc.send_signal(15)
            try:
                result["exit_code_on_sigterm"] = srv.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                result["exit_code_on_sigterm"] = None
        result["secret_in_server_log"] = SECRET in log_path.read_text(encoding="utf-8", errors="replace")
    ld, rl = result["load"], result["reload"]
    result["failed_requests"] = ld["requests"] - ld["ok_2xx"] + ld["errors"] + ld["timeouts"]
    result["ok"] = bool(
        result["failed_requests"] == 0
        and not rl["failures"]
        and result["server_alive_after"]
        and result["exit_code_on_sigterm"] == 0
        and not result["secret_in_server_log"]
    )
    log(
        f"soak: {ld['requests']} requests, {result['failed_requests']} failed, {rl['reloads']} reloads, "
        f"{len(rl['failures'])} unexpected, ok={result['ok']}"
    )
    return result


def _rss_trend(reload: dict[str, Any]) -> str:
    """First RSS sample, and the largest of each half of the run: a plateau, not a climb, means no leak."""
    xs = [b for _, b in reload.get("rss_after_good_reloads") or [] if b]
    if len(xs) < 2:
        return "?"
    h = len(xs) // 2
    return " / ".join(f"{b / 2**20:.0f} MiB" for b in (xs[0], max(xs[:h]), max(xs[h:])))


def markdown(result: dict[str, Any]) -> str:
    """The soak's table for docs/benchmarks.md."""
    if result.get("skipped"):
        return f"Skipped: {result.get('reason')}\n"
    ld, rl, p = result["load"], result["reload"], result["params"]
    mib = lambda b: f"{b / 2**20:.0f} MiB" if b else "?"  # noqa: E731
    kinds = ", ".join(f"{k} {v['as_expected']}/{v['reloads']}" for k, v in sorted(rl["by_kind"].items()))
    lines = [
        f"N = {p['n']} x {p['dim']}, {p['connections']} connections for {p['duration_s']} s on "
        f"`{ld['path']}`; between reloads the served folder is rewritten to a good version or a hostile one.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests | {ld['requests']} ({ld['requests_per_s']:.0f}/s), p50 {ld['latency_ms']['p50']} ms, "
        f"p99 {ld['latency_ms']['p99']} ms |",
        f"| failed requests (non-2xx, errors, timeouts) | {result['failed_requests']} |",
        f"| reloads | {rl['reloads']} (median {rl['reload_sec_median']:.2f} s), unexpected outcomes "
        f"{len(rl['failures'])} |",
        f"| reloads as expected, by folder (good 200, hostile 422) | {kinds} |",
        f"| RSS before / after | {mib(result['rss_bytes_before'])} / {mib(result['rss_bytes_after'])} |",
        f"| RSS after each good reload: first, max of the first half, max of the second half | {_rss_trend(rl)} |",
        f"| server alive after; exit code on SIGTERM | {result['server_alive_after']}; "
        f"{result['exit_code_on_sigterm']} |",
        f"| secret in the server's log | {result['secret_in_server_log']} |",
        f"| **soak passed** | **{result['ok']}** |",
        "",
    ]
    return "\n".join(lines)
