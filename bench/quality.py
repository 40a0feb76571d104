"""Quality benchmark: which embedding, lever and head retrieve best, on the demo corpus and on recorded music.

Not CI: it embeds whole corpora several times (about an hour for the real-music corpus on 2 cores). Every figure
comes from the project's own commands (``compare-models``, ``evaluate``, ``train-head``), run as subprocesses on
version folders under ``artifacts/quality/<corpus>/``, and is written to ``bench/results/quality_<corpus>.json``;
``--report-only`` renders both corpora's tables into ``docs/quality.md`` and the README block between
``<!-- quality:start -->`` and ``<!-- quality:end -->``.

Stages: ``default`` (the default pipeline, ``research-job run --config <corpus config>``, evaluated as it is
shipped), ``frozen`` (registry models, fusions, Musly, the DSP baseline and the random floor), ``levers`` (hubness
reduction and query expansion over the default), ``excerpt`` (the excerpt task for the default and every
embedding entry), ``paired`` (every vector entry minus the default, query by query, with a paired bootstrap CI:
two entries' CIs overlap far more often than their paired difference spans zero), ``heads`` (trained heads, each
beside its frozen backbone on its own test split).

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

import numpy as np

from bench.common import RESULTS_DIR, ROOT, log, machine_facts, utc_now
from research_job.layout import version_name
from research_job.models.registry import DEFAULT_MODEL

DEFAULT_DIR = version_name(DEFAULT_MODEL)
#: the heads train on the frames of one musicnn checkpoint (measured there; the default fusion has frames too)
HEAD_BACKBONE = "musicnn-msd"

RJ = str(ROOT / ".venv" / "bin" / "research-job")
FRAMES = ["--frames", "penultimate,mean_pool,max_pool", "--views", "4", "--view-sec", "30"]

#: each corpus: its source version folder, the config that builds it, and its label tasks (label, tracks)
CORPORA: dict[str, dict[str, Any]] = {
    "demo": {
        "source": f"artifacts/{DEFAULT_DIR}",
        "frames_source": f"artifacts/{version_name(HEAD_BACKBONE)}",
        "config": "configs/demo.yaml",
        "tasks": [("composer", "all")],
        # single models centred: does the default's post-processing help each one (cheap on 128 tracks)
        "frozen_extra": ["musicnn-msd#center", "musicnn-mtt#center"],
        "about": "128 demo tracks (music21 scores rendered with FluidSynth), 10 composers, 32 albums",
    },
    "realmusic": {
        "source": f"artifacts/realmusic/{DEFAULT_DIR}",
        "frames_source": f"artifacts/realmusic/{version_name(HEAD_BACKBONE)}",
        "config": "configs/realmusic.yaml",
        "tasks": [("album_id", "all"), ("composer", "multi_label_albums")],
        "frozen_extra": ["musicnn-msd#center"],
        # a head's test split (a quarter) is too small for the within-soundtrack artist task (its random
        # expectation reaches 1.0): the heads are scored on the artist over the whole split instead (for the
        # label-disjoint triplet heads: artists never seen in training)
        "head_tasks": [("album_id", "all"), ("composer", "all")],
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
    rj("compare-models", "--version-dir", c["source"], "--out-dir", str(cmp_dir), "--entries", ",".join(FROZEN + c.get("frozen_extra", [])),
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


def stage_default(c: dict[str, Any], res: dict[str, Any]) -> None:
    """The default pipeline on the corpus (resumes: a finished folder is only re-evaluated), each label task."""
    rj("run", "--config", c["config"])
    src = ROOT / c["source"]
    meta = _json(src / "embeddings" / "embeddings_meta.json")
    res["default"] = {
        "folder": c["source"],
        "model": meta["model"]["name"],
        "postprocess": meta["postprocess"]["type"],
        "dim": meta["dim"],
        "tasks": {f"{lab}/{trk}": label_row(src, lab, trk) for lab, trk in c["tasks"]},
    }
    rj("evaluate", "--version-dir", str(src))  # leave the folder's own eval as the pipeline wrote it


def _per_query(folder: Path, label: str, tracks: str) -> dict[str, float]:
    """Each scored query's P@5 in ``folder`` for one label task, by track id: the ranking evaluate uses (exact
    cosine of the vectors, or the folder's similarity matrix for Musly; the query excluded by id)."""
    from research_job import retrieval
    from research_job.embeddings import load_embeddings
    from research_job.layout import ArtifactLayout
    from research_job.metadata import read_tracks_csv
    from research_job.similarity_matrix import read_matrix

    layout = ArtifactLayout(folder)
    matrix = None
    if layout.embeddings_f32.is_file():
        vectors, ids, _ = load_embeddings(layout)
    else:
        matrix, ids, mmeta = read_matrix(layout)
        matrix = -matrix.astype(np.float64) if mmeta["kind"] == "distance" else matrix.astype(np.float64)
    by_id = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    rows = [by_id[t] for t in ids]
    keep = retrieval.track_set([getattr(r, label) for r in rows], [r.album_id for r in rows], tracks)
    kept = [ids[i] for i in keep]
    values = [getattr(rows[i], label) for i in keep]
    albums = [rows[i].album_id for i in keep]
    if matrix is None:
        ranked, _ = retrieval.rank(values, albums, 5, vectors=np.ascontiguousarray(vectors[keep]), ids=kept)
    else:
        sub = matrix[np.ix_(keep, keep)]
        ranked, _ = retrieval.rank(values, albums, 5, score_rows=lambda r: sub[r].copy())
    labels, _ = retrieval.label_ids(values)
    _, qi, per = retrieval.summary(ranked, labels, 5, 10, 0)
    p5 = per[:, 0] if per.ndim > 1 else per
    return {kept[int(q)]: float(v) for q, v in zip(qi, p5, strict=True)}


def paired_diff(a: dict[str, float], b: dict[str, float], resamples: int = 2000) -> dict[str, Any]:
    """Mean of b - a over the queries both score, and its paired bootstrap 95% CI (seeded)."""
    common = sorted(set(a) & set(b))
    d = np.array([b[t] - a[t] for t in common])
    rng = np.random.default_rng(0)
    boot = d[rng.integers(0, d.size, (resamples, d.size))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"n_queries": int(d.size), "mean": float(d.mean()), "low": float(lo), "high": float(hi)}


def stage_paired(c: dict[str, Any], res: dict[str, Any]) -> None:
    """P@5 of every entry (vectors or a similarity matrix) minus the default's, per label task, paired over the
    same queries."""
    out: dict[str, Any] = {}
    for lab, trk in c["tasks"]:
        base = _per_query(ROOT / c["source"], lab, trk)
        rows = {}
        for entry, row in res.get("frozen", {}).items():
            folder = ROOT / str(row.get("folder"))
            has = (folder / "embeddings" / "embeddings.f32").is_file() or (folder / "similarity").is_dir()
            if row.get("status") == "ok" and has:
                rows[entry] = paired_diff(base, _per_query(folder, lab, trk))
        out[f"{lab}/{trk}"] = rows
    res["paired"] = out


def stage_levers(c: dict[str, Any], res: dict[str, Any]) -> None:
    src = Path(c["source"])
    res["levers"] = {
        m: {f"{lab}/{trk}": label_row(src, lab, trk, ("--rerank", m)) for lab, trk in c["tasks"]}
        for m in ["none", *LEVERS]
    }
    rj("evaluate", "--version-dir", str(src))  # leave the folder's own eval as the pipeline wrote it


def stage_heads(c: dict[str, Any], out: Path, res: dict[str, Any]) -> None:
    src = Path(c["frames_source"])
    rj("embed", "--config", c["config"], "--model", HEAD_BACKBONE, "--postprocess", "none",
       "--version-dir", str(src), *FRAMES)  # fmt: skip
    heads = {}
    runs = [
        (f"{n}-s{seed}", [*o, "--seed", str(seed)])
        for n, o in HEADS
        for seed in (SEEDS if "mlp" in n else (0,))
    ]
    for name, opts in runs:
        folder = out / f"head-{name}"
        label = c["tasks"][0][0]  # the contrastive heads' (unused) label; the triplet options name theirs
        t0, started = time.perf_counter(), utc_now()
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
        meta = _json(folder / "head" / "head_meta.json")
        # train-head keeps a finished head of the same configuration: then the wall time is not a training time
        reused = meta["created_at"] < started
        row: dict[str, Any] = {"train_wall_sec": None if reused else round(time.perf_counter() - t0, 1)}
        row["head_reused"] = reused
        row["head_meta"] = {
            k: meta.get(k) for k in ("objective", "architecture", "metrics", "train_sec", "n_params", "split")
        }
        row["head_meta"]["size_bytes"] = meta["files"]["size_bytes"]  # of head.pt
        rj("build-index", "--version-dir", str(folder))
        tasks = c.get("head_tasks", c["tasks"])
        row["tasks"] = {f"{lab}/{trk}": label_row(folder, lab, trk) for lab, trk in tasks}
        row["excerpt"] = excerpt_row(folder)  # a retrained head has other embeddings: measured afresh
        rj("validate", "--version-dir", str(folder))
        heads[name] = row
    res["heads"] = heads


def stage_excerpt(res: dict[str, Any], c: dict[str, Any]) -> None:
    """The excerpt task for the default and every frozen entry with a query path (not Musly; not the random floor,
    whose figures are the exact random baseline printed beside every row; not a post-processing variant added
    after the first run, ``#center``: the same queries through the same model); entries measured are kept."""
    rows = dict(res.get("excerpt") or {})
    for entry, row in res.get("frozen", {}).items():
        if (
            entry in rows
            or entry.endswith("#center")
            or row.get("status") != "ok"
            or row.get("role") in ("classic_baseline", "random_floor")
        ):
            continue
        rows[entry] = excerpt_row(ROOT / row["folder"])
        res["excerpt"] = rows
    if res.get("default"):
        res["default"]["excerpt"] = excerpt_row(ROOT / c["source"])
    res["excerpt"] = rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", choices=sorted(CORPORA), help="which corpus to measure")
    ap.add_argument(
        "--stages", default="default,frozen,levers,excerpt,paired,heads", help="comma-separated stages to run"
    )
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
            {"default": lambda: stage_default(c, res), "frozen": lambda: stage_frozen(c, out, res),
             "levers": lambda: stage_levers(c, res), "heads": lambda: stage_heads(c, out, res),
             "excerpt": lambda: stage_excerpt(res, c), "paired": lambda: stage_paired(c, res)}[stage]()  # fmt: skip
            res.setdefault("stage_sec", {})[stage] = round(time.perf_counter() - t0, 1)
            res["created_at"], res["machine"] = utc_now(), machine_facts()
            path.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
            log(f"stage {stage} done in {time.perf_counter() - t0:.0f}s -> {path}")
    from bench.quality_report import render

    render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
