"""Extraction speed: seconds of audio per second of wall time (x real time) for decode alone and decode + model.

Inputs: ``--full`` uses the demo corpus (``research_job.demo.build.build_demo_corpus``, cached under
``.cache/bench/demo``); ``--quick`` uses a few clips of it when it is already cached, else renders a few clips
itself (additive-synth notes, encoded with PyAV in the corpus's codecs) so it runs in seconds.

Each configuration runs in its own child process (so peak RSS does not mix) with explicit threads
(``torch.set_num_threads``, BLAS/OMP env): ``decode@<rate>`` (the reference and the ceiling of the model step:
``research_job.io.audio.decode_audio`` to mono float32), then ``decode+<model>`` for each registry model whose
weights are present (``model.embed([waveform])`` one track at a time, decoding as the embed step does with its
default ``EmbedConfig.decode_ahead``; the default model also with the other setting, inline vs 8 tracks decoded
ahead by a background thread, to show what read-ahead buys or costs). Then the embed step itself
(``research_job.steps.embed.run``) with the default model, ``processes`` 1 and 2 (``embed-step processes=N``): a
version folder listing the same files with ``audio_cache/`` linking to them, as pull-audio leaves it, so every
track is decoded from its codec; a pass is one whole run (model load and worker start-up included). Each is
repeated; x real time is reported as median and p95 over the passes, with tracks per hour on this machine.
"""

from __future__ import annotations

import os
import re
import resource
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
    rss_bytes,
    run_child,
    skipped,
    summarize,
    usable_cpus,
    utc_now,
)
from research_job.steps.embed import EmbedConfig

MODELS = ["dsp-stats", "musicnn-msd"]
DEFAULT_MODEL = "musicnn-msd"
TARGET_X_REALTIME = 100.0
AUDIO_EXT = {".m4a", ".mp3", ".ogg", ".flac", ".wav", ".opus", ".aac"}

#: the embed step's read-ahead (tracks decoded by a background thread while the model runs), and the other
#: setting the default model is also measured with
DECODE_AHEAD = EmbedConfig().decode_ahead
ALT_DECODE_AHEAD = 8
QUICK = {"n_files": 8, "clip_sec": 30.0, "passes": 3, "limit_s": 300, "demo_tracks": None}
FULL = {"n_files": None, "clip_sec": 30.0, "passes": 3, "limit_s": 1800, "demo_tracks": 128}


# ------------------------------------------------------------------------------------------------- inputs
def render_clips(out_dir: Path, n: int, clip_sec: float, seed: int = 0) -> list[Path]:
    """Render ``n`` seeded clips of additive-synth notes (stereo 22.05 kHz) and encode them with PyAV.

    Codecs cycle through flac, mp3, ogg/vorbis and m4a/AAC, like the demo corpus. Cached: existing files are kept.
    """
    import av

    out_dir.mkdir(parents=True, exist_ok=True)
    # (ext, codec, sample format, options): FFmpeg's native Vorbis encoder is experimental (no libvorbis in wheels)
    codecs = [
        ("flac", "flac", "s16", {}),
        ("mp3", "libmp3lame", "s16p", {}),
        ("ogg", "vorbis", "fltp", {"strict": "experimental"}),
        ("m4a", "aac", "fltp", {}),
    ]
    sr = 22050
    paths = []
    for i in range(n):
        ext, codec, fmt, opts = codecs[i % len(codecs)]
        path = out_dir / f"clip{i:03d}_{int(clip_sec)}s.{ext}"
        paths.append(path)
        if path.is_file():
            continue
        rng = np.random.default_rng(seed + i)
        t_total = int(clip_sec * sr)
        wave = np.zeros((2, t_total), dtype=np.float32)
        pos = 0
        while pos < t_total:
            dur = int(sr * rng.uniform(0.15, 0.6))
            f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
            tt = np.arange(min(dur, t_total - pos)) / sr
            note = sum((0.5**h) * np.sin(2 * np.pi * f0 * (h + 1) * tt) for h in range(5)) * np.exp(-3.0 * tt)
            pan = rng.uniform(0.2, 0.8)
            wave[0, pos : pos + len(tt)] += 0.3 * pan * note
            wave[1, pos : pos + len(tt)] += 0.3 * (1 - pan) * note
            pos += int(dur * rng.uniform(0.5, 1.0))
        wave = np.clip(wave, -1, 1)
        if fmt.startswith("s16"):
            wave = np.round(wave * 32767).astype(np.int16)
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        with av.open(str(tmp), "w", format="ipod" if ext == "m4a" else None) as container:
            stream = container.add_stream(codec, rate=sr, layout="stereo", options=opts)
            stream.codec_context.format = fmt
            for s in range(0, t_total, 1024):
                chunk = wave[:, s : s + 1024]
                arr = chunk if fmt.endswith("p") else chunk.T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout="stereo")
                frame.sample_rate = sr
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        os.replace(tmp, path)
    return paths


def corpus_files(mode: str, cfg: dict[str, Any]) -> tuple[list[Path], str]:
    """The audio files to process and a sentence saying where they come from."""
    demo_dir = CACHE_DIR / "demo"
    store = demo_dir / "store"
    existing = sorted(p for p in store.rglob("*") if p.suffix.lower() in AUDIO_EXT) if store.is_dir() else []
    if mode == "full" and not existing:
        missing = module_available("research_job.demo.build")
        if missing is None:
            from research_job.demo.build import build_demo_corpus

            log(f"extract: building the demo corpus ({cfg['demo_tracks']} tracks) under {demo_dir}")
            build_demo_corpus(demo_dir, n_tracks=cfg["demo_tracks"])
            existing = sorted(p for p in store.rglob("*") if p.suffix.lower() in AUDIO_EXT)
    if existing:
        files = existing[: cfg["n_files"]] if cfg["n_files"] else existing
        return files, f"demo corpus ({demo_dir}), {len(files)} of {len(existing)} tracks"
    files = render_clips(CACHE_DIR / "clips", cfg["n_files"] or 16, cfg["clip_sec"])
    return files, (
        f"{len(files)} seeded additive-synth clips of {cfg['clip_sec']:.0f} s (22.05 kHz stereo; flac, mp3, "
        "ogg/vorbis, m4a/AAC) rendered by bench/extract_bench.py (demo corpus not built)"
    )


# ------------------------------------------------------------------------------------------------- child
def child_extract(params: dict[str, Any], out: Path) -> None:
    """Decode (and embed with ``params['model']`` if set) every file, ``passes`` times; dump timings."""
    import torch

    threads = int(params["threads"])
    torch.set_num_threads(threads)
    from research_job.io.audio import decode_audio
    from research_job.io.prefetch import prefetched

    res: dict[str, Any] = {"model": params.get("model"), "threads": threads, "rss_start": rss_bytes()}
    model = None
    sr = int(params["sample_rate"])
    if params.get("model"):
        from research_job.errors import ResearchJobError
        from research_job.models.registry import load_model

        t0 = time.perf_counter()
        try:
            model = load_model(params["model"])
        except ResearchJobError as e:
            res.update({"status": "skipped", "reason": f"model {params['model']!r} not loadable: {e}"})
            dump_partial(out, res)
            return
        res["load_sec"] = time.perf_counter() - t0
        res["dim"] = int(model.dim)
        sr = int(model.sample_rate)
        res.update(_compute_bound(model, sr))
    res["sample_rate"] = sr
    res["rss_after_load"] = rss_bytes()
    files = params["files"]
    passes = []
    # model configs decode ahead in a thread exactly as the embed step does (EmbedConfig.decode_ahead); the
    # decode-only reference decodes inline
    ahead = int(params.get("decode_ahead", 0)) if model is not None else 0
    res["decode_ahead"] = ahead
    for p in range(int(params["passes"])):
        dec = emb = audio = 0.0
        t_pass = time.perf_counter()
        for got in prefetched(files, lambda f: decode_audio(f, sr)[0], ahead, catch=()):
            f, wave = got.item, got.value
            assert wave is not None
            dec += got.seconds
            t1 = time.perf_counter()
            audio += len(wave) / sr
            if model is not None:
                v = model.embed([wave])
                if v.shape != (1, model.dim) or not np.all(np.isfinite(v)):
                    raise RuntimeError(f"{params['model']} returned {v.shape} / non-finite for {f}")
                emb += time.perf_counter() - t1
        wall = time.perf_counter() - t_pass
        passes.append({"audio_sec": audio, "wall_sec": wall, "decode_sec": dec, "model_sec": emb})
        res["passes"] = passes
        dump_partial(out, res)
        log(f"  extract {params.get('model') or 'decode'}@{sr} pass {p}: {audio / wall:.1f}x real time")
    res["peak_rss"] = peak_rss_bytes()
    dump_partial(out, res)


def child_embed_step(params: dict[str, Any], out: Path) -> None:
    """Run the embed step on ``params['files']`` with ``params['workers']`` worker processes, ``passes`` times.

    Optional: ``threads_per_process`` (the embed option), ``cpus`` (this process and its workers pinned to those
    CPU ids: ``[0]`` is "one core"), ``tag`` (names the version folder, so configurations never share one).
    """
    if params.get("cpus"):
        os.sched_setaffinity(0, set(params["cpus"]))
    from research_job.config import CommonConfig
    from research_job.metadata import TrackRow, write_tracks_csv
    from research_job.steps import embed

    vdir = Path(params["work"]) / f"v1_model_embed_step_w{params['workers']}{params.get('tag', '')}"
    shutil.rmtree(vdir, ignore_errors=True)
    common = CommonConfig(model=params["model"], version_dir=vdir)
    layout = common.layout
    rows = []
    for i, name in enumerate(params["files"]):
        f = Path(name)
        album = re.sub(r"[^A-Za-z0-9._-]+", "_", f.parent.name).strip("._") or "album"
        row = TrackRow(
            track_id=f"t{i:05d}", album_id=album, track_no=None, title=f.stem, composer=None,
            audio_s3_key=f"audio/{album}/{f.name}", duration_sec=None, composer_raw=None, composer_missing=True,
        )  # fmt: skip
        dst = layout.cached_audio(album, row.track_id, row.audio_ext)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(f.resolve())
        rows.append(row)
    write_tracks_csv(layout.tracks_csv, rows)
    res: dict[str, Any] = {"model": params["model"], "workers": params["workers"], "passes": []}
    for p in range(int(params["passes"])):
        shutil.rmtree(layout.embeddings_dir, ignore_errors=True)
        meta = embed.run(
            EmbedConfig(
                common=common, processes=int(params["workers"]),
                threads_per_process=params.get("threads_per_process"),
            )
        )  # fmt: skip
        st = meta["stats"]
        if st["n_failed"]:
            raise RuntimeError(f"embed step: {st['n_failed']} tracks failed: {meta['failures'][:3]}")
        res["passes"].append({k: st[k] for k in ("audio_sec", "wall_sec", "decode_sec", "model_sec")})
        res["sample_rate"] = meta["sample_rate"]
        res["peak_rss"] = peak_rss_bytes()
        # the workers' own peaks (ru_maxrss of waited-for children, KiB on Linux)
        res["peak_rss_workers"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        dump_partial(out, res)
        log(f"  embed step processes={params['workers']} pass {p}: {st['x_realtime']:.1f}x real time")
    shutil.rmtree(vdir, ignore_errors=True)


def _compute_bound(model: Any, sr: int) -> dict[str, Any]:
    """Torch FLOPs per second of audio of ``model`` and this process's sgemm GFLOP/s -> a compute ceiling.

    FLOPs are counted by ``torch.utils.flop_counter`` on 30 s of seeded noise (torch ops only: a numpy model
    counts 0 and gets no ceiling). Ceiling x real time = sgemm FLOP/s / model FLOPs per audio second: the speed
    the model could reach if every FLOP ran at dense-matmul speed on this machine, now.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    wave = (np.random.default_rng(0).standard_normal(sr * 30) * 0.1).astype(np.float32)
    with FlopCounterMode(display=False) as fc:
        model.embed([wave])
    flops = fc.get_total_flops() / 30.0
    a = torch.randn(2048, 2048)
    a @ a
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        t.append(time.perf_counter() - t0)
    gflops = summarize([2 * 2048**3 / x / 1e9 for x in t])
    out: dict[str, Any] = {"model_flops_per_audio_sec": flops, "sgemm_gflops": gflops}
    if flops > 0:
        out["compute_bound_x_realtime"] = gflops["median"] * 1e9 / flops
    return out


# ------------------------------------------------------------------------------------------------- driver
def _summarise(r: dict[str, Any]) -> None:
    ps = r.get("passes") or []
    if not ps:
        return
    r["x_realtime"] = summarize([p["audio_sec"] / p["wall_sec"] for p in ps])
    r["x_realtime_decode_only_part"] = summarize([p["audio_sec"] / max(p["decode_sec"], 1e-12) for p in ps])
    if any(p["model_sec"] for p in ps):
        r["x_realtime_model_only_part"] = summarize([p["audio_sec"] / max(p["model_sec"], 1e-12) for p in ps])
    n = r["n_files"]
    r["tracks_per_hour"] = summarize([n / p["wall_sec"] * 3600 for p in ps])
    r["tracks_per_hour_at_240s"] = summarize([p["audio_sec"] / p["wall_sec"] * 3600 / 240 for p in ps])


def run(mode: str) -> dict[str, Any]:
    """Run the extraction benchmark in ``mode``; returns the result dict."""
    cfg = QUICK if mode == "quick" else FULL
    threads = usable_cpus()
    result: dict[str, Any] = {
        "benchmark": "extract",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts({"torch": threads, "blas_omp": threads}),
        "target": f"default model {DEFAULT_MODEL} >= {TARGET_X_REALTIME:g}x real time, decode included",
        "configs": [],
    }
    missing = module_available("research_job.io.audio")
    if missing:
        result["status"] = "skipped"
        result["reason"] = missing
        skipped(missing)
        return result
    files, source = corpus_files(mode, cfg)
    result["input"] = source
    result["n_files"] = len(files)
    work = CACHE_DIR / "extract"
    # model sample rates decide which decode references are needed
    plan: list[tuple[str | None, int | None]] = []
    model_rates: dict[str, int] = {}
    for m in MODELS:
        why = module_available(_model_module(m))
        if why:
            result["configs"].append({"config": f"decode+{m}", "n_files": len(files), **skipped(why)})
            continue
        model_rates[m] = _model_rate(m)
        plan.append((m, None, DECODE_AHEAD))
        if (
            m == DEFAULT_MODEL
        ):  # the same model with the other decoding: what a read-ahead thread buys or costs
            plan.append((m, None, ALT_DECODE_AHEAD if DECODE_AHEAD == 0 else 0))
    rates = sorted(set(model_rates.values()) or {16000})
    plan = [(None, r, 0) for r in rates] + plan
    for model, rate, ahead in plan:
        name = f"decode@{rate}"
        if model:
            name = f"decode+{model}" + ("" if ahead == DECODE_AHEAD else f" (decode_ahead={ahead})")
        log(f"extract: {name} on {len(files)} files")
        params = {
            "files": [str(f) for f in files],
            "model": model,
            "sample_rate": rate or model_rates.get(model or "", 16000),
            "threads": threads,
            "passes": cfg["passes"],
            "decode_ahead": ahead,
        }
        r = run_child(
            "bench.extract_bench", "child_extract", params, threads=threads, timeout_s=cfg["limit_s"],
            out_path=work / f"{name.replace('+', '_').replace('@', '_').replace(' (decode_ahead=', '_ahead').rstrip(')')}.json",
        )  # fmt: skip
        r["config"] = name
        r["n_files"] = len(files)
        if r["status"] == "timeout":
            r["reason"] = f"stopped at the {cfg['limit_s']} s limit; passes listed are those finished"
        _summarise(r)
        result["configs"].append(r)
    # the embed step itself, in this process (workers=1) and in worker processes
    if DEFAULT_MODEL in model_rates:
        for workers in (1, 2):
            name = f"embed-step processes={workers}"
            log(f"extract: {name} on {len(files)} files")
            params = {
                "files": [str(f) for f in files], "model": DEFAULT_MODEL, "workers": workers,
                "passes": cfg["passes"], "work": str(work / "embed_step"),
            }  # fmt: skip
            r = run_child(
                "bench.extract_bench", "child_embed_step", params, threads=threads, timeout_s=cfg["limit_s"],
                out_path=work / f"embed_step_w{workers}.json",
            )  # fmt: skip
            r.update({"config": name, "n_files": len(files)})
            _summarise(r)
            result["configs"].append(r)
    # ratios against the decode reference at the same sample rate
    refs = {
        c["sample_rate"]: c
        for c in result["configs"]
        if c["config"].startswith("decode@") and "x_realtime" in c
    }
    for c in result["configs"]:
        ref = refs.get(c.get("sample_rate"))
        if ref and "x_realtime" in c:
            c["fraction_of_decode_ceiling"] = c["x_realtime"]["median"] / ref["x_realtime"]["median"]
    default = next((c for c in result["configs"] if c["config"] == f"decode+{DEFAULT_MODEL}"), None)
    if default and "x_realtime" in default:
        x = default["x_realtime"]["median"]
        result["target_met"] = bool(x >= TARGET_X_REALTIME)
        result["target_status"] = (
            f"{DEFAULT_MODEL}: {x:.1f}x real time (median), target {TARGET_X_REALTIME:g}x"
        )
    else:
        result["target_met"] = None
        result["target_status"] = f"{DEFAULT_MODEL} not measured"
    return result


def _model_module(name: str) -> str:
    from research_job.models.registry import MODELS as REG

    return REG[name].loader.split(":")[0]


def _model_rate(name: str) -> int:
    """The model's sample rate without loading weights: a module constant SAMPLE_RATE, else 16 kHz."""
    import importlib

    mod = importlib.import_module(_model_module(name))
    return int(getattr(mod, "SAMPLE_RATE", 16000))


# ------------------------------------------------------------------------------------------------- output
def _f(v: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if v is None else f"{v * scale:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The Markdown section of ``docs/benchmarks.md`` for one extraction result."""
    lines = [f"### Extraction ({result['mode']}, {result['created_at']})", ""]
    if result.get("status") == "skipped":
        return "\n".join(lines + [f"Skipped: {result['reason']}", ""])
    lines += [
        f"Input: {result.get('input')}. Target: {result['target']} -> **{result.get('target_status')}**. "
        "x real time = seconds of audio per second of wall time, median and p95 over passes; the decode row at "
        "the model's rate is the reference (the ceiling of the model step). Each row is its own child process "
        "(peak RSS not mixed). tracks/h at 240 s = throughput for 4-minute tracks. Compute ceiling = this "
        "process's dense sgemm GFLOP/s / the model's GFLOP per audio second (torch FLOP counter): the most x "
        "real time the model could reach on this machine at matmul efficiency, measured in the same child.",
        "",
        "| config | rate Hz | x real time p50 | p95 | min | of decode ceiling | decode part x | model part x | "
        "tracks/h (these files) | tracks/h at 240 s | model load s | peak RSS | model GFLOP per audio s | "
        "sgemm GFLOP/s | compute ceiling x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["configs"]:
        if "x_realtime" not in c:
            lines.append(
                f"| {c['config']} | | {c.get('status')}: {c.get('reason') or c.get('error', '')[-300:]} |"
            )
            continue
        x = c["x_realtime"]
        mp = c.get("x_realtime_model_only_part", {}).get("median")
        frac = c.get("fraction_of_decode_ceiling")
        lines.append(
            f"| {c['config']} | {c.get('sample_rate')} | {x['median']:.1f} | {x['p95']:.1f} | {x['min']:.1f} | "
            f"{'-' if frac is None else f'{frac:.2f}'} | {c['x_realtime_decode_only_part']['median']:.1f} | "
            f"{'-' if mp is None else f'{mp:.1f}'} | {c['tracks_per_hour']['median']:,.0f} | "
            f"{c['tracks_per_hour_at_240s']['median']:,.0f} | "
            f"{c.get('load_sec', 0):.2f} | {(c.get('peak_rss') or 0) / 2**20:.0f} MiB | "
            f"{_f(c.get('model_flops_per_audio_sec'), 1e-9, 3)} | {_f(c.get('sgemm_gflops', {}).get('median'))} | "
            f"{_f(c.get('compute_bound_x_realtime'))} |"
        )
    lines.append("")
    return "\n".join(lines)
