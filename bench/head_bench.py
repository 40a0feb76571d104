"""train-head on a seeded synthetic 1,000-track frame set: training time, epochs, size, memory, quality vs frozen.

The feature sets are those of the head tests (tests/helpers/head_factory.py) at a musicnn-like size: D = 200
(musicnn's penultimate layer), 40-120 frames per track (2-6 minutes of 3 s patches), 2 augmented views per
track. Three configurations, each in its own child process with 2 torch threads (the CPU-first target: "1,000
tracks train in minutes on 2 cores"), default hyper-parameters unless named:

* ``mlp`` + ``contrastive`` on the mixture set (tracks = sums of shared sources + a shared nuisance and a
  per-track offset in it, views = differently offset noisy crops), album split;
* ``sequence`` + ``contrastive`` on the same set;
* ``mlp`` + ``triplet`` on the labelled set (per-album offsets dominate the label signal), label split.

Measured per configuration: wall time of ``train_head_folder`` end to end, the training time and epochs
(early stopping), seconds per epoch, the time to embed every track with the trained head, head.pt size and
parameters, the child's peak RSS; and, as the reference measured in the same run, the frozen pooled features'
figure on the same tracks: validation metric, and the test split's excerpt Recall@1 (contrastive: view 1 of each
test track among the test tracks) or label Precision@5 (triplet). Writes ``bench/results/head_<mode>.json``.

Run: ``python -m bench.head_bench --full`` (1,000 tracks; a few minutes per configuration on 2 cores) or
``--quick`` (300 tracks, at most 10 epochs).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CACHE_DIR,
    dump_partial,
    log,
    machine_facts,
    module_available,
    peak_rss_bytes,
    run_child,
    skipped,
    utc_now,
    write_result,
)

QUICK = {"n": 300, "dim": 200, "epochs": 10, "limit_s": 600}
FULL = {"n": 1000, "dim": 200, "epochs": 50, "limit_s": 1500}
THREADS = 2
FRAMES = (40, 121)
CONFIGS = (
    {"label": "mlp-contrastive", "data": "mixtures", "objective": "contrastive", "architecture": "mlp", "split": "album"},
    {"label": "sequence-contrastive", "data": "mixtures", "objective": "contrastive", "architecture": "sequence",
     "split": "album"},
    {"label": "mlp-triplet", "data": "labelled", "objective": "triplet", "architecture": "mlp", "split": "label"},
)  # fmt: skip


def _data_dir(kind: str, n: int, dim: int) -> Path:
    """The seeded backbone folder of ``kind`` (made once, cached under .cache/bench/heads)."""
    from tests.helpers.head_factory import labelled_set, mixture_set, write_frame_folder

    vdir = CACHE_DIR / "heads" / f"{kind}_{n}_{dim}" / "v1_model_fake-frames"
    if (vdir / "embeddings" / "frames_meta.json").is_file():
        return vdir
    shutil.rmtree(vdir.parent, ignore_errors=True)
    t0 = time.perf_counter()
    if kind == "mixtures":
        data = mixture_set(n, dim, n_sources=4 * dim // 5, frames_range=FRAMES, n_views=2, track_offset=2.0,
                           view_offset=4.0, seed=0)  # fmt: skip
    else:
        data = labelled_set(n, dim, n_labels=40, n_albums=60, label_rank=16, album_rank=16,
                            frames_range=FRAMES, n_views=2, missing_every=50, seed=0)  # fmt: skip
    write_frame_folder(vdir, data)
    log(f"head: {kind} data N={n} D={dim} written in {time.perf_counter() - t0:.1f} s")
    return vdir


def _test_figures(dest: Any, objective: str) -> dict[str, float]:
    """Head vs frozen on the test split (the tracks training never read)."""
    from research_job.embeddings import load_embeddings
    from research_job.frames import load_frames
    from research_job.heads import load_head, test_rows
    from research_job.heads.data import labels_of
    from research_job.heads.training import excerpt_recall_at_1, label_precision_at_k, pooled_unit
    from research_job.metadata import read_tracks_csv

    head, frames, rows = load_head(dest), load_frames(dest), test_rows(dest)
    clean = [frames.of(r) for r in rows]
    if objective == "contrastive":
        queries = [frames.view(r, 1) for r in rows]
        return {
            "metric": "excerpt_recall_at_1",
            "head": excerpt_recall_at_1(head.embed(queries), head.embed(clean)),
            "frozen": excerpt_recall_at_1(pooled_unit(queries), pooled_unit(clean)),
            "n_queries": len(rows),
        }
    labels = labels_of(read_tracks_csv(dest.tracks_csv), load_embeddings(dest)[1], "composer")
    lab = [str(labels[r]) for r in rows]
    return {
        "metric": "precision_at_5",
        "head": label_precision_at_k(head.embed(clean), lab),
        "frozen": label_precision_at_k(pooled_unit(clean), lab),
        "n_queries": len(rows),
    }


def child_train(params: dict[str, Any], out: Path) -> None:
    """Train one configuration into a fresh folder; dump the figures."""
    from research_job.heads.folder import HeadJob, train_head_folder
    from research_job.heads.meta import HeadParams
    from research_job.layout import ArtifactLayout
    from research_job.schema import read_artifact

    dest = ArtifactLayout(Path(params["dest"]))
    shutil.rmtree(dest.version_dir, ignore_errors=True)
    hp = HeadParams(objective=params["objective"], architecture=params["architecture"], epochs=params["epochs"],
                    threads=THREADS)  # fmt: skip
    job = HeadJob(source=ArtifactLayout(Path(params["source"])), name=params["label"], params=hp, dest=dest,
                  split_by=params["split"])  # fmt: skip
    t0 = time.perf_counter()
    meta = train_head_folder(job)
    wall = time.perf_counter() - t0
    emeta = read_artifact(dest.embeddings_meta, "embeddings_meta")
    m = meta["metrics"]
    res: dict[str, Any] = {
        "label": params["label"],
        "n_tracks": emeta["count"],
        "split_counts": meta["split"]["counts"],
        "wall_sec": round(wall, 3),
        "train_sec": meta["train_sec"],
        "epochs_run": m["epochs_run"],
        "best_epoch": m["best_epoch"],
        "stopped_early": m["stopped_early"],
        "sec_per_epoch": round(meta["train_sec"] / m["epochs_run"], 4),
        "embed_all_sec": emeta["stats"]["wall_sec"],
        "head_pt_bytes": meta["files"]["size_bytes"],
        "n_params": meta["n_params"],
        "out_dim": meta["out_dim"],
        "batch_size_used": meta["batch_size_used"],
        "val": {"metric": m["name"], "head": m["best"], "frozen": m["frozen"]},
        "threads": THREADS,
    }
    dump_partial(out, res)
    res["test"] = _test_figures(dest, params["objective"])
    res["peak_rss"] = peak_rss_bytes()
    dump_partial(out, res)


def run(mode: str) -> dict[str, Any]:
    """Run every configuration in ``mode`` (``quick`` or ``full``); returns the result dict."""
    cfg = QUICK if mode == "quick" else FULL
    result: dict[str, Any] = {
        "benchmark": "head",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts({"torch": THREADS}),
        "target": f"{cfg['n']:,} tracks train in minutes on {THREADS} cores",
        "data": (
            f"tests/helpers/head_factory.py at N={cfg['n']}, D={cfg['dim']}, {FRAMES[0]}-{FRAMES[1] - 1} frames per "
            "track, 2 views: mixtures of shared sources + a shared nuisance with per-track and per-view offsets (contrastive); label centroids dominated "
            "by per-album offsets, 40 labels, 60 albums (triplet)"
        ),
        "runs": [],
    }
    why = module_available("pytorch_metric_learning")
    if why:
        result.update(skipped(why))
        return result
    for c in CONFIGS:
        source = _data_dir(c["data"], cfg["n"], cfg["dim"])
        log(f"head: {c['label']} on {source.parent.name}")
        r = run_child(
            "bench.head_bench", "child_train",
            {**c, "source": str(source), "dest": str(CACHE_DIR / "heads" / "out" / f"v1_model_{c['label']}"),
             "epochs": cfg["epochs"]},
            threads=THREADS, timeout_s=cfg["limit_s"], out_path=CACHE_DIR / "heads" / f"{c['label']}_{mode}.json",
        )  # fmt: skip
        log(
            f"head: {c['label']}: {r.get('status')} train {r.get('train_sec')} s, {r.get('epochs_run')} epochs"
        )
        result["runs"].append(r)
    return result


def markdown(result: dict[str, Any]) -> str:
    """A Markdown table of one head benchmark result."""
    lines = [f"### train-head ({result['mode']}, {result['created_at']})", "", f"Data: {result['data']}.", ""]
    if result.get("status") == "skipped":
        return "\n".join(lines + [f"Skipped: {result['reason']}", ""])
    lines += [
        "| head | status | train s | epochs (best) | s/epoch | embed all s | head.pt KiB | params | peak MiB "
        "| val head / frozen | test head / frozen |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in result["runs"]:
        v, t = r.get("val", {}), r.get("test", {})
        lines.append(
            f"| {r.get('label')} | {r.get('status')} | {r.get('train_sec')} | {r.get('epochs_run')} "
            f"({r.get('best_epoch')}) | {r.get('sec_per_epoch')} | {r.get('embed_all_sec')} "
            f"| {(r.get('head_pt_bytes') or 0) / 1024:.0f} | {r.get('n_params')} "
            f"| {(r.get('peak_rss') or 0) / 2**20:.0f} | {v.get('metric')} {v.get('head', 0):.3f} / "
            f"{v.get('frozen', 0):.3f} | {t.get('metric')} {t.get('head', 0):.3f} / {t.get('frozen', 0):.3f} |"
        )
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="300 tracks, at most 10 epochs")
    group.add_argument("--full", action="store_true", help="1,000 tracks (default)")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    result = run(mode)
    path = write_result(f"head_{mode}", result)
    print(markdown(result))
    log(f"head: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
