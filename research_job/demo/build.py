"""Build the embedded demo catalogue: a SQLite ``tracks`` table plus a local object store of real audio files.

Layout of ``out_dir``::

    catalogue.sqlite                         table tracks(track_id, album_id, track_no, title, composer,
                                                           audio_s3_key, duration_sec)
                                             table listening_events(user_id, track_id, event, ts, duration_sec,
                                                           origin): a seeded synthetic log (demo/listening.py)
    store/<key_prefix>/<album_id>/<track_id>.<ext>   the objects, laid out like an S3 bucket (store = bucket root)
    build_report.json                        what was built: options, counts, codec mix, timings, skipped works
    cache/midi/<track_id>-<hash>.mid         music21's MIDI of each work (clip-length cut), reused across renderings
    cache/audio/<track_id>-<hash>.<ext>      the encoded track; ``.json`` beside it marks it complete

Each work is converted in its own forked process (at most ``workers`` at a time) with a wall-clock timeout;
a work that fails or times out is skipped and reported, never silently dropped. A rerun with the same options
finds every track in the cache and only rewrites the catalogue. Everything is written atomically (tmp + fsync +
rename), the SQLite file included.

Run: ``python -m research_job.demo.build --out DIR [--n-tracks N] [--rendering piano]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job.demo import DemoCorpusError, RenderError
from research_job.demo.corpus import ALIASES_PATH, Work, composer_strings, corpus_root, select_works
from research_job.demo.encode import CODEC_ORDER, encode_audio
from research_job.demo.listening import LISTENING_COLUMNS, generate_listening
from research_job.demo.render import RENDERINGS, clean_midi, render_waveform, resolve_synth, score_to_midi
from research_job.errors import ConfigError, ResearchJobError, unknown_choice
from research_job.io.atomic import write_bytes, write_json

log = logging.getLogger(__name__)

AAC_FRAME = 1024
DEFAULT_N_TRACKS = 128
DEFAULT_CLIP_SEC = 30.0
DEFAULT_SAMPLE_RATE = 22050
DEFAULT_KEY_PREFIX = "audio"
DEFAULT_WORK_TIMEOUT_SEC = 180.0
#: Bump when score -> MIDI changes (invalidates cache/midi) or MIDI -> encoded audio changes (cache/audio).
MIDI_CACHE_VERSION = "1"
CACHE_VERSION = "3"
TRACK_COLUMNS: tuple[str, ...] = (
    "track_id",
    "album_id",
    "track_no",
    "title",
    "composer",
    "audio_s3_key",
    "duration_sec",
)
_CREATE_TABLE = """
CREATE TABLE tracks (
    track_id TEXT,
    album_id TEXT,
    track_no INTEGER,
    title TEXT,
    composer TEXT,
    audio_s3_key TEXT,
    duration_sec REAL
)
"""
_CREATE_LISTENING = """
CREATE TABLE listening_events (
    user_id TEXT,
    track_id TEXT,
    event TEXT,
    ts TEXT,
    duration_sec REAL,
    origin TEXT
)
"""


@dataclass(frozen=True)
class DemoCorpus:
    """What :func:`build_demo_corpus` wrote, and where."""

    out_dir: Path
    db_path: Path
    db_url: str  # sqlite:////abs/path/catalogue.sqlite
    store_dir: Path  # the bucket root: object key K lives at store_dir / K
    key_prefix: str
    n_tracks: int
    n_composers: int  # distinct named composers (the NULL-composer tracks not counted)
    n_albums: int
    n_null_composer: int
    rendering: str
    synth: str
    total_audio_sec: float
    total_bytes: int
    codec_counts: Mapping[str, int] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()  # (track_id, reason)
    cache_hits: int = 0
    elapsed_sec: float = 0.0
    report_path: Path | None = None


@dataclass(frozen=True)
class _Job:
    work: Work
    ext: str
    midi_path: Path
    audio_path: Path
    meta_path: Path


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:12]


def assign_codecs(works: Sequence[Work]) -> list[str]:
    """The file extension of each work: :data:`CODEC_ORDER` in rotation over the (composer-sorted) works.

    Every codec appears once there are 5 tracks, and since a composer's tracks are contiguous in the sorted
    order, each composer gets a balanced mix (counts differ by at most one), so the codec cannot become a
    proxy for the composer.
    """
    return [CODEC_ORDER[i % len(CODEC_ORDER)] for i in range(len(works))]


def _convert(
    job: _Job, *, rendering: str, synth: str, clip_sec: float, sample_rate: int, timeout_s: float
) -> dict:
    """Score -> MIDI (cached) -> waveform -> encoded file + sidecar in the cache. Runs in a worker process."""
    import pretty_midi

    t0 = time.monotonic()
    work_name = f"{job.work.track_id} ({job.work.corpus_path})"
    if not job.midi_path.is_file():
        score_to_midi(corpus_root() / job.work.corpus_path, job.midi_path, clip_sec=clip_sec)
    t_midi = time.monotonic() - t0
    try:
        pm = pretty_midi.PrettyMIDI(str(job.midi_path))
    except Exception as exc:
        raise RenderError(f"Cannot read the MIDI of {work_name}: {exc}") from exc
    pm, dropped = clean_midi(pm, clip_sec=clip_sec, rendering=rendering)
    mono = render_waveform(
        pm, synth=synth, sample_rate=sample_rate, clip_sec=clip_sec, work=work_name, timeout_s=timeout_s
    )
    # whole AAC frames: padded with silence here, every codec decodes to exactly the catalogued length
    mono = np.pad(mono, (0, -mono.size % AAC_FRAME))
    data = encode_audio(mono, sample_rate, job.ext)
    write_bytes(job.audio_path, data)
    meta = {
        "track_id": job.work.track_id,
        "duration_sec": round(mono.size / sample_rate, 4),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "dropped_zero_length_notes": dropped,
        "instruments": sorted({int(i.program) for i in pm.instruments}),
        "midi_sec": round(t_midi, 3),
        "total_sec": round(time.monotonic() - t0, 3),
    }
    write_json(job.meta_path, meta)  # written last: its presence marks the cache entry complete
    return meta


def _child(conn: Any, job: _Job, kwargs: dict) -> None:
    # Own process group, so that a timeout kills FluidSynth along with this worker.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    try:
        conn.send(("ok", _convert(job, **kwargs)))
    except ResearchJobError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:  # report anything; the parent decides
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _kill_group(proc: Any) -> None:
    if proc.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.join()


def run_jobs(
    jobs: Sequence[_Job], *, workers: int, work_timeout_s: float, convert_kwargs: dict, progress: bool = False
) -> tuple[dict[str, dict], dict[str, str]]:
    """Convert ``jobs`` in forked processes, ``workers`` at a time, each under ``work_timeout_s`` seconds.

    Returns ``(results by track_id, failure reason by track_id)``. A timed-out worker is killed with its
    process group; its failure reason names the work and the limit.
    """
    ctx = multiprocessing.get_context("fork")
    pending = list(jobs)
    # connection -> (worker process, job, start time); typed loosely, the fork context's classes differ by OS
    running: dict[Any, tuple[Any, _Job, float]] = {}
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    bar = None
    if progress and jobs:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="render", unit="track", file=sys.stderr)
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(child, job, convert_kwargs), daemon=True)
                proc.start()
                child.close()
                running[parent] = (proc, job, time.monotonic())
            now = time.monotonic()
            nearest = min(start + work_timeout_s for _, _, start in running.values())
            ready: list[Any] = multiprocessing.connection.wait(
                list(running), timeout=max(0.0, min(nearest - now, 1.0))
            )
            for conn in ready:  # the Connection objects of `running`
                proc, job, _ = running.pop(conn)
                try:
                    status, payload = conn.recv()
                except EOFError:
                    status, payload = "error", "worker process died without a result"
                conn.close()
                proc.join()
                if status == "ok":
                    results[job.work.track_id] = payload
                else:
                    failures[job.work.track_id] = payload
                if bar is not None:
                    bar.update(1)
            now = time.monotonic()
            for conn, (proc, job, start) in list(running.items()):
                if now - start > work_timeout_s:
                    _kill_group(proc)
                    conn.close()
                    del running[conn]
                    failures[job.work.track_id] = (
                        f"timed out after {work_timeout_s:g} s converting {job.work.track_id} "
                        f"({job.work.corpus_path})"
                    )
                    if bar is not None:
                        bar.update(1)
    finally:
        for conn, (proc, _, _) in running.items():
            _kill_group(proc)
            conn.close()
        if bar is not None:
            bar.close()
    return results, failures


def _write_sqlite(
    db_path: Path, rows: Sequence[tuple[Any, ...]], listening: Sequence[tuple[Any, ...]] = ()
) -> None:
    """Write the catalogue (and the listening log) to ``db_path`` atomically (a complete file is built beside
    it, then renamed)."""
    tmp = db_path.with_name(db_path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    con = sqlite3.connect(tmp)
    try:
        con.execute(_CREATE_TABLE)
        con.executemany(f"INSERT INTO tracks ({', '.join(TRACK_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute(_CREATE_LISTENING)
        con.executemany(
            f"INSERT INTO listening_events ({', '.join(LISTENING_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            listening,
        )
        con.commit()
    finally:
        con.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, db_path)


def _listening_log(jobs: Sequence[_Job], rows: Sequence[tuple[Any, ...]], seed: int) -> list[tuple[Any, ...]]:
    """The seeded synthetic listening log over the catalogue's tracks (table ``listening_events``)."""
    composer_of = {j.work.track_id: j.work.composer_key for j in jobs}
    tracks = [(r[0], composer_of[r[0]]) for r in rows]
    return list(generate_listening(tracks, durations={r[0]: r[6] for r in rows}, seed=seed).rows)


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return
    write_bytes(dst, src.read_bytes())


@dataclass(frozen=True)
class _Options:
    """The checked options of one build; its fields, in this order, are ``options`` in build_report.json."""

    n_tracks: int
    rendering: str
    max_clip_sec: float
    seed: int
    workers: int
    composers: list[str] | None
    synth: str  # the resolved kind: fluidsynth | additive
    synth_id: str  # the kind, plus the SoundFont's path and size for FluidSynth (part of the cache key)
    sample_rate: int
    key_prefix: str
    work_timeout_s: float


@dataclass(frozen=True)
class _Rendered:
    """What the render phase left: the sidecar metadata of every track that has audio, and what failed."""

    results: dict[str, dict]  # by track_id, cached and fresh
    failures: dict[str, str]  # reason by track_id
    cache_hits: int
    rendered: int
    render_sec: float


@dataclass(frozen=True)
class _Tally:
    """Counts over the catalogue rows, for build_report.json and the returned :class:`DemoCorpus`."""

    n_tracks: int
    n_composers: int  # distinct named composers
    n_albums: int
    n_null_composer: int
    codec_counts: dict[str, int]  # the dicts sorted by key
    tracks_per_composer: dict[str, int]
    tracks_per_album: dict[str, int]
    total_audio_sec: float
    total_bytes: int
    dropped_zero_length_notes: int


def build_demo_corpus(
    out_dir: str | os.PathLike[str],
    *,
    n_tracks: int = DEFAULT_N_TRACKS,
    rendering: str = "ensemble",
    max_clip_sec: float = DEFAULT_CLIP_SEC,
    seed: int = 0,
    workers: int | None = None,
    composers: Sequence[str] | None = None,
    synth: str = "auto",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    work_timeout_s: float = DEFAULT_WORK_TIMEOUT_SEC,
    progress: bool = False,
) -> DemoCorpus:
    """Render ``n_tracks`` works of the music21 corpus and write the SQLite catalogue and the object store.

    Args:
        out_dir: folder to write (created); see the module docstring for its layout.
        n_tracks: how many tracks (default 128: 10 named composers, 32 albums).
        rendering: ``ensemble`` (the score's instruments, piano where none) or ``piano`` (every part on an
            acoustic grand piano: the control against instrumentation leaking the composer).
        max_clip_sec: clip length, from the first note.
        seed: seeds the choice of chorales and masses; same seed and options -> same catalogue rows.
        workers: parallel conversions (default: CPU count, at most 4).
        composers: restrict to these composer keys (see ``corpus.COMPOSER_KEYS``), e.g. for tests.
        synth: ``auto`` (FluidSynth when installed, else additive), ``fluidsynth`` or ``additive``.
        sample_rate: render rate in Hz.
        key_prefix: first component of every object key.
        work_timeout_s: wall-clock limit per work (parse + render + encode); slower works are skipped.
        progress: show a progress bar on stderr.

    Raises:
        ConfigError: a bad option (the message lists the valid values).
        DemoCorpusError: no work could be rendered.
    """
    t_start = time.monotonic()
    opts = _check_options(
        n_tracks=n_tracks,
        rendering=rendering,
        max_clip_sec=max_clip_sec,
        seed=seed,
        workers=workers,
        composers=composers,
        synth=synth,
        sample_rate=sample_rate,
        key_prefix=key_prefix,
        work_timeout_s=work_timeout_s,
    )
    out = Path(out_dir).resolve()
    works = select_works(n_tracks, seed=seed, composers=composers)
    jobs = _plan_jobs(works, out / "cache", opts)
    done = _render_tracks(jobs, opts, progress=progress)
    store_dir = out / "store"
    rows = _write_store(jobs, works, done.results, store_dir, key_prefix)
    db_path = out / "catalogue.sqlite"
    _write_sqlite(db_path, rows, _listening_log(jobs, rows, seed))
    return _report(out, db_path, store_dir, opts, jobs, rows, done, t_start)


def _check_options(
    *,
    n_tracks: int,
    rendering: str,
    max_clip_sec: float,
    seed: int,
    workers: int | None,
    composers: Sequence[str] | None,
    synth: str,
    sample_rate: int,
    key_prefix: str,
    work_timeout_s: float,
) -> _Options:
    """Check the options (:class:`ConfigError` naming the bad one), fill in ``workers``, resolve the synth."""
    if rendering not in RENDERINGS:
        raise ConfigError(unknown_choice("rendering", rendering, RENDERINGS))
    if not max_clip_sec > 0:
        raise ConfigError(f"max_clip_sec must be > 0, got {max_clip_sec}")
    if sample_rate not in (16000, 22050, 24000, 32000, 44100, 48000):
        raise ConfigError(
            f"Unsupported sample_rate {sample_rate}. Known: 16000, 22050, 24000, 32000, 44100, 48000"
        )
    if not key_prefix or key_prefix.strip("/") != key_prefix or ".." in key_prefix.split("/"):
        raise ConfigError(
            f"key_prefix must be a relative key without leading/trailing '/', got {key_prefix!r}"
        )
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    synth_kind = resolve_synth(synth)
    synth_id = synth_kind
    if synth_kind == "fluidsynth":
        from research_job.demo.render import find_soundfont

        sf = find_soundfont()
        synth_id = f"fluidsynth:{sf}:{sf.stat().st_size if sf else 0}"
    return _Options(
        n_tracks=n_tracks,
        rendering=rendering,
        max_clip_sec=max_clip_sec,
        seed=seed,
        workers=workers,
        composers=list(composers) if composers is not None else None,
        synth=synth_kind,
        synth_id=synth_id,
        sample_rate=sample_rate,
        key_prefix=key_prefix,
        work_timeout_s=work_timeout_s,
    )


def _plan_jobs(works: Sequence[Work], cache: Path, opts: _Options) -> list[_Job]:
    """One job per selected score: its codec and its cache files, keyed on everything that shapes them."""
    exts = assign_codecs(works)
    import music21
    import pretty_midi  # noqa: F401 - imported before the workers fork, so that each inherits it

    jobs = []
    for w, ext in zip(works, exts, strict=True):
        midi_key = _hash(MIDI_CACHE_VERSION, w.corpus_path, music21.__version__, opts.max_clip_sec)
        audio_key = _hash(
            CACHE_VERSION, midi_key, opts.rendering, opts.synth_id, opts.sample_rate, ext, opts.max_clip_sec
        )
        base = cache / "audio" / f"{w.track_id}-{audio_key}"
        jobs.append(
            _Job(
                w,
                ext,
                cache / "midi" / f"{w.track_id}-{midi_key}.mid",
                base.with_name(base.name + f".{ext}"),
                base.with_name(base.name + ".json"),
            )
        )
    return jobs


def _from_cache(jobs: Sequence[_Job]) -> tuple[dict[str, dict], list[_Job]]:
    """The sidecars of the jobs complete in the cache (by track_id), and the jobs still to convert."""
    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        if job.meta_path.is_file() and job.audio_path.is_file():
            meta = json.loads(job.meta_path.read_text())
            if meta.get("bytes") == job.audio_path.stat().st_size:
                results[job.work.track_id] = meta
                continue
        todo.append(job)
    return results, todo


def _render_tracks(jobs: Sequence[_Job], opts: _Options, *, progress: bool) -> _Rendered:
    """Score -> MIDI -> waveform -> encoded file for each job the cache lacks, in worker processes.

    Raises:
        DemoCorpusError: no track has audio (the message shows the first failure).
    """
    results, todo = _from_cache(jobs)
    cache_hits = len(results)
    log.info("demo corpus: %d tracks planned, %d cached, %d to render", len(jobs), cache_hits, len(todo))
    t_render = time.monotonic()
    fresh, failures = run_jobs(
        todo,
        workers=opts.workers,
        work_timeout_s=opts.work_timeout_s,
        convert_kwargs={
            "rendering": opts.rendering,
            "synth": opts.synth,
            "clip_sec": opts.max_clip_sec,
            "sample_rate": opts.sample_rate,
            # FluidSynth's own limit stays below the worker's so the worker reports it itself
            "timeout_s": max(1.0, 0.8 * opts.work_timeout_s),
        },
        progress=progress,
    )
    results.update(fresh)
    render_sec = time.monotonic() - t_render
    for track_id, reason in sorted(failures.items()):
        log.warning("demo corpus: skipped %s: %s", track_id, reason)
    if not results:
        raise DemoCorpusError(
            f"No work of the demo corpus could be rendered ({len(failures)} failed); first failure: "
            f"{next(iter(sorted(failures.items())), ('-', '-'))}"
        )
    return _Rendered(results, failures, cache_hits, len(fresh), render_sec)


def _write_store(
    jobs: Sequence[_Job], works: Sequence[Work], results: Mapping[str, dict], store_dir: Path, key_prefix: str
) -> list[tuple[Any, ...]]:
    """Put each rendered track in the store under its object key, remove objects no row names; the rows."""
    raw_composers = composer_strings(works)
    rows = []
    keep: set[Path] = set()
    for job, raw in zip(jobs, raw_composers, strict=True):
        w = job.work
        if w.track_id not in results:
            continue
        key = f"{key_prefix}/{w.album_id}/{w.track_id}.{job.ext}"
        dst = store_dir / key
        _copy_if_changed(job.audio_path, dst)
        keep.add(dst)
        rows.append(
            (
                w.track_id,
                w.album_id,
                w.track_no,
                w.title,
                raw,
                key,
                float(results[w.track_id]["duration_sec"]),
            )
        )
    # objects of an earlier, different build would be orphans the catalogue does not mention
    prefix_dir = store_dir / key_prefix
    for p in sorted(prefix_dir.rglob("*")) if prefix_dir.is_dir() else []:
        if p.is_file() and p not in keep:
            p.unlink()
    return rows


def _tally(jobs: Sequence[_Job], rows: Sequence[tuple[Any, ...]], results: Mapping[str, dict]) -> _Tally:
    """Count the catalogue rows by codec, composer and album; total their audio and bytes."""
    by_track = {j.work.track_id: j for j in jobs}
    codec_counts = Counter(by_track[r[0]].ext for r in rows)
    composer_counts = Counter(by_track[r[0]].work.composer_key for r in rows)
    album_counts = Counter(r[1] for r in rows)
    return _Tally(
        n_tracks=len(rows),
        n_composers=len({by_track[r[0]].work.composer_key for r in rows if r[4] is not None}),
        n_albums=len(album_counts),
        n_null_composer=sum(1 for r in rows if r[4] is None),
        codec_counts=dict(sorted(codec_counts.items())),
        tracks_per_composer=dict(sorted(composer_counts.items())),
        tracks_per_album=dict(sorted(album_counts.items())),
        total_audio_sec=sum(r[6] for r in rows),
        total_bytes=sum(int(results[r[0]]["bytes"]) for r in rows),
        dropped_zero_length_notes=sum(int(results[r[0]]["dropped_zero_length_notes"]) for r in rows),
    )


def _report(
    out: Path,
    db_path: Path,
    store_dir: Path,
    opts: _Options,
    jobs: Sequence[_Job],
    rows: Sequence[tuple[Any, ...]],
    done: _Rendered,
    t_start: float,
) -> DemoCorpus:
    """Write build_report.json, log its summary, and describe the corpus built."""
    tally = _tally(jobs, rows, done.results)
    elapsed = time.monotonic() - t_start
    report_path = out / "build_report.json"
    write_json(
        report_path, _report_json(opts, tally, done, db_path=db_path, store_dir=store_dir, elapsed=elapsed)
    )
    log.info(
        "demo corpus: %d tracks, %d composers, %d albums, %.0f s audio, %.1f MB in %.1f s (%d cached, %d skipped)",
        tally.n_tracks,
        tally.n_composers,
        tally.n_albums,
        tally.total_audio_sec,
        tally.total_bytes / 1e6,
        elapsed,
        done.cache_hits,
        len(done.failures),
    )
    return DemoCorpus(
        out_dir=out,
        db_path=db_path,
        db_url=f"sqlite:///{db_path}",
        store_dir=store_dir,
        key_prefix=opts.key_prefix,
        n_tracks=tally.n_tracks,
        n_composers=tally.n_composers,
        n_albums=tally.n_albums,
        n_null_composer=tally.n_null_composer,
        rendering=opts.rendering,
        synth=opts.synth,
        total_audio_sec=tally.total_audio_sec,
        total_bytes=tally.total_bytes,
        codec_counts=dict(tally.codec_counts),
        skipped=tuple(sorted(done.failures.items())),
        cache_hits=done.cache_hits,
        elapsed_sec=elapsed,
        report_path=report_path,
    )


def _report_json(
    opts: _Options, tally: _Tally, done: _Rendered, *, db_path: Path, store_dir: Path, elapsed: float
) -> dict[str, Any]:
    """The content of build_report.json."""
    return {
        "options": asdict(opts),
        "db_url": f"sqlite:///{db_path}",
        "store_dir": str(store_dir),
        "aliases_file": str(ALIASES_PATH),
        "n_tracks": tally.n_tracks,
        "n_composers": tally.n_composers,
        "n_albums": tally.n_albums,
        "n_null_composer": tally.n_null_composer,
        "codec_counts": tally.codec_counts,
        "tracks_per_composer": tally.tracks_per_composer,
        "tracks_per_album": tally.tracks_per_album,
        "total_audio_sec": round(tally.total_audio_sec, 3),
        "total_bytes": tally.total_bytes,
        "dropped_zero_length_notes": tally.dropped_zero_length_notes,
        "cache_hits": done.cache_hits,
        "rendered": done.rendered,
        "skipped": [{"track_id": t, "reason": r} for t, r in sorted(done.failures.items())],
        "render_sec": round(done.render_sec, 3),
        "elapsed_sec": round(elapsed, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m research_job.demo.build --out DIR [--n-tracks N] [--rendering piano] ...``."""
    p = argparse.ArgumentParser(prog="python -m research_job.demo.build", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder (catalogue.sqlite, store/, cache/)")
    p.add_argument("--n-tracks", type=int, default=DEFAULT_N_TRACKS)
    p.add_argument("--rendering", choices=RENDERINGS, default="ensemble")
    p.add_argument("--max-clip-sec", type=float, default=DEFAULT_CLIP_SEC)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--synth", default="auto", help="auto | fluidsynth | additive")
    p.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE)
    p.add_argument("--key-prefix", default=DEFAULT_KEY_PREFIX)
    p.add_argument("--work-timeout-s", type=float, default=DEFAULT_WORK_TIMEOUT_SEC)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        corpus = build_demo_corpus(
            args.out,
            n_tracks=args.n_tracks,
            rendering=args.rendering,
            max_clip_sec=args.max_clip_sec,
            seed=args.seed,
            workers=args.workers,
            synth=args.synth,
            sample_rate=args.sample_rate,
            key_prefix=args.key_prefix,
            work_timeout_s=args.work_timeout_s,
            progress=sys.stderr.isatty(),
        )
    except ResearchJobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(corpus.db_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
