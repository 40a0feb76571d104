"""The embed step's Ray engine against its local engine, in the same run: wall, overhead, memory, incremental.

Inputs, two corpora measured in the same run (``corpus`` in each configuration's record and in the table):

* ``demo``: the demo corpus (tracks of ~30 s) when it is already cached (``.cache/bench/demo/store`` or
  ``.cache/demo_corpus/store``; ``--full`` builds it under ``.cache/bench/demo`` when missing, as the extract stage
  does); otherwise (``short synth``) seeded additive-synth clips rendered by :func:`bench.extract_bench.render_clips`.
* ``long synth``: 8 (quick; 12 full) seeded additive-synth tracks of 4 minutes (seeds from ``LONG_SEED``),
  rendered by the same :func:`bench.extract_bench.render_clips` into ``.cache/bench/ray_long`` (cached) and encoded
  in the same codecs (flac, mp3, ogg/vorbis, m4a/AAC): few long tracks, as a catalogue of whole songs has, where
  the demo corpus has many short ones. Its configurations: ``local processes=1`` (its reference), ``local
  processes=2`` and ``ray 2x1 shard=2`` (shards of 2: with 8 tracks each actor gets 2 shards).

A version folder lists the files with ``audio_cache/`` linking to them, as pull-audio leaves it, so every track is
decoded from its codec on every pass. Model: ``musicnn-msd``; ``dsp-stats`` when its weights are absent (recorded
in ``model`` and ``model_note``). Passes: quick mode runs the demo configurations 2 passes each and the long ones
1 pass each (about 5 minutes on 2 quiet cores, 7 measured with another job using about a core; a first run
renders the long corpus, ~35 s more); full mode 3 passes each.
Wall / reference is always against ``local processes=1`` on the same corpus.

Each configuration is one child process (:func:`bench.common.run_child`; a pass is one whole
``research_job.steps.embed.run``, model load in the driver included, the embeddings folder removed first):

* demo: ``local processes=1`` (the reference), ``local processes=2``, and ``ray 2x1 shard=32`` / ``shard=4`` (a
  local Ray cluster of 2 actors x 1 CPU x 1 torch thread, started and shut down by the engine itself on every
  pass, as ``ray_address`` unset does). The Ray run is split into phases by wrapping, without changing them,
  ``research_job.embed_ray._connect`` (cluster start-up: ``ray.init``), the engine's "Embedding ... on Ray" log
  line (emitted once every actor has loaded its model: ``actors_ready_sec``), ``ray.shutdown`` (teardown) and
  ``embed_on_ray`` itself (``engine_sec``); what remains of the wall is the driver's own work (reading the CSV,
  loading the model in the driver, fingerprinting the audio, post-processing and writing the files).
* Overhead, from the engine record's per-shard ``decode_sec`` + ``model_sec`` (seconds inside the actor spent
  decoding and in the model; one actor has one thread, so these are its busy seconds):

  - ``sched_overhead_per_track_sec`` = (shards phase - sum of shards' decode + model / workers) / tracks, the
    shards phase being ``engine_sec`` - cluster start - actors ready - teardown: the time per track the pool
    spends on anything but decoding and the model (task submission, pickling the rows and vectors, waiting in
    queues, the tail when one actor finishes before the other, checks inside the actor);
  - ``non_compute_per_track_sec`` = (wall - decode + model / workers) / tracks for every configuration, the
    local ones included: the same-run reference of the fixed costs every engine pays;
  - ``imbalance`` = the busiest actor's decode + model seconds / the mean over the ``workers`` actors (1.0:
    even; 2.0 with 2 workers: one actor did everything), with the shards each actor ran (``actor_shards``);
  - ``per_shard_overhead_sec`` = (busiest actor's idle seconds in the shards phase with shard 4 - with shard
    32) / (shards it ran with 4 - with 32) (:func:`per_shard_overhead`): the critical path's cost per shard,
    load imbalance left out.

* Memory: the driver's peak RSS (``VmHWM`` of the child, which runs ``embed.run``); the workers' by sampling
  every 0.2 s with psutil the child's descendant processes (a sampled peak: a lower bound): for Ray the
  ``ray::EmbedActor`` processes, each, and all descendants together (raylet, GCS, idle workers included); for
  ``processes=2`` also ``ru_maxrss`` of the waited-for children.
* Incremental (demo corpus only): from the last pass's folder of ``local processes=1`` and of ``ray shard=32``
  (the full runs), about 5 % of tracks change (half rewritten with different audio, half new rows) and
  ``--incremental --base`` embeds into a new folder with the same engine; its wall against the full run's and its
  ``incremental`` counts.
* Sizing (:func:`sizing_hours`): an extrapolation, not a measurement: hours to embed 1M tracks with N Ray workers
  of 1 CPU, one table per Ray configuration, each from that configuration's own corpus (named in the table's
  heading): its measured worker-seconds (decode + model) per audio second, for tracks of that corpus's mean length
  and of 4 minutes (one row when the corpus's tracks are 4 minutes long), and again with its busiest actor's idle
  seconds per shard spread over the shard's tracks, assuming linear scaling (no object-store, network or cluster
  limits). A GPU row only from a GPU measured in this run (``local processes=1 device=cuda`` on the demo corpus
  runs when torch sees CUDA); none otherwise.
* Isolation: the children get a Ray temp folder of their own (``RAY_TMPDIR``) and no ``RAY_ADDRESS``, so the
  engine starts its own cluster even when another is running on the machine (:func:`_child_environment`); a
  pass whose cluster fails to start is tried once more and the failure recorded (``failed_attempts``).
"""

from __future__ import annotations

import logging
import math
import re
import resource
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CACHE_DIR,
    ROOT,
    dump_partial,
    log,
    machine_facts,
    module_available,
    peak_rss_bytes,
    run_child,
    skipped,
    summarize,
    usable_cpus,
    utc_now,
)

MODEL = "musicnn-msd"
FALLBACK_MODEL = "dsp-stats"
AUDIO_EXT = {".m4a", ".mp3", ".ogg", ".flac", ".wav", ".opus", ".aac"}
#: the share of tracks an incremental run sees changed: half rewritten with other audio, half new rows
CHANGED_SHARE = 0.05
SIZING_TRACKS = 1_000_000
SIZING_WORKERS = (8, 32, 128)
SIZING_TRACK_SEC = 240.0
RSS_POLL_SEC = 0.2
#: ``long_*``: the second corpus, ``long_tracks`` seeded synth tracks of ``long_sec`` seconds, ``long_passes`` each
QUICK = {
    "n_tracks": 64, "clip_sec": 20.0, "passes": 2, "limit_s": 300, "demo_tracks": None,
    "long_tracks": 8, "long_sec": 240.0, "long_passes": 1,
}  # fmt: skip
FULL = {
    "n_tracks": None, "clip_sec": 30.0, "passes": 3, "limit_s": 1800, "demo_tracks": 128,
    "long_tracks": 12, "long_sec": 240.0, "long_passes": 3,
}  # fmt: skip
RAY = {"workers": 2, "cpus_per_worker": 1.0, "threads_per_worker": 1}
#: (config name, engine, processes, shard size); the first is the reference
CONFIGS = [
    ("local processes=1", "local", 1, None),
    ("local processes=2", "local", 2, None),
    ("ray 2x1 shard=32", "ray", 1, 32),
    ("ray 2x1 shard=4", "ray", 1, 4),
]
REFERENCE = CONFIGS[0][0]
#: the long corpus's configurations: few long tracks, so shards of 2 (each actor gets shards to run)
LONG_CONFIGS = [
    ("local processes=1", "local", 1, None),
    ("local processes=2", "local", 2, None),
    ("ray 2x1 shard=2", "ray", 1, 2),
]
LONG_CORPUS = "long synth"
#: the seed of the long corpus's first track (the short fallback clips start at 0, the incremental ones at 1000)
LONG_SEED = 5000
#: the full runs an incremental run starts from (its --base), with the same engine
INCREMENTAL_OF = ("local processes=1", "ray 2x1 shard=32")


# ------------------------------------------------------------------------------------------------- pure helpers
def sizing_hours(
    n_tracks: int,
    track_sec: float,
    worker_sec_per_audio_sec: float,
    workers: int,
    overhead_per_track_worker_sec: float = 0.0,
) -> float:
    """Hours for ``workers`` 1-CPU workers to embed ``n_tracks`` tracks of ``track_sec`` seconds, assuming perfect
    linear scaling: ``n x (track_sec x worker_sec_per_audio_sec + overhead) / workers / 3600``.

    Raises:
        ValueError: a count or rate that is not positive (or a negative overhead).
    """
    if n_tracks < 1 or workers < 1 or track_sec <= 0 or worker_sec_per_audio_sec <= 0:
        raise ValueError(
            f"sizing_hours needs n_tracks, workers >= 1 and track_sec, worker_sec_per_audio_sec > 0, got "
            f"{n_tracks}, {workers}, {track_sec}, {worker_sec_per_audio_sec}"
        )
    if overhead_per_track_worker_sec < 0:
        raise ValueError(f"overhead_per_track_worker_sec must be >= 0, got {overhead_per_track_worker_sec}")
    per_track = track_sec * worker_sec_per_audio_sec + overhead_per_track_worker_sec
    return n_tracks * per_track / workers / 3600.0


def sched_overhead(phase_sec: float, busy_sec: float, workers: int, tracks: int) -> float:
    """Seconds per track of a pool's phase not spent busy: ``(phase_sec - busy_sec / workers) / tracks``."""
    if workers < 1 or tracks < 1:
        raise ValueError(f"sched_overhead needs workers, tracks >= 1, got {workers}, {tracks}")
    return (phase_sec - busy_sec / workers) / tracks


def per_shard_overhead(small: dict[str, float], large: dict[str, float]) -> float | None:
    """Seconds each extra shard costs on the critical path: the difference of the busiest actor's idle seconds
    (``idle_sec``: shards phase - its decode + model seconds) between a run with small shards and one with large
    shards, over the difference of the ``shards`` that actor ran; None when it ran as many in both."""
    extra = small["shards"] - large["shards"]
    if extra == 0:
        return None
    return (small["idle_sec"] - large["idle_sec"]) / extra


def incremental_tracks(
    base: list[dict[str, str]], changed_files: list[str], added_files: list[str]
) -> tuple[list[dict[str, str]], list[str]]:
    """The track list of the incremental run: ``base`` with evenly spaced tracks pointing at ``changed_files``
    (same ids, other audio) and new rows for ``added_files``; returns it and the changed ids."""
    out = [dict(t) for t in base]
    n = len(out)
    step = n / max(1, len(changed_files))
    changed = []
    for k, f in enumerate(changed_files):
        i = min(n - 1, int(k * step + step / 2))
        out[i]["file"] = f
        changed.append(out[i]["track_id"])
    for j, f in enumerate(added_files):
        out.append({"track_id": f"t{n + j:05d}", "file": f})
    return out, changed


# ------------------------------------------------------------------------------------------------- inputs
def _demo_files() -> tuple[list[Path], Path | None]:
    for d in (CACHE_DIR / "demo", ROOT / ".cache" / "demo_corpus"):
        store = d / "store"
        if store.is_dir():
            files = sorted(p for p in store.rglob("*") if p.suffix.lower() in AUDIO_EXT)
            if files:
                return files, d
    return [], None


def corpus_files(mode: str, cfg: dict[str, Any]) -> tuple[list[Path], str]:
    """The audio files of the base version folder and a sentence saying where they come from."""
    from bench.extract_bench import render_clips

    files, where = _demo_files()
    if mode == "full" and not files and module_available("research_job.demo.build") is None:
        from research_job.demo.build import build_demo_corpus

        log(f"ray: building the demo corpus ({cfg['demo_tracks']} tracks) under {CACHE_DIR / 'demo'}")
        build_demo_corpus(CACHE_DIR / "demo", n_tracks=cfg["demo_tracks"])
        files, where = _demo_files()
    if files:
        chosen = files[: cfg["n_tracks"]] if cfg["n_tracks"] else files
        return chosen, f"demo corpus ({where}), {len(chosen)} of {len(files)} tracks"
    n = cfg["n_tracks"] or 64
    chosen = render_clips(CACHE_DIR / "clips", n, cfg["clip_sec"])
    return chosen, (
        f"{n} seeded additive-synth clips of {cfg['clip_sec']:.0f} s (22.05 kHz stereo; flac, mp3, ogg/vorbis, "
        "m4a/AAC) rendered by bench/extract_bench.py (demo corpus not cached)"
    )


def long_corpus_files(cfg: dict[str, Any]) -> tuple[list[Path], str]:
    """The long corpus: ``long_tracks`` seeded additive-synth tracks of ``long_sec`` seconds (cached), and a
    sentence saying what they are."""
    from bench.extract_bench import render_clips

    n, sec = cfg["long_tracks"], cfg["long_sec"]
    files = render_clips(CACHE_DIR / "ray_long", n, sec, seed=LONG_SEED)
    return files, (
        f"{n} seeded additive-synth tracks of {sec:.0f} s (22.05 kHz stereo; flac, mp3, ogg/vorbis, m4a/AAC) "
        "rendered by bench/extract_bench.py"
    )


def pick_model() -> tuple[str, str | None]:
    """``musicnn-msd`` when it loads here, else ``dsp-stats`` and the reason."""
    from research_job.errors import ResearchJobError
    from research_job.models.registry import load_model

    try:
        load_model(MODEL)
    except (ResearchJobError, OSError, ImportError) as e:
        return (
            FALLBACK_MODEL,
            f"{MODEL} not loadable ({type(e).__name__}: {e}); measured with {FALLBACK_MODEL}",
        )
    return MODEL, None


# ------------------------------------------------------------------------------------------------- child
class _RssSampler(threading.Thread):
    """Samples the RSS of this process's descendants: each ``ray::EmbedActor`` and all of them together."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.actor_peak: dict[int, int] = {}
        self.total_peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        ps = self.psutil
        while not self.stop.wait(RSS_POLL_SEC):
            total = 0
            try:
                kids = self.me.children(recursive=True)
            except ps.Error:
                continue
            for p in kids:
                try:
                    cmd = p.cmdline()
                    rss = int(p.memory_info().rss)
                except ps.Error:  # gone or not ours: skip it
                    continue
                total += rss
                if cmd and cmd[0].startswith("ray::EmbedActor"):
                    self.actor_peak[p.pid] = max(self.actor_peak.get(p.pid, 0), rss)
            self.total_peak = max(self.total_peak, total)


class _LogTime(logging.Handler):
    """Records when the Ray engine logs that its actors are ready ("Embedding ... on Ray")."""

    def __init__(self, timings: dict[str, float]) -> None:
        super().__init__(logging.INFO)
        self.timings = timings

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Embedding ") and "on Ray" in record.getMessage():
            self.timings["t_actors_ready"] = time.perf_counter()


def _instrument_ray(timings: dict[str, float]) -> None:
    """Time the Ray engine's phases by wrapping, unchanged, its cluster start, shutdown and the engine call."""
    import ray

    from research_job import embed_ray
    from research_job.steps import embed as embed_step

    connect, engine, shutdown = embed_ray._connect, embed_step.embed_on_ray, ray.shutdown

    def timed_connect(settings: Any) -> bool:
        t0 = time.perf_counter()
        try:
            return connect(settings)
        except BaseException:
            timings["connect_failed"] = 1.0
            raise
        finally:
            timings["t_connected"] = time.perf_counter()
            timings["cluster_start_sec"] = timings["t_connected"] - t0

    def timed_engine(*args: Any, **kwargs: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return engine(*args, **kwargs)
        finally:
            timings["engine_sec"] = time.perf_counter() - t0

    def timed_shutdown(*args: Any, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        try:
            shutdown(*args, **kwargs)
        finally:
            timings["teardown_sec"] = time.perf_counter() - t0

    embed_ray._connect = timed_connect
    embed_step.embed_on_ray = timed_engine
    ray.shutdown = timed_shutdown
    lg = logging.getLogger(embed_ray.__name__)
    lg.setLevel(logging.INFO)
    lg.addHandler(_LogTime(timings))


def _version_folder(vdir: Path, model: str, tracks: list[dict[str, str]]) -> Any:
    """A version folder listing ``tracks`` (id + file) with ``audio_cache/`` linking to the files."""
    from research_job.config import CommonConfig
    from research_job.metadata import TrackRow, write_tracks_csv

    shutil.rmtree(vdir, ignore_errors=True)
    common = CommonConfig(model=model, version_dir=vdir)
    rows = []
    for t in tracks:
        f = Path(t["file"])
        album = re.sub(r"[^A-Za-z0-9._-]+", "_", f.parent.name).strip("._") or "album"
        row = TrackRow(
            track_id=t["track_id"], album_id=album, track_no=None, title=f.stem, composer=None,
            audio_s3_key=f"audio/{album}/{t['track_id']}{f.suffix.lower()}", duration_sec=None,
            composer_raw=None, composer_missing=True,
        )  # fmt: skip
        dst = common.layout.cached_audio(album, row.track_id, row.audio_ext)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(f.resolve())
        rows.append(row)
    write_tracks_csv(common.layout.tracks_csv, rows)
    return common


def _pass_record(meta: dict[str, Any], wall: float, timings: dict[str, float]) -> dict[str, Any]:
    st, eng = meta["stats"], meta["engine"]
    shards = eng.get("shards") or []
    rec: dict[str, Any] = {
        "wall_sec": wall,
        "meta_wall_sec": st["wall_sec"],
        **{k: st[k] for k in ("audio_sec", "decode_sec", "model_sec", "n_embedded", "n_failed")},
        "engine": {k: v for k, v in eng.items() if k != "shards"},
        "incremental": meta.get("incremental"),
    }
    if eng.get("name") == "ray":
        rec["shards"] = len(shards)
        rec["shard_wall_sum_sec"] = sum(s.get("wall_sec", 0.0) for s in shards)
        rec["busy_sec"] = sum(s.get("decode_sec", 0.0) + s.get("model_sec", 0.0) for s in shards)
        per_actor: dict[int, list[float]] = {}
        for s in shards:
            if s.get("worker"):
                a = per_actor.setdefault(s["worker"]["pid"], [0.0, 0])
                a[0] += s.get("decode_sec", 0.0) + s.get("model_sec", 0.0)
                a[1] += 1
        # actors that got no shard count too: the pool has `workers` of them whether they work or not
        busy_by_actor = sorted((a for a in per_actor.values()), reverse=True)
        busy_by_actor += [[0.0, 0]] * (int(eng.get("workers", 0)) - len(busy_by_actor))
        rec["actor_busy_sec"] = [round(a[0], 4) for a in busy_by_actor]
        rec["actor_shards"] = [int(a[1]) for a in busy_by_actor]
        for k in ("cluster_start_sec", "engine_sec", "teardown_sec"):
            rec[k] = timings.get(k)
        if "t_actors_ready" in timings and "t_connected" in timings:
            rec["actors_ready_sec"] = timings["t_actors_ready"] - timings["t_connected"]
        if None not in (rec["engine_sec"], rec["cluster_start_sec"], rec.get("actors_ready_sec")):
            rec["phase_sec"] = (
                rec["engine_sec"]
                - rec["cluster_start_sec"]
                - rec["actors_ready_sec"]
                - (rec["teardown_sec"] or 0.0)
            )
            if rec["actor_busy_sec"]:
                # the busiest actor is the critical path: what it did not spend busy is the per-shard cost
                rec["busiest_idle_sec"] = rec["phase_sec"] - rec["actor_busy_sec"][0]
        rec["driver_sec"] = wall - (rec["engine_sec"] or 0.0)
    else:
        rec["busy_sec"] = st["decode_sec"] + st["model_sec"]
    return rec


def _one_pass(
    run: Any, cfg: Any, common: Any, timings: dict[str, float], res: dict[str, Any]
) -> tuple[dict[str, Any], float]:
    """One timed ``embed.run`` from an empty embeddings folder. A Ray run whose cluster fails to start (Ray
    raises a bare ``Exception``, "timed out during startup", on a loaded machine) is tried once more; the failed
    attempt is recorded in ``res['failed_attempts']``, never hidden."""
    for attempt in (0, 1):
        shutil.rmtree(common.layout.embeddings_dir, ignore_errors=True)
        timings.clear()
        t0 = time.perf_counter()
        try:
            meta = run(cfg)
        except Exception as e:
            if cfg.engine != "ray" or attempt or not timings.get("connect_failed"):
                raise
            res.setdefault("failed_attempts", []).append(
                {"after_sec": time.perf_counter() - t0, "error": f"{type(e).__name__}: {e}"[:500]}
            )
            import ray

            ray.shutdown()
            continue
        return meta, time.perf_counter() - t0
    raise AssertionError("unreachable")


def child_embed(params: dict[str, Any], out: Path) -> None:
    """Build the version folder of ``params['tracks']`` and run the embed step on it ``passes`` times."""
    from research_job.steps import embed
    from research_job.steps.embed import EmbedConfig

    vdir = Path(params["vdir"])
    common = _version_folder(vdir, params["model"], params["tracks"])
    engine = params["engine"]
    kw: dict[str, Any] = {"engine": engine, "processes": int(params["processes"])}
    if params.get("device"):
        kw["device"] = params["device"]
    if engine == "ray":
        kw.update(
            ray_workers=RAY["workers"], ray_cpus_per_worker=RAY["cpus_per_worker"],
            ray_threads_per_worker=RAY["threads_per_worker"], shard_size=int(params["shard_size"]),
        )  # fmt: skip
    if params.get("base"):
        kw.update(incremental=True, base=Path(params["base"]))
    cfg = EmbedConfig(common=common, **kw)
    timings: dict[str, float] = {}
    if engine == "ray":
        _instrument_ray(timings)
    res: dict[str, Any] = {"model": params["model"], "engine": engine, "passes": []}
    sampler = None
    if module_available("psutil") is None:
        sampler = _RssSampler()
        sampler.start()
    else:
        res["workers_rss"] = "unavailable: psutil not installed"
    for p in range(int(params["passes"])):
        meta, wall = _one_pass(embed.run, cfg, common, timings, res)
        if meta["stats"]["n_failed"]:  # recorded in the pass (n_failed), and said here
            log(
                f"  ray bench {params['name']}: {meta['stats']['n_failed']} tracks failed: {meta['failures'][:3]}"
            )
        res["passes"].append(_pass_record(meta, wall, timings))
        res["peak_rss_driver"] = peak_rss_bytes()
        if sampler is not None:
            res["peak_rss_actors"] = dict(sorted(sampler.actor_peak.items()))
            res["peak_rss_descendants_total"] = sampler.total_peak
        if int(params["processes"]) > 1:
            # the worker processes' own peaks (ru_maxrss of waited-for children, KiB on Linux)
            res["peak_rss_waited_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        dump_partial(out, res)
        log(
            f"  ray bench {params['name']} pass {p}: {wall:.1f} s, {meta['stats']['x_realtime']:.1f}x real time"
        )
    if sampler is not None:
        sampler.stop.set()


# ------------------------------------------------------------------------------------------------- driver
def _summarise(r: dict[str, Any], workers: int) -> None:
    """Medians over passes of a configuration's figures (in place)."""
    ps = r.get("passes") or []
    if not ps:
        return
    n = ps[0]["n_embedded"] + ps[0]["n_failed"]
    r["n_tracks"] = n
    r["n_failed"] = ps[-1]["n_failed"]
    r["audio_sec"] = ps[0]["audio_sec"]
    r["workers"] = workers
    r["wall_sec"] = summarize([p["wall_sec"] for p in ps])
    r["tracks_per_sec"] = summarize([n / p["wall_sec"] for p in ps])
    r["x_realtime"] = summarize([p["audio_sec"] / p["wall_sec"] for p in ps])
    r["non_compute_per_track_sec"] = summarize(
        [sched_overhead(p["wall_sec"], p["busy_sec"], workers, n) for p in ps]
    )
    r["busy_sec_per_audio_sec"] = summarize([p["busy_sec"] / p["audio_sec"] for p in ps])
    for key in ("cluster_start_sec", "actors_ready_sec", "teardown_sec", "phase_sec", "driver_sec"):
        vals = [p[key] for p in ps if p.get(key) is not None]
        if vals:
            r[key] = summarize(vals)
    phased = [p for p in ps if p.get("phase_sec") is not None]
    if phased:
        r["shards"] = phased[-1]["shards"]
        r["shard_size"] = phased[-1]["engine"].get("shard_size")
        r["actor_shards"] = phased[-1]["actor_shards"]
        r["busiest_actor_shards"] = phased[-1]["actor_shards"][0] if phased[-1]["actor_shards"] else 0
        r["busiest_idle_sec"] = summarize([p["busiest_idle_sec"] for p in phased if "busiest_idle_sec" in p])
        # 1.0 = every actor equally busy; `workers` = one actor did everything
        r["imbalance"] = summarize(
            [p["actor_busy_sec"][0] / (p["busy_sec"] / workers) for p in phased if p["busy_sec"] > 0]
        )
        r["sched_overhead_per_track_sec"] = summarize(
            [sched_overhead(p["phase_sec"], p["busy_sec"], workers, n) for p in phased]
        )
        r["wall_excl_cluster_start_sec"] = summarize([p["wall_sec"] - p["cluster_start_sec"] for p in phased])


def _child(
    name: str,
    tracks: list[dict[str, str]],
    params: dict[str, Any],
    work: Path,
    threads: int,
    limit_s: float,
    corpus: str = "",
) -> dict[str, Any]:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{corpus} {name}").strip("_")
    label = f"{name} [{corpus}]" if corpus else name
    params = {**params, "name": label, "tracks": tracks, "vdir": str(work / f"v1_{slug}")}
    log(f"ray: {label} on {len(tracks)} tracks")
    r = run_child(
        "bench.ray_bench",
        "child_embed",
        params,
        threads=threads,
        timeout_s=limit_s,
        out_path=work / f"{slug}.json",
    )
    r["config"] = name
    if corpus:
        r["corpus"] = corpus
    r["folder"] = params["vdir"]
    if r["status"] == "timeout":
        r["reason"] = f"stopped at the {limit_s:.0f} s limit; passes listed are those finished"
    return r


def _sizing(ray: dict[str, Any], mean_track_sec: float) -> dict[str, Any]:
    """The extrapolated sizing table from the Ray run's measured busy seconds per audio second and overhead."""
    c = ray["busy_sec_per_audio_sec"]["median"]
    # the busiest actor's idle seconds per shard it ran, spread over a shard's tracks: what each track costs a
    # worker besides decode + model once the pool is busy (the start-up tail and imbalance of a short run left out)
    idle, shards, size = ray.get("busiest_idle_sec"), ray.get("busiest_actor_shards"), ray.get("shard_size")
    o_worker = max(0.0, idle["median"] / shards / size) if idle and shards and size else None
    rows = []
    # a corpus of 4-minute tracks has one length to show, not the same row twice
    lengths = (
        [SIZING_TRACK_SEC]
        if abs(mean_track_sec - SIZING_TRACK_SEC) < 1.0
        else [mean_track_sec, SIZING_TRACK_SEC]
    )
    for track_sec in lengths:
        for n in SIZING_WORKERS:
            rows.append(
                {
                    "track_sec": track_sec,
                    "workers": n,
                    "hours_compute_only": sizing_hours(SIZING_TRACKS, track_sec, c, n),
                    "hours_with_measured_overhead": None
                    if o_worker is None
                    else sizing_hours(SIZING_TRACKS, track_sec, c, n, o_worker),
                }
            )
    return {
        "label": "EXTRAPOLATION, not a measurement",
        "n_tracks": SIZING_TRACKS,
        "from_config": ray["config"],
        "corpus": ray.get("corpus"),
        "mean_track_sec": mean_track_sec,
        # how many actors ran shards at the same time: their decode + model seconds include that contention
        "actors_with_shards": sum(1 for n in ray.get("actor_shards", []) if n),
        "workers_measured": ray.get("workers"),
        "worker_sec_per_audio_sec": c,
        "overhead_per_track_worker_sec": o_worker,
        "overhead_from": "the busiest actor's idle seconds in the shards phase / the shards it ran / shard size",
        "assumes": "linear scaling over 1-CPU workers with 1 torch thread each, as measured here (2 workers sharing "
        "2 cores with the driver); audio read from a local disk; no object-store, network or scheduler limits; "
        "cluster start-up and the driver's own work (fingerprints, writing the files) left out",
        "rows": rows,
    }


def run(mode: str) -> dict[str, Any]:
    """Run the Ray engine benchmark in ``mode`` ("quick" or "full"); returns the result dict."""
    if mode not in ("quick", "full"):
        raise ValueError(f"Unknown mode {mode!r}. Known: quick, full")
    cfg = QUICK if mode == "quick" else FULL
    threads = usable_cpus()
    result: dict[str, Any] = {
        "benchmark": "ray",
        "mode": mode,
        "created_at": utc_now(),
        "machine": machine_facts({"torch": threads, "blas_omp": threads, "ray_actor_torch": 1}),
        "ray": dict(RAY),
        "reference": REFERENCE,
        "configs": [],
    }
    for mod in ("ray", "research_job.embed_ray", "research_job.io.audio"):
        missing = module_available(mod)
        if missing:
            result.update(skipped(missing))
            return result
    model, note = pick_model()
    result["model"] = model
    result["model_note"] = note
    files, source = corpus_files(mode, cfg)
    main = "demo" if source.startswith("demo corpus") else "short synth"
    long_files, long_source = long_corpus_files(cfg)
    result["input"] = source
    result["ray_env"] = _child_environment()
    work = CACHE_DIR / "ray"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def tracks_of(fs: list[Path]) -> list[dict[str, str]]:
        return [{"track_id": f"t{i:05d}", "file": str(f)} for i, f in enumerate(fs)]

    tracks = tracks_of(files)
    plan = [
        (main, source, tracks, CONFIGS, cfg["passes"]),
        (LONG_CORPUS, long_source, tracks_of(long_files), LONG_CONFIGS, cfg["long_passes"]),
    ]
    result["corpora"] = []
    by_corpus: dict[str, dict[str, dict[str, Any]]] = {}
    for corpus, where, corpus_tracks, configs, passes in plan:
        result["corpora"].append(
            {"corpus": corpus, "input": where, "n_tracks": len(corpus_tracks), "passes": passes}
        )
        named = by_corpus.setdefault(corpus, {})
        for name, engine, processes, shard in configs:
            params = {
                "model": model, "passes": passes, "engine": engine, "processes": processes, "shard_size": shard,
            }  # fmt: skip
            r = _child(name, corpus_tracks, params, work, threads, cfg["limit_s"], corpus)
            _summarise(r, RAY["workers"] if engine == "ray" else processes)
            result["configs"].append(r)
            named[name] = r
        ref = named[REFERENCE]
        for r in named.values():
            if "wall_sec" in r and "wall_sec" in ref:
                r["wall_ratio_to_reference"] = r["wall_sec"]["median"] / ref["wall_sec"]["median"]
    by_name = by_corpus[main]
    common = {"model": model, "passes": cfg["passes"]}
    result["gpu"] = _gpu(tracks, common, work, threads, cfg["limit_s"])
    ray32, ray4 = by_name["ray 2x1 shard=32"], by_name["ray 2x1 shard=4"]
    if "busiest_idle_sec" in ray32 and "busiest_idle_sec" in ray4:
        result["per_shard_overhead_sec"] = per_shard_overhead(
            {"idle_sec": ray4["busiest_idle_sec"]["median"], "shards": ray4["busiest_actor_shards"]},
            {"idle_sec": ray32["busiest_idle_sec"]["median"], "shards": ray32["busiest_actor_shards"]},
        )
    result["incremental"] = _incremental(by_name, tracks, common, work, threads, cfg)
    for c in result["corpora"]:
        done = [r for r in result["configs"] if r.get("corpus") == c["corpus"] and r.get("n_tracks")]
        c["mean_track_sec"] = done[0]["audio_sec"] / done[0]["n_tracks"] if done else None
    result["mean_track_sec"] = result["corpora"][0]["mean_track_sec"]
    result["sizing"] = sizings(result["configs"])
    return result


def sizings(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One extrapolated sizing table per measured Ray configuration, each from its own corpus's measurement (its
    mean track length included): on the demo corpus shard 32 gives each actor one large shard and shard 4 many
    small ones, and the long corpus's shard 2 measures 4-minute tracks directly, so together they bracket the
    worker-seconds per audio second."""
    rays = [c for c in configs if c["config"].startswith("ray") and "busy_sec_per_audio_sec" in c]
    return [_sizing(c, c["audio_sec"] / c["n_tracks"]) for c in rays]


def _child_environment() -> dict[str, str]:
    """What the children, and the Ray workers they start, inherit; returns the Ray variables set.

    A Ray temp folder of this benchmark's own (``RAY_TMPDIR``) and no ``RAY_ADDRESS``: with ``ray_address``
    unset the engine calls ``ray.init(num_cpus=...)`` without an address, and Ray then joins the last cluster
    ``ray start`` recorded in ``<temp>/ray/ray_current_cluster`` (a test's head node, another user's) instead of
    starting one; its own temp folder makes it start the local cluster this benchmark measures, whatever else
    runs on the machine. No usage-stats upload; an absolute musicnn weights folder (the Makefile exports a
    relative one, and Ray workers need not start in this directory).
    """
    import os

    os.environ.pop("RAY_ADDRESS", None)
    tmp = Path(f"/tmp/ray_bench_{os.getuid()}")  # short: Ray's socket paths must stay under 107 characters
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.environ["RAY_TMPDIR"] = str(tmp)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    weights = os.environ.get("MUSICNN_WEIGHTS_DIR")
    if weights and not Path(weights).is_absolute():
        os.environ["MUSICNN_WEIGHTS_DIR"] = str(Path(weights).resolve())
    return {k: os.environ[k] for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}


def _gpu(
    tracks: list[dict[str, str]], common: dict[str, Any], work: Path, threads: int, limit_s: float
) -> Any:
    """``local processes=1 device=cuda`` when torch sees a CUDA device; else skipped (no GPU figure, no row)."""
    import torch

    if not torch.cuda.is_available():
        return {
            "status": "skipped",
            "reason": "no CUDA device on this machine (torch.cuda.is_available() is False)",
        }
    params = {**common, "engine": "local", "processes": 1, "shard_size": None, "device": "cuda"}
    r = _child("local processes=1 device=cuda", tracks, params, work, threads, limit_s)
    _summarise(r, 1)
    return r


def _incremental(
    by_name: dict[str, dict[str, Any]],
    tracks: list[dict[str, str]],
    common: dict[str, Any],
    work: Path,
    threads: int,
    cfg: dict[str, Any],
) -> dict[str, Any]:
    """~5 % of tracks changed (half rewritten audio, half new rows), embedded with --incremental from each full run."""
    from bench.extract_bench import render_clips

    n_changed = max(1, math.ceil(len(tracks) * CHANGED_SHARE / 2))
    changed = render_clips(CACHE_DIR / "ray_changed", n_changed, cfg["clip_sec"], seed=1000)
    added = render_clips(CACHE_DIR / "ray_added", n_changed, cfg["clip_sec"], seed=2000)
    inc_tracks, changed_ids = incremental_tracks(tracks, [str(p) for p in changed], [str(p) for p in added])
    out: dict[str, Any] = {
        "changed_ids": changed_ids,
        "added_ids": [t["track_id"] for t in inc_tracks[len(tracks) :]],
        "n_tracks": len(inc_tracks),
        "configs": [],
    }
    for full_name in INCREMENTAL_OF:
        full = by_name[full_name]
        name = f"{full_name} --incremental"
        if full.get("status") != "ok":
            out["configs"].append({"config": name, **skipped(f"the full run {full_name!r} did not finish")})
            continue
        engine = "ray" if full_name.startswith("ray") else "local"
        params = {
            **common, "engine": engine, "processes": 1, "shard_size": 32 if engine == "ray" else None,
            "base": full["folder"],
        }  # fmt: skip
        r = _child(name, inc_tracks, params, work, threads, cfg["limit_s"])
        _summarise(r, RAY["workers"] if engine == "ray" else 1)
        r["full_config"] = full_name
        if "wall_sec" in r and "wall_sec" in full:
            r["wall_ratio_to_full"] = r["wall_sec"]["median"] / full["wall_sec"]["median"]
        if r.get("passes"):
            r["counts"] = r["passes"][-1]["incremental"]
        out["configs"].append(r)
    return out


# ------------------------------------------------------------------------------------------------- output
def _s(v: Any, digits: int = 2, scale: float = 1.0) -> str:
    if isinstance(v, dict):
        v = v.get("median")
    return "-" if v is None else f"{v * scale:.{digits}f}"


def _mib(v: Any) -> str:
    return "-" if not v else f"{v / 2**20:.0f} MiB"


def _workers_rss(c: dict[str, Any]) -> str:
    actors = c.get("peak_rss_actors")
    if isinstance(c.get("workers_rss"), str):
        return c["workers_rss"]
    parts = []
    if actors:
        parts.append(
            f"{len(actors)} actor processes (all passes) max {_mib(max(actors.values()))}, "
            f"min {_mib(min(actors.values()))}"
        )
    if c.get("peak_rss_waited_children"):
        parts.append(f"largest worker {_mib(c['peak_rss_waited_children'])}")
    if c.get("peak_rss_descendants_total"):
        parts.append(f"all descendants {_mib(c['peak_rss_descendants_total'])}")
    return "; ".join(parts) or "-"


def _shards(c: dict[str, Any]) -> str:
    if "shards" not in c:
        return "-"
    per = "/".join(str(n) for n in c.get("actor_shards", []))
    return f"{c['shards']} ({per}; busiest x{_s(c.get('imbalance'))})" if per else str(c["shards"])


def _config_row(c: dict[str, Any], corpus: str) -> str:
    head = f"| {c.get('corpus') or corpus} | {c['config']} |"
    if "wall_sec" not in c:
        return f"{head} {c.get('status')}: {c.get('reason') or (c.get('error') or '')[-300:]} |"
    failed = f" ({c['n_failed']} failed)" if c.get("n_failed") else ""
    return (
        f"{head} {c['n_tracks']}{failed} | {c['audio_sec']:.0f} | {_s(c['wall_sec'])} | {_s(c['wall_sec'].get('p95'))} | "
        f"{_s(c['tracks_per_sec'])} | {_s(c['x_realtime'], 1)} | {_s(c.get('wall_ratio_to_reference'))} | "
        f"{_s(c.get('cluster_start_sec'))} | {_s(c.get('actors_ready_sec'))} | {_s(c.get('phase_sec'))} | "
        f"{_s(c.get('teardown_sec'))} | {_shards(c)} | {_s(c['non_compute_per_track_sec'], 3)} | "
        f"{_s(c.get('sched_overhead_per_track_sec'), 3)} | {_mib(c.get('peak_rss_driver'))} | {_workers_rss(c)} |"
    )


def markdown(result: dict[str, Any]) -> str:
    """The Markdown section of ``docs/benchmarks.md`` for one Ray engine result."""
    lines = [f"### Embed engines: local vs Ray ({result['mode']}, {result['created_at']})", ""]
    if result.get("status") == "skipped":
        return "\n".join(lines + [f"Skipped: {result['reason']}", ""])
    ray = result.get("ray", RAY)
    # results written before the long corpus existed have one corpus, the demo one, and no `corpora`
    corpora = result.get("corpora") or [{"corpus": "demo", "input": result.get("input")}]
    inputs = "; ".join(
        f"**{c['corpus']}**: {c.get('input')}" + (f", {c['passes']} pass(es) each" if c.get("passes") else "")
        for c in corpora
    )
    lines += [
        f"Inputs: {inputs}. Model: {result.get('model')}"
        + (f" ({result['model_note']})" if result.get("model_note") else "")
        + f". Reference: `{result.get('reference')}` on the same corpus in the same run (wall / reference). Ray: a local cluster started and shut down "
        f"by the engine on every pass, {ray['workers']} actors x {ray['cpus_per_worker']:g} CPU x "
        f"{ray['threads_per_worker']} torch thread. A pass is one whole `embed.run` (driver model load, "
        "fingerprints, writing the files included); median over passes (p95 beside the wall). Phases of the Ray "
        "run: cluster start (`ray.init`), actors ready (actors spawned, each loading the model), shards phase "
        "(the rest of the engine), teardown (`ray.shutdown`). Non-compute s/track = (wall - decode+model seconds "
        "/ workers) / tracks, for every engine; Ray scheduling s/track = (shards phase - the shards' decode+model "
        "seconds / workers) / tracks. Worker RSS is a sampled peak (every 0.2 s, psutil): a lower bound.",
        "",
        "| corpus | config | tracks | audio s | wall s p50 | p95 | tracks/s | x real time | wall / reference | cluster "
        "start s | actors ready s | shards phase s | teardown s | shards (per actor; busiest / mean busy) | non-compute s/track | Ray scheduling "
        "s/track | driver peak RSS | workers peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [_config_row(c, corpora[0]["corpus"]) for c in result.get("configs", [])]
    lines.append("")
    pso = result.get("per_shard_overhead_sec")
    if pso is not None:
        lines += [
            f"Per-shard overhead ({corpora[0]['corpus']} corpus, shard 4 vs 32, same run): **{pso * 1000:.0f} ms per extra shard** (the busiest "
            "actor's idle seconds in the shards phase, difference between the two runs over the difference of the "
            "shards it ran).",
            "",
        ]
    inc = result.get("incremental") or {}
    if inc.get("configs"):
        lines += [
            f"Incremental ({corpora[0]['corpus']} corpus): {len(inc.get('changed_ids', []))} tracks rewritten with other audio and "
            f"{len(inc.get('added_ids', []))} added ({inc.get('n_tracks')} tracks), `--incremental --base` the "
            "last full run's folder of the same engine.",
            "",
            "| config | wall s p50 | full run wall s | incremental / full | cluster start s | counts (meta "
            "`incremental`) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        full = {
            c["config"]: c
            for c in result.get("configs", [])
            if c.get("corpus", corpora[0]["corpus"]) == corpora[0]["corpus"]
        }
        for c in inc["configs"]:
            if "wall_sec" not in c:
                lines.append(f"| {c['config']} | {c.get('status')}: {c.get('reason') or ''} |")
                continue
            counts = {k: v for k, v in (c.get("counts") or {}).items() if k not in ("base", "reason")}
            fw = full.get(c.get("full_config"), {}).get("wall_sec")
            lines.append(
                f"| {c['config']} | {_s(c['wall_sec'])} | {_s(fw)} | {_s(c.get('wall_ratio_to_full'))} | "
                f"{_s(c.get('cluster_start_sec'))} | {', '.join(f'{k} {v}' for k, v in counts.items())} |"
            )
        lines.append("")
    for sz in result.get("sizing") or []:
        corpus = sz.get("corpus") or corpora[0]["corpus"]
        mean = f", mean track {sz['mean_track_sec']:.0f} s" if sz.get("mean_track_sec") else ""
        lines += [
            f"Sizing from `{sz['from_config']}` on the {corpus} corpus{mean} — **{sz['label']}**: hours to embed "
            f"{sz['n_tracks']:,} tracks with N Ray workers of 1 CPU, from its measured "
            f"{sz['worker_sec_per_audio_sec']:.4f} worker-seconds (decode + model) per audio second of the "
            f"{corpus} corpus, {sz.get('actors_with_shards')} of {sz.get('workers_measured')} actors "
            "running shards at the same time; the second figure adds the measured overhead "
            f"({_s(sz.get('overhead_per_track_worker_sec'), 4)} worker-s per track: {sz.get('overhead_from')}). "
            f"Assumes {sz['assumes']}.",
            "",
            "| track length | " + " | ".join(f"N={n}" for n in SIZING_WORKERS) + " |",
            "|---|" + "---:|" * len(SIZING_WORKERS),
        ]
        for track_sec in sorted({r["track_sec"] for r in sz["rows"]}):
            cells = [
                f"{_s(r['hours_compute_only'], 1)} h / {_s(r['hours_with_measured_overhead'], 1)} h"
                for r in sz["rows"]
                if r["track_sec"] == track_sec
            ]
            lines.append(f"| {track_sec:.0f} s | " + " | ".join(cells) + " |")
        lines.append("")
    gpu = result.get("gpu") or {}
    if gpu.get("status") == "skipped":
        lines += [f"GPU: not measured ({gpu.get('reason')}), so no GPU row.", ""]
    elif "x_realtime" in gpu:
        lines += [
            f"GPU (measured in this run, `{gpu['config']}` on the {corpora[0]['corpus']} corpus): {_s(gpu['x_realtime'], 1)}x real time, "
            f"{_s(gpu['tracks_per_sec'])} tracks/s -> 1M tracks of 240 s on one GPU: "
            f"{SIZING_TRACKS * SIZING_TRACK_SEC / gpu['x_realtime']['median'] / 3600:.1f} h (extrapolation).",
            "",
        ]
    return "\n".join(lines)
