"""Measure the README's two commands as a newcomer meets them: a fresh clone, ``make demo``, then ``make test``.

Writes the figures (wall times, the pipeline's phases, the embedding speed, test counts, disk use, machine facts)
to a JSON file and rewrites the README's block between ``<!-- timings:start -->`` and ``<!-- timings:end -->``
from them, so the README's figures come from one command (``make timings``) and agree with each other.

Usage: ``python3 scripts/newcomer_timings.py --out docs/newcomer_timings.json [--keep] [--no-readme]``
(20-30 minutes on 2 cores: the install, the demo render and both test suites run from scratch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- timings:start -->", "<!-- timings:end -->"


def _run(cmd: list[str], cwd: Path, log: Path) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, time.perf_counter() - t0, log.read_text(encoding="utf-8", errors="replace")


def _du(path: Path) -> int | None:
    if not path.exists():
        return None
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 else None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _phases(log: str) -> dict[str, float]:
    """``<step> done in X.XXs`` lines of the pipeline run (the first run of each step)."""
    out: dict[str, float] = {}
    for name, sec in re.findall(r"research_job\.steps\.run_all: ([a-z-]+) done in ([0-9.]+)s", log):
        out.setdefault(name, float(sec))
    m = re.search(r"Pipeline finished in ([0-9.]+)s", log)
    if m:
        out["pipeline"] = float(m.group(1))
    m = re.search(r"demo corpus: .* in ([0-9.]+) s \(", log)
    if m:
        out["render_demo_corpus"] = float(m.group(1))
    return out


def _tests(log: str) -> dict[str, int | None]:
    py = re.findall(r"(\d+) passed", log)
    node = re.findall(r"^# pass (\d+)", log, re.M)
    fail = re.findall(r"^# fail (\d+)", log, re.M)
    return {
        "python_passed": int(py[-1]) if py else None,
        "node_passed": int(node[-1]) if node else None,
        "node_failed": int(fail[-1]) if fail else None,
    }


def _mmss(sec: float) -> str:
    return f"{int(sec // 60)} min {int(round(sec % 60))} s"


def readme_block(r: dict) -> str:
    """The README paragraph of figures, from a result of :func:`measure`."""
    p, d, gib, mib = r["phases"], r["disk_bytes"], 1024**3, 1024**2
    parts = [
        f"Measured by `make timings` ({r['created_at'][:10]}, {r['machine']['cpus']} cores, {r['machine']['cpu']}): "
        f"on a fresh clone `make demo` took **{_mmss(r['demo_sec'])}** and `make test` **{_mmss(r['test_sec'])}** "
        f"({r['tests']['python_passed']} Python and {r['tests']['node_passed']} Node tests passed)."
    ]
    if "pipeline" in p:
        extra = f", embedding at {r['x_realtime']:.0f}x real time" if r.get("x_realtime") else ""
        render = (
            f"rendering the demo corpus {p['render_demo_corpus']:.0f} s, "
            if "render_demo_corpus" in p
            else ""
        )
        parts.append(
            f"Of `make demo`: {render}the pipeline {p['pipeline']:.0f} s{extra}; the rest is the install."
        )
    parts.append(
        f"Disk after both: `.venv` {d['venv'] / gib:.1f} GB, `node_api/node_modules` {d['node_modules'] / mib:.0f} MB, "
        f"`.cache` {d['cache'] / mib:.0f} MB, `artifacts` {d['artifacts'] / mib:.0f} MB."
    )
    load = r.get("load_1m") or []
    if (
        load
    ):  # the later samples include the measured work itself; the first says whether the machine was idle
        parts.append(f"1-minute load average when it started: {load[0]:.1f} on {r['machine']['cpus']} cores.")
    return " ".join(parts)


def measure(keep: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="newcomer-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env_note = {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}
    load = [os.getloadavg()[0]]
    rc_demo, demo_sec, demo_log = _run(["make", "demo"], clone, work / "demo.log")
    load.append(os.getloadavg()[0])
    rc_test, test_sec, test_log = _run(["make", "test"], clone, work / "test.log")
    load.append(os.getloadavg()[0])
    # the one version folder make demo wrote (the default model's)
    metas = sorted(clone.glob("artifacts/v1_model_*/embeddings/embeddings_meta.json"))
    x_rt = json.loads(metas[0].read_text())["stats"]["x_realtime"] if len(metas) == 1 else None
    result = {
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),  # fmt: skip
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu(), "python": sys.version.split()[0], "env": env_note},
        # 1-minute load average before make demo, between the two, after make test (the last two include the
        # measured work): a first figure near 0 says nothing else was running
        "load_1m": [round(x, 2) for x in load],
        "demo_rc": rc_demo,
        "test_rc": rc_test,
        "demo_sec": round(demo_sec, 1),
        "test_sec": round(test_sec, 1),
        "phases": _phases(demo_log),
        "x_realtime": x_rt,
        "tests": _tests(test_log),
        "disk_bytes": {
            "venv": _du(clone / ".venv"),
            "node_modules": _du(clone / "node_api/node_modules"),
            "cache": _du(clone / ".cache"),
            "artifacts": _du(clone / "artifacts"),
        },
        "logs": str(work) if keep else None,
    }
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=REPO / "docs/newcomer_timings.json", help="where the JSON goes"
    )
    ap.add_argument("--keep", action="store_true", help="keep the clone and the two logs (path in the JSON)")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the README's figures")
    ap.add_argument(
        "--from-json", type=Path, help="rewrite the README from an earlier result instead of measuring"
    )
    args = ap.parse_args()
    result = json.loads(args.from_json.read_text()) if args.from_json else measure(args.keep)
    if not args.from_json:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    if result["demo_rc"] != 0 or result["test_rc"] != 0:
        print(f"make demo exited {result['demo_rc']}, make test {result['test_rc']}", file=sys.stderr)
        return 1
    if not args.no_readme:
        readme = REPO / "README.md"
        text = readme.read_text(encoding="utf-8")
        i, j = text.index(START) + len(START), text.index(END)
        readme.write_text(text[:i] + "\n" + readme_block(result) + "\n" + text[j:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
