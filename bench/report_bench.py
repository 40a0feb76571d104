"""Report step on N synthetic tracks: the time of each part of ``research-job report``, against the ranking alone.

The version folder (made once, cached under ``.cache/bench/report/``) holds what the report reads, every file
written by the project's own writers and validated against its schema:

* ``metadata/tracks_metadata.csv`` and the embeddings (:func:`research_job.embeddings.write_embeddings`): N x 200
  seeded unit vectors, 20 composers, each a random unit centre (sizes from Dirichlet(2) weights); albums of 10
  consecutive tracks of one composer with an album offset of their own; isotropic noise; 2 % of the tracks without
  a composer;
* ``embeddings/tags.{f32,json}`` (:func:`research_job.tags.write_tags`): musicnn's 50 MagnaTagATune names, scores
  = sigmoid of a per-composer profile plus noise;
* ``eval/eval_results.json`` and ``sample_top5.*``: the evaluate step itself (k = 5, 1,000 bootstrap resamples;
  its clustering block off: a silhouette over every pair, O(N^2), which the report does not read);
* ``index/index_meta.json`` and ``index/neighbors.i32``: the build-index step itself (FAISS flat and HNSW, hnswlib;
  1,000 recall queries; its default exact top-20 neighbour table, which the report reads its ranking from);
* a ``comparison.json`` (schema model_comparison) of four synthetic rows and a trained head's ``head_meta.json``
  and ``curves.json`` (the schemas' valid examples; the model is named as a head's so that the report shows them):
  their cost is reading small JSON files and drawing.

Then ``repeats`` times, each in a fresh child process with 2 BLAS threads (the target machine: 2 cores; fresh, as
``research-job report`` runs, so numba compiles UMAP's layout in each): the report end to end
(:func:`research_job.report.build_report` + :func:`~research_job.report.write_report`) with its own per-part
timings (``report.json`` ``timings``; its ``ranking_sec`` reads the ranking off ``index/neighbors.i32``), and,
as the reference measured in the same run, the ranking the report repeated before it read the table
(:func:`research_job.evaluation.rank_vectors`: every track against every other, both candidate policies, the
product evaluate pays too). Target: the report under 60 s at N = 100k on 2 cores. Writes
``bench/results/report_<mode>.json``.

Run: ``python -m bench.report_bench --quick`` (N = 100k, 2 repeats) or ``--full`` (N = 100k, 5 repeats).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    CACHE_DIR,
    dump_partial,
    log,
    machine_facts,
    module_available,
    peak_rss_bytes,
    run_child,
    skipped,
    summarize,
    utc_now,
    write_result,
)

QUICK = {"n": 100_000, "repeats": 2, "limit_s": 900}
FULL = {"n": 100_000, "repeats": 5, "limit_s": 900}
DIM = 200
N_COMPOSERS = 20
ALBUM_SIZE = 10
THREADS = 2
#: norm of the isotropic noise against the unit composer centre and the album offset of norm 0.8
NOISE = 2.0
TARGET_SEC = 60.0
SEED = 0
#: a head's model name, so that the folder shows the trained-head section too (the report reads a head's files
#: only in a folder of that head's embeddings)
MODEL = "synthetic+head:bench"


def synthetic_catalogue(n: int, dim: int, seed: int) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray]:
    """Unit vectors (float32), metadata rows and composer index (-1: none) of a seeded catalogue of ``n`` tracks."""
    from bench.synthetic import mixture_centres

    rng = np.random.default_rng(seed)
    centres, weights = mixture_centres(N_COMPOSERS, dim, seed)
    composer = np.sort(
        rng.choice(N_COMPOSERS, size=n, p=weights)
    )  # albums: consecutive tracks of one composer
    album = np.arange(n) // ALBUM_SIZE
    album_offset = rng.standard_normal((int(album[-1]) + 1, dim)).astype(np.float32) * np.float32(
        0.8 / np.sqrt(dim)
    )
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 65536):
        e = min(n, s + 65536)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32) * np.float32(NOISE / np.sqrt(dim))
        x[s:e] = centres[composer[s:e]] + album_offset[album[s:e]] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    missing = rng.random(n) < 0.02
    rows = [
        {
            "track_id": f"t{i:07d}",
            "album_id": f"a{int(album[i]):06d}",
            "track_no": int(i % ALBUM_SIZE + 1),
            "title": f"Synthetic track {i}",
            "composer": None if missing[i] else f"composer {int(composer[i]):02d}",
            "audio_s3_key": f"audio/a{int(album[i]):06d}/t{i:07d}.m4a",
            "duration_sec": 30.0,
            "composer_raw": None if missing[i] else f"Composer {int(composer[i]):02d}",
            "composer_missing": bool(missing[i]),
        }
        for i in range(n)
    ]
    return x, rows, np.where(missing, -1, composer)


def _tag_scores(composer: np.ndarray, n_tags: int, seed: int) -> np.ndarray:
    """Per-track tag probabilities: the sigmoid of a per-composer profile (a few strong tags) plus noise."""
    rng = np.random.default_rng(seed + 7)
    profile = rng.normal(-3.0, 1.0, (N_COMPOSERS + 1, n_tags))
    for c in range(N_COMPOSERS + 1):
        profile[c, rng.choice(n_tags, 4, replace=False)] += 3.0
    logits = profile[composer] + rng.normal(0.0, 0.7, (composer.size, n_tags))
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def _comparison(tracks_csv: Path, n: int) -> dict[str, Any]:
    """A schema-valid comparison.json of this corpus with four synthetic rows (the report draws it, never uses its
    values): a candidate, a post-processing of it, the DSP baseline and the random floor."""
    from research_job.provenance import sha256_file

    def cell(v: float, floor: float) -> dict[str, float]:
        return {"value": v, "random": floor, "ci_low": max(0.0, v - 0.01), "ci_high": min(1.0, v + 0.01)}

    rows = []
    for rank, (label, role, p) in enumerate(
        ((MODEL, "candidate", 0.62), (f"{MODEL}#center", "candidate", 0.60), ("dsp-stats", "dsp_baseline", 0.31),
         ("random", "random_floor", 0.08)), start=1,
    ):  # fmt: skip
        model, _, post = label.partition("#")
        rows.append(
            {"rank": rank, "label": label, "model": model, "postprocess": post or "none", "role": role,
             "status": "ok", "error": None, "version_dir": f"v1_model_{label.replace('#', '__')}",
             "model_info": None, "dim": DIM, "n_embedded": n, "n_failed_tracks": 0, "n_queries": n,
             "metrics": {m: cell(p, 0.08) for m in ("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr")},
             "exclude_same_album": {"n_queries": n, "precision_at_k": cell(p * 0.8, 0.08)},
             "sec_per_track": 0.01, "x_realtime": 50.0, "peak_memory_bytes": 2**30, "embed_sec": 1.0,
             "evaluate_sec": 1.0, "wall_sec": 2.0, "embeddings_reused": False}
        )  # fmt: skip
    return {
        "schema_version": "1.0", "k": 5, "relevance": "same_standardized_composer",
        "source_version_dir": "bench", "metadata_sha256": sha256_file(tracks_csv), "n_tracks": n,
        "bootstrap_resamples": 1000, "seed": 0, "device": "cpu", "reuse_embeddings": False,
        "peak_memory_method": "child_ru_maxrss", "n_entries": len(rows), "n_failed": 0, "rows": rows,
        "wall_sec": 8.0, "created_at": utc_now(), "code_version": "bench-synthetic",
    }  # fmt: skip


def make_folder(root: Path, n: int, seed: int = SEED) -> tuple[Path, Path]:
    """The version folder and its comparison.json (reused when complete). Runs evaluate and build-index."""
    from research_job import schema
    from research_job.config import CommonConfig
    from research_job.embeddings import write_embeddings
    from research_job.layout import ArtifactLayout
    from research_job.metadata import TrackRow, write_tracks_csv
    from research_job.models.musicnn import MTT_TAGS
    from research_job.steps import build_index, evaluate
    from research_job.tags import write_tags

    vdir = ArtifactLayout.for_model(root / f"n{n}-s{seed}", MODEL).version_dir
    comparison = vdir.parent / "comparison" / "comparison.json"
    done = vdir / ".complete"
    if done.is_file() and (vdir / "index" / "neighbors.i32").is_file():
        return vdir, comparison
    if done.is_file():  # a folder cached before the bench kept build-index's neighbour table: add it
        t0 = time.perf_counter()
        build_index.run(
            build_index.BuildIndexConfig(common=CommonConfig(version_dir=vdir), recall_queries=1000)
        )
        log(f"report: build-index (with the neighbour table) in {time.perf_counter() - t0:.1f} s")
        return vdir, comparison
    shutil.rmtree(vdir.parent, ignore_errors=True)
    layout = ArtifactLayout(vdir)
    t0 = time.perf_counter()
    x, rows, composer = synthetic_catalogue(n, DIM, seed)
    write_tracks_csv(layout.tracks_csv, [TrackRow(**r) for r in rows])  # type: ignore[arg-type]
    ids = [str(r["track_id"]) for r in rows]
    info = {"version": "bench.report_bench synthetic catalogue", "weights_sha256": None, "pooling": "mean",
            "layer": None, "params": {"seed": seed, "n_composers": N_COMPOSERS, "album_size": ALBUM_SIZE}}  # fmt: skip
    stats = {"n_input_tracks": n, "n_embedded": n, "n_failed": 0, "audio_sec": 30.0 * n, "wall_sec": 1.0}
    write_embeddings(layout, x, ids, model_name=MODEL, info=info, dim=DIM, sample_rate=16000, stats=stats)
    write_tags(layout, ids, _tag_scores(composer, len(MTT_TAGS), seed),
               model={"name": MODEL, "version": info["version"], "weights_sha256": None},
               blocks=[{"model": "musicnn-mtt", "vocabulary": "MagnaTagATune", "tags": MTT_TAGS}])  # fmt: skip
    log(f"report: catalogue N={n} written in {time.perf_counter() - t0:.1f} s")
    common = CommonConfig(version_dir=vdir)
    t0 = time.perf_counter()
    # evaluate's own clustering block (a silhouette over every pair: O(N^2), ~9 min at 100k) is not what the
    # report reads: it fits and scores its own
    evaluate.run(evaluate.EvaluateConfig(common=common, clustering=False))
    log(f"report: evaluate in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    build_index.run(build_index.BuildIndexConfig(common=common, recall_queries=1000))
    log(f"report: build-index in {time.perf_counter() - t0:.1f} s")
    examples = schema.SCHEMA_DIR / "examples" / "valid"
    for key, name in (("head_meta", "head_meta"), ("head_curves_json", "head_curves")):
        obj = json.loads((examples / f"{name}.json").read_text(encoding="utf-8"))
        if name == "head_meta":
            obj["model_name"] = MODEL
        schema.write_artifact(layout.path(key), name, obj)
    schema.write_artifact(comparison, "model_comparison", _comparison(layout.tracks_csv, n))
    done.write_text(utc_now() + "\n", encoding="utf-8")
    return vdir, comparison


def child_report(params: dict[str, Any], out: Path) -> None:
    """One report in this fresh process (as ``research-job report`` runs: numba compiles UMAP's layout once), then
    the ranking alone; dump after each."""
    from research_job import evaluation
    from research_job.layout import ArtifactLayout
    from research_job.report import ReportOptions, build_report, load_inputs, write_report

    layout = ArtifactLayout(Path(params["version_dir"]))
    opts = ReportOptions(comparison=Path(params["comparison"]))
    res: dict[str, Any] = {"threads": THREADS, "n": params["n"], "dim": DIM}
    t0 = time.perf_counter()
    built = build_report(layout, opts)
    write_report(layout, built)
    res["report_sec"] = time.perf_counter() - t0
    res["timings"] = dict(built.report["timings"])
    res["ranking_from_neighbors"] = load_inputs(layout).neighbors is not None
    rep = built.report
    kmeans = (rep["clustering"] or {}).get("methods", [{}])[0]
    res["sampling"] = {
        "map_points": rep["map"]["n_points"],
        "pair_cosines_sampled": rep["similarity"]["n_sampled"],
        "silhouette_points": (rep["clustering"] or {}).get("silhouette_points"),
        "kmeans_fitted": kmeans.get("n_fitted"),
        "agglomerative_points": (rep["clustering"] or {}).get("methods", [{}, {}])[1].get("n_tracks"),
        "labelled_tracks": (rep["clustering"] or {}).get("n_tracks"),
    }
    res["figures"] = [f["name"] for f in rep["figures"]]
    res["sections"] = {
        key: "skipped" if "skipped" in rep[key] else "shown"
        for key in ("tags", "comparison", "index", "head")
    }
    log(f"  report: {res['report_sec']:.1f} s {res['timings']}")
    dump_partial(out, res)
    inp = load_inputs(layout)
    p, rows = inp.params, inp.rows
    t0 = time.perf_counter()
    evaluation.rank_vectors(inp.vectors, inp.ids, [getattr(r, p.label) for r in rows],
                            [r.album_id for r in rows], p)  # fmt: skip
    res["rank_vectors_sec"] = time.perf_counter() - t0
    log(f"  report: rank_vectors alone {res['rank_vectors_sec']:.1f} s")
    res["peak_rss"] = peak_rss_bytes()
    dump_partial(out, res)


def run(mode: str) -> dict[str, Any]:
    """Run the report benchmark in ``mode``; returns the result dict."""
    cfg = QUICK if mode == "quick" else FULL
    result: dict[str, Any] = {
        "benchmark": "report",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts({"blas": THREADS}),
        "target": f"research-job report < {TARGET_SEC:g} s at N = 100,000 on {THREADS} cores",
        "data": (
            f"bench.report_bench: N x {DIM} unit vectors, {N_COMPOSERS} composers (Dirichlet(2) sizes), albums of "
            f"{ALBUM_SIZE} tracks with their own offset, noise of norm {NOISE:g}, 2% tracks without composer; "
            "synthetic tags (50 MTT names); eval_results.json and index_meta.json from the evaluate and build-index "
            "steps; a synthetic comparison.json and the schemas' example head files"
        ),
        "method": (
            "each repeat a fresh child process with 2 BLAS threads: build_report + write_report (as research-job "
            "report: umap-learn's layout compiled by numba in it), then evaluation.rank_vectors alone (the "
            "ranking the report repeated before it read index/neighbors.i32, the reference)"
        ),
    }
    for mod in ("research_job.report", "umap"):
        why = module_available(mod)
        if why:
            result.update(skipped(why))
            return result
    n = cfg["n"]
    log(f"report: folder N={n}")
    vdir, comparison = make_folder(CACHE_DIR / "report", n)
    ev = json.loads((vdir / "eval" / "eval_results.json").read_text(encoding="utf-8"))
    result["evaluate"] = {
        "precision_at_5": ev["overall"]["metrics"]["precision_at_k"],
        "timings": ev["timings"],
    }
    runs = []
    for i in range(cfg["repeats"]):
        log(f"report: repeat {i + 1} of {cfg['repeats']}")
        runs.append(
            run_child(
                "bench.report_bench",
                "child_report",
                {"version_dir": str(vdir), "comparison": str(comparison), "n": n},
                threads=THREADS,
                timeout_s=cfg["limit_s"],
                out_path=CACHE_DIR / "report" / f"report_{n}_{i}.json",
            )  # fmt: skip
        )
    result["runs"] = runs
    done = [r for r in runs if "report_sec" in r]
    if not done:
        result["target_met"] = None
        result["target_status"] = f"not measured: {runs[-1].get('status')} {runs[-1].get('error', '')[-300:]}"
        return result
    result["report_sec"] = summarize([r["report_sec"] for r in done])
    result["report_without_ranking_sec"] = summarize(
        [r["report_sec"] - r["timings"]["ranking_sec"] for r in done]
    )  # the parts the report adds to the ranking it repeats (the product evaluate pays too)
    ranked = [r["rank_vectors_sec"] for r in done if "rank_vectors_sec" in r]
    if ranked:
        result["rank_vectors_sec"] = summarize(ranked)
        result["report_over_ranking"] = result["report_sec"]["median"] / result["rank_vectors_sec"]["median"]
    part_names = list(done[0]["timings"])
    result["parts_median_sec"] = {k: float(np.median([r["timings"][k] for r in done])) for k in part_names}
    sec = result["report_sec"]["median"]
    result["target_met"] = sec < TARGET_SEC
    result["target_status"] = f"{sec:.1f} s at N={n:,} (target < {TARGET_SEC:g} s)"
    return result


def markdown(result: dict[str, Any]) -> str:
    """The Markdown section of ``docs/benchmarks.md`` for one report result."""
    lines = [f"### Report step ({result['mode']}, {result['created_at']})", ""]
    if result.get("status") == "skipped":
        return "\n".join(lines + [f"Skipped: {result['reason']}", ""])
    lines += [f"Data: {result['data']}. {result['method']}. Target: {result['target']} -> "
              f"**{result.get('target_status')}**.", ""]  # fmt: skip
    if "report_sec" not in result:
        return "\n".join(lines + [""])
    lines += ["| measurement | median s | p95 s | min s | repeats |", "|---|---:|---:|---:|---:|"]
    for key, label in (
        (
            "rank_vectors_sec",
            "reference: evaluation.rank_vectors alone (the ranking evaluate and the report pay)",
        ),
        ("report_sec", "research-job report end to end (fresh process)"),
        ("report_without_ranking_sec", "the report less its ranking"),
    ):
        s = result.get(key)
        if s:
            lines.append(f"| {label} | {s['median']:.1f} | {s['p95']:.1f} | {s['min']:.1f} | {s['n']} |")
    parts = ", ".join(f"{k.removesuffix('_sec')} {v:.1f}" for k, v in result["parts_median_sec"].items())
    sampling = result["runs"][0].get("sampling", {})
    lines += ["", f"Parts (median s): {parts}; writing the files is the rest. Samples: {sampling}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: run one mode and write ``bench/results/report_<mode>.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="N = 100k, 2 repeats (default)")
    g.add_argument("--full", action="store_true", help="N = 100k, 5 repeats")
    a = ap.parse_args(argv)
    mode = "full" if a.full else "quick"
    result = run(mode)
    path = write_result(f"report_{mode}", result)
    log(f"report: {result.get('target_status', result.get('reason'))} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
