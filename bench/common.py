"""Shared helpers of the benchmarks: machine facts, repeat statistics, child processes, memory bandwidth, results.

Every speed figure is reported next to a reference measured in the same run (the machine the benchmarks were
written on is shared and noisy), as median and p95 over repeats. Configurations whose memory peak matters run in
a child process of their own (:func:`run_child`) so peaks do not mix; the child reports its own peak RSS.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
CACHE_DIR = Path(os.environ.get("BENCH_CACHE_DIR", ROOT / ".cache" / "bench"))

#: environment variables that fix the thread count of BLAS / OpenMP libraries in a child process
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def log(msg: str) -> None:
    """Print a progress line with a UTC timestamp (to stderr, so stdout stays machine-readable)."""
    print(f"[bench {_dt.datetime.now(_dt.UTC).strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_env(threads: int) -> dict[str, str]:
    """A copy of the environment with every BLAS / OpenMP thread count set to ``threads``."""
    env = dict(os.environ)
    for key in THREAD_ENV:
        env[key] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def summarize(samples: Sequence[float]) -> dict[str, float | int]:
    """Median, p95, min, max and count of ``samples`` (seconds or any unit)."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("summarize: no samples")
    return {
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
    }


def repeat(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    from importlib import metadata

    for name in (dist, f"{dist}-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _numpy_blas() -> dict[str, Any]:
    try:
        cfg = np.show_config(mode="dicts")  # type: ignore[func-returns-value]
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return {"name": blas.get("name"), "version": blas.get("version")}
    except Exception as e:  # numpy < 1.26 has no mode="dicts"
        return {"error": repr(e)}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except Exception:
        return None


def machine_facts(threads: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a reader needs to compare two result files: CPU, cores, memory, library versions, thread settings."""
    facts: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": _numpy_blas(),
        "faiss": _version("faiss"),
        "hnswlib": _version("hnswlib"),
        "torch": _version("torch"),
        "av": _version("av"),
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
        "threads": threads or {},
        "loadavg_1m_5m_15m": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": git_commit(),
        "shared_noisy_machine": os.environ.get(
            "BENCH_MACHINE_NOTE", "unknown: set BENCH_MACHINE_NOTE to describe"
        ),
    }
    try:
        import psutil

        facts["mem_total_bytes"] = int(psutil.virtual_memory().total)
        facts["mem_available_bytes"] = int(psutil.virtual_memory().available)
    except Exception:
        pass
    return facts


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    Linux: ``VmHWM`` of ``/proc/self/status`` (the high-water mark of this process's own address space).
    ``ru_maxrss`` is not used there because Linux carries it across fork + exec, so a child started by a big
    parent would report the parent's peak. Elsewhere: ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def rss_bytes() -> int:
    """Current resident set size of this process."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def memory_bandwidth(size_bytes: int = 512 * 2**20, repeats: int = 5) -> dict[str, Any]:
    """Read bandwidth (``a.sum()``) and copy bandwidth (``np.copyto``) of this machine in bytes/s, median of repeats.

    The read figure bounds a full scan: a query over N x D float32 vectors cannot take less than N*D*4 / read_bw.
    """
    n = size_bytes // 4
    a = np.ones(n, dtype=np.float32)
    b = np.empty_like(a)
    reads = {
        "sum": summarize([a.nbytes / t for t in repeat(lambda: a.sum(dtype=np.float32), repeats)]),
        "max": summarize([a.nbytes / t for t in repeat(lambda: a.max(), repeats)]),
    }
    best = max(reads, key=lambda k: reads[k]["median"])
    copy = repeat(lambda: np.copyto(b, a), repeats)
    return {
        "array_bytes": int(a.nbytes),
        "read_bytes_per_s": reads[best],
        "read_method_used": best,
        "read_by_method": reads,
        "copy_bytes_per_s": summarize([2 * a.nbytes / t for t in copy]),
        "method": "single thread; read = the faster (median) of numpy float32 sum and max over the array; copy = "
        "copyto, counted as 2x bytes (read + write)",
    }


def run_child(
    module: str, func: str, params: dict[str, Any], *, threads: int, timeout_s: float, out_path: Path
) -> dict[str, Any]:
    """Run ``module.func(params, out_path)`` in a fresh Python process with ``threads`` BLAS/OpenMP threads.

    The child writes its JSON result to ``out_path`` (incrementally, so a configuration killed at the time
    limit still leaves what it measured). Returns that JSON, with ``status`` "ok", "timeout" or "error".
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.unlink(missing_ok=True)
    code = (
        "import json,sys; from bench.common import child_main; "
        f"child_main({module!r}, {func!r}, json.loads(sys.argv[1]), sys.argv[2])"
    )
    cmd = [sys.executable, "-c", code, json.dumps(params), str(out_path)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=thread_env(threads), timeout=timeout_s, capture_output=True, text=True)
        status = "ok" if proc.returncode == 0 else "error"
        err = proc.stderr[-3000:] if proc.returncode != 0 else None
    except subprocess.TimeoutExpired:
        status, err = "timeout", f"killed after the {timeout_s:.0f} s limit of this configuration"
    result: dict[str, Any] = {}
    if out_path.is_file():
        try:
            result = json.loads(out_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            result = {}
    result["status"] = status if result.get("status") != "skipped" else "skipped"
    result["child_wall_sec"] = time.perf_counter() - t0
    if err:
        result["error"] = err
    return result


def child_main(module: str, func: str, params: dict[str, Any], out_path: str) -> None:
    """Entry point inside a child process started by :func:`run_child`."""
    import importlib

    fn = getattr(importlib.import_module(module), func)
    fn(params, Path(out_path))


def dump_partial(out_path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``out_path`` atomically (a child's incremental result)."""
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default), encoding="utf-8")
    os.replace(tmp, out_path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_result(name: str, obj: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` atomically and return its path."""
    from research_job.io.atomic import write_bytes

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = json.dumps(obj, indent=2, default=_json_default, sort_keys=False) + "\n"
    write_bytes(path, data.encode("utf-8"))
    return path


def skipped(reason: str) -> dict[str, Any]:
    """A result entry that was not measured, with the reason (never a made-up number)."""
    log(f"SKIP: {reason}")
    return {"status": "skipped", "reason": reason}


def module_available(name: str) -> str | None:
    """None if ``name`` imports, else the message ``not available yet: <name> (<error>)``."""
    import importlib

    try:
        importlib.import_module(name)
    except Exception as e:
        return f"not available yet: {name} ({type(e).__name__}: {e})"
    return None
