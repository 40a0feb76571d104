"""Entry point of the benchmarks: ``python -m bench.run --quick | --full [--only index,eval,extract,node,soak,ray,recs]``.

Each stage writes ``bench/results/<stage>_<mode>.json`` (plus ``index_<mode>.png``), then ``docs/benchmarks.md``
is regenerated from every result file present. ``--quick`` takes a few minutes on 2 cores; ``--full`` is long
(N up to 1M, each configuration bounded in time). A stage whose inputs are missing (a module not merged yet, model
weights absent, Node API not built) is recorded as skipped with the reason, never with a made-up number.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.common import RESULTS_DIR, log, write_result

STAGES = ["index", "eval", "extract", "node", "soak", "ray", "recs"]


def parse_datasets(spec: str) -> list[tuple[int, int]]:
    """``100000x200,1000000x768`` -> [(100000, 200), (1000000, 768)]."""
    out = []
    for part in spec.split(","):
        n, sep, d = part.strip().lower().partition("x")
        if not sep or not n.isdigit() or not d.isdigit() or int(n) < 100 or int(d) < 1:
            raise ValueError(f"Bad dataset {part!r}: expected NxD with N >= 100, e.g. 100000x200")
        out.append((int(n), int(d)))
    return out


def run_stage(
    stage: str,
    mode: str,
    datasets: list[tuple[int, int]] | None = None,
    families: list[str] | None = None,
) -> dict[str, Any]:
    """Run one stage and return its result dict (``datasets`` and ``families`` narrow the index stage)."""
    if stage == "index":
        from bench import index_bench

        if datasets:
            return run_index_datasets(mode, datasets, families)
        result = index_bench.run(mode)
        index_bench.plot(result, RESULTS_DIR / f"index_{mode}.png")
        return result
    if stage == "eval":
        from bench import eval_bench

        return eval_bench.run(mode)
    if stage == "extract":
        from bench import extract_bench

        return extract_bench.run(mode)
    if stage == "node":
        from bench import node_bench

        return node_bench.run(mode)
    if stage == "soak":
        from bench import soak_bench

        return soak_bench.run(mode)
    if stage == "ray":
        from bench import ray_bench

        return ray_bench.run(mode)
    if stage == "recs":
        from bench import recs_bench

        return recs_bench.run(mode)
    raise ValueError(f"Unknown stage {stage!r}. Known: {', '.join(STAGES)}")


def merge_index_result(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` (one run over some datasets) merged into ``old`` (the result file so far): a dataset measured
    again replaces its old entry, the others are kept; every dataset keeps the machine facts, bandwidth and
    time of the run that measured it (``measured_at``, ``machine``, ``memory_bandwidth``)."""
    stamp = {
        "measured_at": new["created_at"],
        "machine": new["machine"],
        "memory_bandwidth": new["memory_bandwidth"],
    }
    fresh = [{**ds, **stamp} for ds in new["datasets"]]
    if not old or old.get("benchmark") != "index" or old.get("mode") != new.get("mode"):
        return {**new, "datasets": fresh}
    old_stamp = {
        "measured_at": old["created_at"],
        "machine": old["machine"],
        "memory_bandwidth": old["memory_bandwidth"],
    }
    keys = {(ds["n"], ds["dim"]) for ds in fresh}
    kept = [{**old_stamp, **ds} for ds in old.get("datasets", []) if (ds["n"], ds["dim"]) not in keys]
    merged = sorted(kept + fresh, key=lambda ds: (ds["n"], ds["dim"]))
    return {**new, "datasets": merged, "datasets_overridden": True}


def run_index_datasets(
    mode: str, datasets: list[tuple[int, int]], families: list[str] | None = None
) -> dict[str, Any]:
    """The index stage over ``datasets``, one at a time, each merged into ``index_<mode>.json`` as soon as it is
    measured (a long ``--full`` run that is stopped keeps the datasets it finished)."""
    import json

    from bench import index_bench

    path = RESULTS_DIR / f"index_{mode}.json"
    merged: dict[str, Any] = {}
    for ds in datasets:
        old = json.loads(path.read_text()) if path.is_file() else None
        t0 = time.perf_counter()
        new = index_bench.run(mode, datasets=[ds], families=families)
        new["stage_wall_sec"] = time.perf_counter() - t0
        merged = merge_index_result(old, new)
        write_result(f"index_{mode}", merged)
        index_bench.plot(merged, RESULTS_DIR / f"index_{mode}.png")
        log(f"index: N={ds[0]} D={ds[1]} merged into {path}")
    return merged


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the chosen stages, write results and the Markdown report."""
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small sizes, a few minutes on 2 cores (default)")
    g.add_argument("--full", action="store_true", help="N up to 1M, D 200 and 768 (long)")
    ap.add_argument(
        "--only", default=",".join(STAGES), help=f"comma-separated stages among {','.join(STAGES)}"
    )
    ap.add_argument(
        "--datasets",
        default=None,
        help="index stage only: override the N x D list, e.g. 100000x200,1000000x768",
    )
    ap.add_argument(
        "--families",
        default=None,
        help="index stage with --datasets only: comma-separated index families (default all), e.g. faiss-flat,hnswlib",
    )
    ap.add_argument("--report-only", action="store_true", help="only regenerate docs/benchmarks.md")
    args = ap.parse_args(argv)
    mode = "full" if args.full else "quick"
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        ap.error(f"Unknown stage(s) {', '.join(bad)}. Known: {', '.join(STAGES)}")
    try:
        datasets = parse_datasets(args.datasets) if args.datasets else None
    except ValueError as e:
        ap.error(str(e))
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    if families:
        from bench.index_bench import FAMILIES

        unknown = [f for f in families if f not in FAMILIES]
        if unknown or not datasets:
            ap.error(
                f"--families needs --datasets and names among {', '.join(FAMILIES)}; got {args.families!r}"
            )
    if not args.report_only:
        for stage in stages:
            t0 = time.perf_counter()
            log(f"=== stage {stage} ({mode})")
            result = run_stage(stage, mode, datasets, families)
            result.setdefault("stage_wall_sec", time.perf_counter() - t0)
            path = write_result(f"{stage}_{mode}", result)
            log(f"=== stage {stage} done in {result['stage_wall_sec']:.1f} s -> {path}")
    from bench import report

    out = report.write()
    log(f"report -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
