"""Quality benchmark: which embedding, lever and head retrieve best, on the demo corpus and on recorded music.

Not CI: it embeds whole corpora several times (about an hour for the real-music corpus on 2 cores). Every figure
comes from the project's own commands (``compare-models``, ``evaluate``, ``train-head``), run as subprocesses on
version folders under ``artifacts/quality/<corpus>/``, and is written to ``bench/results/quality_<corpus>.json``;
``--report-only`` renders both corpora's tables into ``docs/quality.md`` and the README block between
``<!-- quality:start -->`` and ``<!-- quality:end -->``.

Stages: ``frozen`` (registry models, fusions, Musly, the DSP baseline and the random floor), ``levers`` (hubness
reduction and query expansion over the default), ``heads`` (trained heads, each beside the frozen backbone on its
own test split), ``excerpt`` (the excerpt task for every embedding folder).

    python -m bench.quality --corpus demo
    python -m bench.quality --corpus realmusic --stages frozen,levers
    python -m bench.quality --report-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, ROOT, log, machine_facts, utc_now

RJ = str(ROOT / ".venv" / "bin" / "research-job")
FRAMES = ["--frames", "penultimate,mean_pool,max_pool", "--views", "4", "--view-sec", "30"]

#: each corpus: its source version folder, the config that builds it, and its label tasks (label, tracks)
CORPORA: dict[str, dict[str, Any]] = {
    "demo": {
        "source": "artifacts/v1_model_musicnn-msd",
        "config": "configs/demo.yaml",
        "tasks": [("composer", "all")],
        "about": "128 demo tracks (music21 scores rendered with FluidSynth), 10 composers, 32 albums",
    },
    "realmusic": {
        "source": "artifacts/realmusic/v1_model_musicnn-msd",
        "config": "configs/realmusic.yaml",
        "tasks": [("album_id", "all"), ("composer", "multi_label_albums")],
        "about": "151 recorded game-soundtrack tracks (7 Debian packages), 9 soundtracks, 22 artists",
    },
}

FROZEN = [
    "musicnn-msd",
    "musicnn-mtt",
    "musicnn-msd?layer=max_pool",
    "fusion:musicnn-msd+musicnn-mtt#block_standardize",
    "musly",
    "dsp-stats",
    "random",
]
#: query excerpts per track in the excerpt task (a head's test split is a quarter of the corpus: more queries)
EXCERPTS = 3
LEVERS = ["csls", "mutual_proximity", "local_scaling", "qe_alpha"]
#: seeds of the heads trained several times (the test splits are small: one seed's difference is noisy)
SEEDS = (0, 1, 2)
#: (name, train-head options); the mlp heads run once per seed of SEEDS, the sequence heads once
HEADS = [
    ("contrastive-mlp", ["--objective", "contrastive", "--architecture", "mlp", "--split", "track"]),
    ("contrastive-seq", ["--objective", "contrastive", "--architecture", "sequence", "--split", "track"]),
    # label-disjoint: the test composers / artists are never seen in training (new artists arrive)
    (
        "triplet-mlp",
        ["--objective", "triplet", "--architecture", "mlp", "--split", "label", "--label", "composer"],
    ),
    (
        "triplet-seq",
        ["--objective", "triplet", "--architecture", "sequence", "--split", "label", "--label", "composer"],
    ),
]


def rj(*args: str) -> str:
    """Run one research-job command; its stdout (raises with the stderr tail when it fails)."""
    t0 = time.perf_counter()
    out = subprocess.run([RJ, *args], cwd=ROOT, capture_output=True, text=True)
    log(f"research-job {' '.join(args[:4])} ... {time.perf_counter() - t0:.1f}s rc={out.returncode}")
    if out.returncode != 0:
        raise RuntimeError(f"research-job {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def label_row(folder: Path, label: str, tracks: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``evaluate`` on ``folder`` for one label task; the headline blocks of its eval_results.json."""
    rj("evaluate", "--version-dir", str(folder), "--label", label, "--tracks", tracks, *extra)
    ev = _json(folder / "eval" / "eval_results.json")
    keep = ("n_tracks", "overall", "exclude_same_album", "clustering", "rerank", "head_comparison")
    return {k: ev.get(k) for k in keep}


def excerpt_row(folder: Path, reuse: bool = True) -> dict[str, Any]:
    """``evaluate --task excerpt`` on ``folder``: the excerpt results (frozen beside a head). A result already in
    the folder for the same embeddings and query settings is kept (``reuse``)."""
    path = folder / "eval" / "excerpt_results.json"
    emb = _json(folder / "embeddings" / "embeddings_meta.json")["files"]["embeddings_sha256"]
    old = _json(path) if path.is_file() else None
    if not (reuse and old and old["embeddings_sha256"] == emb and old["query"]["per_track"] == EXCERPTS):
        rj(
            "evaluate",
            "--version-dir",
            str(folder),
            "--task",
            "excerpt",
            "--excerpts-per-track",
            str(EXCERPTS),
        )
    ex = _json(path)
    return {
        k: ex.get(k)
        for k in ("n_queries", "n_candidates", "metrics", "confidence_intervals", "random_baseline", "frozen")
    }


def stage_frozen(c: dict[str, Any], out: Path, res: dict[str, Any]) -> None:
    cmp_dir = out / "comparison"
    rj("compare-models", "--version-dir", c["source"], "--out-dir", str(cmp_dir), "--entries", ",".join(FROZEN),
       "--reuse-embeddings")  # fmt: skip
    comparison = _json(cmp_dir / "comparison.json")
    rows = {}
    for r in comparison["rows"]:
        folder = cmp_dir / r["version_dir"]
        row: dict[str, Any] = {
            "status": r.get("status"),
            "error": r.get("error"),
            "role": r.get("role"),
            "folder": str(folder.relative_to(ROOT)),
            **{k: r.get(k) for k in ("dim", "x_realtime", "embed_sec", "peak_memory_bytes")},
        }
        if r.get("status") == "ok":
            row["tasks"] = {f"{lab}/{trk}": label_row(folder, lab, trk) for lab, trk in c["tasks"]}
        rows[r["label"]] = row
    res["frozen"] = rows


def stage_levers(c: dict[str, Any], res: dict[str, Any]) -> None:
    src = Path(c["source"])
    res["levers"] = {
        m: {f"{lab}/{trk}": label_row(src, lab, trk, ("--rerank", m)) for lab, trk in c["tasks"]}
        for m in ["none", *LEVERS]
    }
    rj("evaluate", "--version-dir", str(src))  # leave the folder's own eval as the pipeline wrote it


def stage_heads(c: dict[str, Any], out: Path, res: dict[str, Any]) -> None:
    src = Path(c["source"])
    rj("embed", "--config", c["config"], "--version-dir", str(src), *FRAMES)
    heads = {}
    runs = [
        (f"{n}-s{seed}", [*o, "--seed", str(seed)])
        for n, o in HEADS
        for seed in (SEEDS if "mlp" in n else (0,))
    ]
    for name, opts in runs:
        folder = out / f"head-{name}"
        label = c["tasks"][0][0]
        t0 = time.perf_counter()
        rj(
            "train-head",
            "--version-dir",
            str(src),
            "--name",
            name,
            "--out-dir",
            str(folder),
            "--label",
            label,
            *opts,
        )
        row: dict[str, Any] = {"train_wall_sec": round(time.perf_counter() - t0, 1)}
        meta = _json(folder / "head" / "head_meta.json")
        row["head_meta"] = {
            k: meta.get(k)
            for k in ("objective", "architecture", "metrics", "train_sec", "size_bytes", "n_params", "split")
        }
        rj("build-index", "--version-dir", str(folder))
        row["tasks"] = {f"{lab}/{trk}": label_row(folder, lab, trk) for lab, trk in c["tasks"]}
        row["excerpt"] = excerpt_row(folder, reuse=False)
        rj("validate", "--version-dir", str(folder))
        heads[name] = row
    res["heads"] = heads


def stage_excerpt(res: dict[str, Any], c: dict[str, Any]) -> None:
    """The excerpt task for every frozen entry with a query path (not Musly; not the random floor, whose figures
    are the exact random baseline printed beside every row); entries already measured are kept."""
    rows = dict(res.get("excerpt") or {})
    for entry, row in res.get("frozen", {}).items():
        if (
            entry in rows
            or row.get("status") != "ok"
            or row.get("role") in ("classic_baseline", "random_floor")
        ):
            continue
        rows[entry] = excerpt_row(ROOT / row["folder"])
        res["excerpt"] = rows
    if not rows:
        rows["musicnn-msd"] = excerpt_row(Path(c["source"]))
    res["excerpt"] = rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", choices=sorted(CORPORA), help="which corpus to measure")
    ap.add_argument("--stages", default="frozen,levers,excerpt,heads", help="comma-separated stages to run")
    ap.add_argument(
        "--report-only", action="store_true", help="only render docs/quality.md and the README block"
    )
    args = ap.parse_args()
    if not args.report_only:
        if not args.corpus:
            ap.error("--corpus is required unless --report-only")
        c = CORPORA[args.corpus]
        path = RESULTS_DIR / f"quality_{args.corpus}.json"
        res = _json(path) if path.is_file() else {"corpus": args.corpus, "about": c["about"]}
        out = ROOT / "artifacts" / "quality" / args.corpus
        for stage in args.stages.split(","):
            t0 = time.perf_counter()
            {"frozen": lambda: stage_frozen(c, out, res), "levers": lambda: stage_levers(c, res),
             "heads": lambda: stage_heads(c, out, res), "excerpt": lambda: stage_excerpt(res, c)}[stage]()  # fmt: skip
            res.setdefault("stage_sec", {})[stage] = round(time.perf_counter() - t0, 1)
            res["created_at"], res["machine"] = utc_now(), machine_facts()
            path.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
            log(f"stage {stage} done in {time.perf_counter() - t0:.0f}s -> {path}")
    from bench.quality_report import render

    render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
