"""int8 vs float32: per-track parity and retrieval quality on the demo and the real-music corpora.

Not CI (the real-music corpus takes ~15 min to embed twice on 2 cores). Every figure comes from the project's own
commands, run as subprocesses: ``export-model --precision int8 --calibrate-from <demo version folder>`` installs
the int8 file of each checkpoint (calibrated on 32 demo tracks, so on the real-music corpus the calibration is
out of domain: the harder case), then ``compare-models`` embeds each corpus with the float32 port, the same
network on onnxruntime (float32) and the int8 file, and ``evaluate`` scores them. Per track, the cosine between
an entry's raw vector (``raw.f32``, before post-processing) and the port's; per task, each entry's P@5 with its
bootstrap CI and the paired difference to the port (:func:`bench.quality.paired_diff`). int8 is accepted where
the least per-track cosine is >= 0.995 and the paired P@5 difference's CI spans 0 (inside float32's CI).

    python -m bench.precision_bench            # both corpora (make bench-precision)
    python -m bench.precision_bench --corpus demo

Writes ``bench/results/precision.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, ROOT, log, machine_facts, utc_now
from bench.quality import CORPORA, _per_query, label_row, paired_diff, rj

MIN_COSINE = 0.995
CHECKPOINTS = ("musicnn-msd", "musicnn-mtt")
#: entries per corpus: (label, spec); the first is the reference. The real-music corpus runs MSD only (time).
ENTRIES = {
    "demo": [
        ("msd fp32 (torch)", "musicnn-msd"),
        ("msd fp32 (onnx)", "musicnn-msd?runtime=onnx"),
        ("msd int8 (onnx)", "musicnn-msd?runtime=onnx&precision=int8"),
        ("mtt fp32 (torch)", "musicnn-mtt"),
        ("mtt int8 (onnx)", "musicnn-mtt?runtime=onnx&precision=int8"),
    ],
    "realmusic": [
        ("msd fp32 (torch)", "musicnn-msd"),
        ("msd int8 (onnx)", "musicnn-msd?runtime=onnx&precision=int8"),
    ],
}


def _raw(folder: Path) -> dict[str, np.ndarray]:
    """Track id -> raw (pre-post-processing) vector of a version folder."""
    emb = folder / "embeddings"
    ids = json.loads((emb / "track_ids.json").read_text(encoding="utf-8"))["track_ids"]
    raw = np.fromfile(emb / "raw.f32", dtype=np.float32).reshape(len(ids), -1)
    return dict(zip(ids, raw, strict=True))


def per_track_cosine(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    common = sorted(set(ref) & set(got))
    cos = np.array(
        [ref[t] @ got[t] / max(np.linalg.norm(ref[t]) * np.linalg.norm(got[t]), 1e-30) for t in common]
    )
    return {"n_tracks": len(common), "min": float(cos.min()), "p01": float(np.quantile(cos, 0.01)),
            "median": float(np.median(cos))}  # fmt: skip


def calibrate(demo_folder: str) -> dict[str, Any]:
    out = {}
    for ckpt in CHECKPOINTS:
        dest = ROOT / "artifacts" / "models" / f"{ckpt}-int8"
        rj("export-model", "--model", f"{ckpt}?runtime=onnx", "--precision", "int8", "--calibrate-from",
           demo_folder, "--out", str(dest))  # fmt: skip
        meta = json.loads((dest / "model_meta.json").read_text(encoding="utf-8"))
        out[ckpt] = {"parity": meta["parity"], "calibration": {k: v for k, v in meta["quantization"]["calibration"].items() if k != "files"},
                     "nodes": meta["quantization"]["nodes"], "size_bytes": meta["size_bytes"]}  # fmt: skip
    return out


def prepare(corpus: str) -> Path:
    """The corpus's version folder with its audio pulled and standardised (the default pipeline's, if run)."""
    c = CORPORA[corpus]
    src = ROOT / c["source"]
    if not (src / "tracks.csv").is_file() or not (src / "audio_cache").is_dir():
        for step in ("export-metadata", "pull-audio", "standardize-audio"):
            rj(step, "--config", c["config"])
    return src


def run_corpus(corpus: str) -> dict[str, Any]:
    src = prepare(corpus)
    out_dir = ROOT / "artifacts" / "precision" / corpus
    entries = ENTRIES[corpus]
    rj("compare-models", "--version-dir", str(src), "--out-dir", str(out_dir), "--entries",
       ",".join(spec for _, spec in entries), "--reuse-embeddings")  # fmt: skip
    comparison = json.loads((out_dir / "comparison.json").read_text(encoding="utf-8"))
    folders = {r["model"]: out_dir / r["version_dir"] for r in comparison["rows"] if r["status"] == "ok"}
    rows = {r["model"]: r for r in comparison["rows"]}
    res: dict[str, Any] = {"about": CORPORA[corpus]["about"], "entries": {}}
    tasks = CORPORA[corpus]["tasks"]
    refs: dict[str, tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]] = {}
    for label, spec in entries:
        base = spec.split("?")[0]
        row = rows.get(spec, {})
        if spec not in folders:
            res["entries"][label] = {"spec": spec, "status": row.get("status"), "error": row.get("error")}
            continue
        folder = folders[spec]
        raw = _raw(folder)
        per_q = {f"{lab}/{trk}": _per_query(folder, lab, trk) for lab, trk in tasks}
        e: dict[str, Any] = {
            "spec": spec, "x_realtime": row.get("x_realtime"), "embed_sec": row.get("embed_sec"),
            "tasks": {f"{lab}/{trk}": label_row(folder, lab, trk)["overall"] for lab, trk in tasks},
        }  # fmt: skip
        if base in refs and spec != base:
            ref_raw, ref_q = refs[base]
            e["cosine_to_port"] = per_track_cosine(ref_raw, raw)
            e["paired_p_at_5_minus_port"] = {t: paired_diff(ref_q[t], per_q[t]) for t in per_q}
            e["accepted"] = bool(
                e["cosine_to_port"]["min"] >= MIN_COSINE
                and all(d["low"] <= 0 <= d["high"] for d in e["paired_p_at_5_minus_port"].values())
            )
        else:
            refs[base] = (raw, per_q)
        res["entries"][label] = e
        log(f"precision {corpus}: {label}: {json.dumps(e.get('cosine_to_port'))}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", choices=["demo", "realmusic", "both"], default="both")
    ap.add_argument(
        "--keep-int8", action="store_true", help="use the int8 files installed (and recorded) already"
    )
    args = ap.parse_args()
    path = RESULTS_DIR / "precision.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    result.update({"benchmark": "precision", "created_at": utc_now(), "machine": machine_facts({})})
    if not (args.keep_int8 and result.get("int8")):
        result["int8"] = calibrate(CORPORA["demo"]["source"])
    for corpus in ["demo", "realmusic"] if args.corpus == "both" else [args.corpus]:
        result[corpus] = run_corpus(corpus)
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"precision: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
