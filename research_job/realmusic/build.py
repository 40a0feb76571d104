"""Build the real-music corpus: SQLite ``tracks`` + ``labels`` tables and a local object store of the original files.

Layout of ``out_dir``::

    catalogue.sqlite     tracks(track_id, album_id, track_no, title, composer, audio_s3_key, duration_sec)
                         labels(track_id, package, soundtrack, artist, artist_source, license, source_path,
                                evidence)
    store/<key_prefix>/<album_id>/<track_id>.<ext>   each track's file exactly as the package ships it
    build_report.json    packages (version, sha256, downloaded or cached), counts per label, skipped files with
                         their reasons, label conflicts, timings
    cache/               debs/, extracted/ (see :mod:`research_job.realmusic.debs`), probe.json (decode results
                         by file sha256, so that a rerun decodes nothing)

Phases: fetch (apt, only in :func:`build_realmusic_corpus`) -> scan (:func:`~research_job.realmusic.scan.find_audio`)
-> probe (decode every candidate once with PyAV: codec, rate, channels, decoded duration, silence, tags) -> label
-> store -> catalogue -> report. :func:`build_from_trees` runs everything after the fetch on extracted folders,
which is what the tests call. A track shorter than ``min_duration_sec``, silent, or that FFmpeg cannot decode is
skipped with its reason. The catalogue is written atomically (``catalogue.sqlite.tmp``, fsync, rename), objects
through :mod:`research_job.io.atomic`, and objects of an earlier build that the catalogue no longer lists are
removed from the store.

Run: ``python -m research_job.realmusic.build --out .cache/realmusic_corpus [--packages asc-music,...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import os
import sqlite3
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job.errors import AudioDecodeError, ConfigError, ResearchJobError, unknown_choice
from research_job.io.atomic import write_bytes, write_json
from research_job.metadata import unsafe_id_reason
from research_job.provenance import sha256_bytes, sha256_file
from research_job.realmusic import RealMusicError
from research_job.realmusic.debs import fetch_package
from research_job.realmusic.scan import (
    Candidate,
    CopyrightParagraph,
    Skipped,
    TrackLabel,
    check_unique_ids,
    find_audio,
    label_track,
    read_copyright,
    track_id_for,
)
from research_job.realmusic.sources import RECIPES, Recipe

log = logging.getLogger(__name__)

DEFAULT_MIN_DURATION_SEC = 10.0
DEFAULT_KEY_PREFIX = "audio"
#: bump when probe_audio's output changes (invalidates cache/probe.json)
PROBE_VERSION = "2"
TRACK_COLUMNS: tuple[str, ...] = (
    "track_id",
    "album_id",
    "track_no",
    "title",
    "composer",
    "audio_s3_key",
    "duration_sec",
)
LABEL_COLUMNS: tuple[str, ...] = (
    "track_id",
    "package",
    "soundtrack",
    "artist",
    "artist_source",
    "license",
    "source_path",
    "evidence",
)
_CREATE_TRACKS = """
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
_CREATE_LABELS = """
CREATE TABLE labels (
    track_id TEXT PRIMARY KEY,
    package TEXT NOT NULL,
    soundtrack TEXT NOT NULL,
    artist TEXT,
    artist_source TEXT NOT NULL,
    license TEXT,
    source_path TEXT NOT NULL,
    evidence TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Track:
    """One track of the corpus: its catalogue row, its labels, and the file it comes from."""

    track_id: str
    album_id: str
    track_no: int
    key: str
    duration_sec: float
    sha256: str
    size: int
    codec: str
    sample_rate: int
    label: TrackLabel
    candidate: Candidate

    def catalogue_row(self) -> tuple[Any, ...]:
        return (
            self.track_id,
            self.album_id,
            self.track_no,
            self.label.title,
            self.label.artist,
            self.key,
            self.duration_sec,
        )

    def labels_row(self) -> tuple[Any, ...]:
        return (
            self.track_id,
            self.candidate.package,
            self.album_id,
            self.label.artist,
            self.label.artist_source,
            self.label.license,
            self.candidate.logical_path,
            json.dumps(dict(self.label.evidence), ensure_ascii=False, sort_keys=True),
        )


@dataclass(frozen=True)
class RealMusicCorpus:
    """What :func:`build_from_trees` wrote, and where."""

    out_dir: Path
    db_path: Path
    db_url: str  # sqlite:////abs/path/catalogue.sqlite
    store_dir: Path  # the bucket root: object key K lives at store_dir / K
    key_prefix: str
    tracks: tuple[Track, ...]
    skipped: tuple[Skipped, ...]
    report: Mapping[str, Any] = field(default_factory=dict)
    report_path: Path | None = None

    @property
    def n_tracks(self) -> int:
        return len(self.tracks)


class _Timer:
    def __init__(self) -> None:
        self.sec: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        log.info("realmusic: %s ...", name)
        try:
            yield
        finally:
            self.sec[name] = round(self.sec.get(name, 0.0) + time.monotonic() - t0, 3)
            log.info("realmusic: %s done in %.1f s", name, self.sec[name])


# --- probe ------------------------------------------------------------------------------------------------


def probe_audio(data: bytes, name: str) -> dict[str, Any]:
    """Decode ``data`` completely with PyAV (no resampling): codec, rate, channels, duration, silence, tags.

    Tags are the container's and the audio stream's metadata (Ogg keeps Vorbis comments on the stream), keys
    upper-cased, the stream's winning on a clash.

    Raises:
        AudioDecodeError: not a media file, no audio stream, or nothing decodes; names ``name``.
    """
    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{name}: no audio stream")
            stream = container.streams.audio[0]
            tags = {str(k).upper(): str(v) for k, v in container.metadata.items()}
            tags.update({str(k).upper(): str(v) for k, v in stream.metadata.items()})
            seconds = 0.0
            silent = True
            for packet in container.demux(stream):
                for frame in packet.decode():
                    # converting every frame would double the cost; one frame with a non-zero sample is enough
                    if silent and frame.samples and np.any(frame.to_ndarray()):
                        silent = False
                    seconds += frame.samples / float(frame.sample_rate or stream.rate)
            codec = stream.codec_context.name
            rate = int(stream.rate or 0)
            channels = int(stream.codec_context.channels)
    except AudioDecodeError:
        raise
    except Exception as exc:  # FFmpeg raises many kinds on a broken file; each is a reason to skip it
        raise AudioDecodeError(f"{name}: {type(exc).__name__}: {exc}") from exc
    if seconds <= 0:
        raise AudioDecodeError(f"{name}: decodes to no samples")
    return {
        "codec": codec,
        "sample_rate": rate,
        "channels": channels,
        "duration_sec": round(seconds, 4),
        "silent": silent,
        "tags": tags,
    }


def _load_probe_cache(path: Path) -> dict[str, Any]:
    import av

    stamp = {"version": PROBE_VERSION, "pyav": av.__version__}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if {k: data.get(k) for k in stamp} == stamp and isinstance(data.get("entries"), dict):
            return data
    return {**stamp, "entries": {}}


# --- phases -----------------------------------------------------------------------------------------------


def _scan(
    trees: Mapping[str, Path], recipes: Mapping[str, Recipe]
) -> tuple[list[Candidate], list[Skipped], dict[str, list[CopyrightParagraph] | None]]:
    """Candidates and skipped files of every package, and each package's DEP-5 copyright paragraphs."""
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    copyrights: dict[str, list[CopyrightParagraph] | None] = {}
    for name, tree in trees.items():
        found, skip = find_audio(Path(tree), recipes[name])
        candidates += found
        skipped += skip
        copyrights[name] = read_copyright(Path(tree), name)
    return candidates, skipped, copyrights


def _probe_and_label(
    candidates: Sequence[Candidate],
    recipes: Mapping[str, Recipe],
    copyrights: Mapping[str, list[CopyrightParagraph] | None],
    cache: dict[str, Any],
    *,
    min_duration_sec: float,
    key_prefix: str,
    progress: bool,
) -> tuple[list[Track], list[Skipped], int]:
    """Decode (or look up) every candidate, skip the unusable ones, label the rest. Returns tracks, skips, hits."""
    import av

    entries: dict[str, Any] = cache["entries"]
    tracks: list[Track] = []
    skipped: list[Skipped] = []
    hits = 0
    items: Any = candidates
    if progress and candidates:
        from tqdm import tqdm

        items = tqdm(candidates, desc="probe", unit="file", file=sys.stderr)
    for c in items:
        data = c.read_bytes()
        digest = sha256_bytes(data)
        if digest in entries:
            hits += 1
        else:
            try:
                entries[digest] = probe_audio(data, c.logical_path)
            except AudioDecodeError as exc:
                entries[digest] = {"error": str(exc)}
        probe = entries[digest]
        if "error" in probe:
            skipped.append(
                Skipped(
                    c.package,
                    c.logical_path,
                    f"not decodable by FFmpeg (PyAV {av.__version__}): {probe['error']}",
                )
            )
            continue
        if probe["duration_sec"] < min_duration_sec:
            skipped.append(
                Skipped(
                    c.package,
                    c.logical_path,
                    f"too short: {probe['duration_sec']:.2f} s < {min_duration_sec:g} s",
                )
            )
            continue
        if probe["silent"]:
            skipped.append(Skipped(c.package, c.logical_path, "silent: every decoded sample is zero"))
            continue
        recipe = recipes[c.package]
        label = label_track(c, probe["tags"], recipe, copyrights.get(c.package))
        track_id = track_id_for(label.album_id, c)
        for kind, value in (("album id", label.album_id), ("track id", track_id)):
            reason = unsafe_id_reason(value)
            if reason is not None:  # slug() cannot produce one; a guard against a bad recipe
                raise RealMusicError(f"{kind} {value!r} of {c.logical_path} {reason}")
        tracks.append(
            Track(
                track_id=track_id,
                album_id=label.album_id,
                track_no=c.album.track_no if c.album is not None else 0,
                key=f"{key_prefix}/{label.album_id}/{track_id}.{c.ext}",
                duration_sec=float(probe["duration_sec"]),
                sha256=digest,
                size=len(data),
                codec=str(probe["codec"]),
                sample_rate=int(probe["sample_rate"]),
                label=label,
                candidate=c,
            )
        )
    check_unique_ids([(t.track_id, f"{t.candidate.package}:{t.candidate.logical_path}") for t in tracks])
    return _number_tracks(tracks), skipped, hits


def _number_tracks(tracks: Sequence[Track]) -> list[Track]:
    """Sort by album and track; number tracks 1..n per album where no album.json gave a number."""
    ordered = sorted(tracks, key=lambda t: (t.album_id, t.track_no, t.candidate.logical_path))
    out: list[Track] = []
    counters: dict[str, int] = defaultdict(int)
    for t in ordered:
        counters[t.album_id] += 1
        if t.track_no == 0:
            t = dataclasses.replace(t, track_no=counters[t.album_id])
        out.append(t)
    return out


def _write_store(tracks: Sequence[Track], store_dir: Path, key_prefix: str) -> dict[str, int]:
    """Copy each track's original bytes to ``store/<key>`` unless an identical object is there; drop orphans."""
    written = kept = removed = 0
    keep: set[Path] = set()
    for t in tracks:
        dst = store_dir / t.key
        keep.add(dst)
        if dst.is_file() and dst.stat().st_size == t.size and sha256_file(dst) == t.sha256:
            kept += 1
            continue
        data = t.candidate.read_bytes()
        if sha256_bytes(data) != t.sha256:
            raise RealMusicError(
                f"{t.candidate.logical_path} changed on disk while the corpus was being built"
            )
        write_bytes(dst, data)
        written += 1
    prefix_dir = store_dir / key_prefix
    for p in sorted(prefix_dir.rglob("*")) if prefix_dir.is_dir() else []:
        if p.is_file() and p not in keep:
            p.unlink()
            removed += 1
    for d in (
        sorted((p for p in prefix_dir.rglob("*") if p.is_dir()), reverse=True) if prefix_dir.is_dir() else []
    ):
        with contextlib.suppress(OSError):
            d.rmdir()  # only empty album folders go
    return {"written": written, "unchanged": kept, "removed": removed}


def write_catalogue(db_path: Path, tracks: Sequence[Track]) -> None:
    """Write ``tracks`` and ``labels`` to ``db_path`` atomically (built beside it as ``.tmp``, then renamed)."""
    tmp = db_path.with_name(db_path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute(_CREATE_TRACKS)
        con.execute(_CREATE_LABELS)
        con.executemany(
            f"INSERT INTO tracks ({', '.join(TRACK_COLUMNS)}) VALUES ({', '.join('?' * len(TRACK_COLUMNS))})",
            [t.catalogue_row() for t in tracks],
        )
        con.executemany(
            f"INSERT INTO labels ({', '.join(LABEL_COLUMNS)}) VALUES ({', '.join('?' * len(LABEL_COLUMNS))})",
            [t.labels_row() for t in tracks],
        )
        con.commit()
    finally:
        con.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, db_path)


def label_statistics(tracks: Sequence[Track]) -> dict[str, Any]:
    """Counts per package, soundtrack, artist; the soundtracks with several artists and each artist's tracks."""
    per_soundtrack_artist: dict[str, Counter[str]] = defaultdict(Counter)
    for t in tracks:
        per_soundtrack_artist[t.album_id][t.label.artist or "(unknown)"] += 1
    several = {
        s: dict(sorted(c.items()))
        for s, c in sorted(per_soundtrack_artist.items())
        if len([a for a in c if a != "(unknown)"]) >= 2
    }
    artists = Counter(t.label.artist for t in tracks if t.label.artist)
    durations = [t.duration_sec for t in tracks]
    return {
        "n_tracks": len(tracks),
        "n_soundtracks": len(per_soundtrack_artist),
        "n_artists": len(artists),
        "n_unknown_artist": sum(1 for t in tracks if not t.label.artist),
        "tracks_per_package": dict(sorted(Counter(t.candidate.package for t in tracks).items())),
        "tracks_per_soundtrack": dict(sorted(Counter(t.album_id for t in tracks).items())),
        "tracks_per_artist": dict(sorted(artists.items())),
        "artist_sources": dict(sorted(Counter(t.label.artist_source for t in tracks).items())),
        "soundtracks_with_several_artists": several,
        "codec_counts": dict(sorted(Counter(t.codec for t in tracks).items())),
        "sample_rate_counts": {str(k): v for k, v in sorted(Counter(t.sample_rate for t in tracks).items())},
        "total_audio_sec": round(sum(durations), 3),
        "duration_sec": {
            "min": round(min(durations), 3),
            "median": round(statistics.median(durations), 3),
            "max": round(max(durations), 3),
        }
        if durations
        else None,
        "total_bytes": sum(t.size for t in tracks),
    }


# --- entry points -----------------------------------------------------------------------------------------


def build_from_trees(
    trees: Mapping[str, str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    recipes: Mapping[str, Recipe] = RECIPES,
    min_duration_sec: float = DEFAULT_MIN_DURATION_SEC,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    cache_dir: str | os.PathLike[str] | None = None,
    packages_report: Sequence[Mapping[str, Any]] = (),
    timings: Mapping[str, float] | None = None,
    progress: bool = False,
) -> RealMusicCorpus:
    """Build the catalogue and store from extracted packages (``{package name: extracted folder}``).

    Args:
        trees: package name (a key of ``recipes``) -> the folder ``dpkg -x`` wrote.
        out_dir: where to write (see the module docstring).
        recipes: what is known about each package (default: :data:`~research_job.realmusic.sources.RECIPES`).
        min_duration_sec: shorter tracks are skipped as not music.
        key_prefix: first component of every object key.
        cache_dir: where ``probe.json`` lives (default ``out_dir/cache``).
        packages_report: what the fetch did, recorded in the report.
        timings: earlier phases' seconds (the fetch), recorded in the report.
        progress: show a progress bar on stderr.

    Raises:
        ConfigError: an unknown package, a bad option.
        RealMusicError: an unreadable album.json, two files with one id, or no usable track at all.
    """
    t_start = time.monotonic()
    unknown = sorted(set(trees) - set(recipes))
    if unknown:
        raise ConfigError(unknown_choice("package", unknown[0], recipes))
    if not min_duration_sec >= 0:
        raise ConfigError(f"min_duration_sec must be >= 0, got {min_duration_sec}")
    if not key_prefix or key_prefix.strip("/") != key_prefix or ".." in key_prefix.split("/"):
        raise ConfigError(
            f"key_prefix must be a relative key without leading/trailing '/', got {key_prefix!r}"
        )
    out = Path(out_dir).resolve()
    cache = Path(cache_dir).resolve() if cache_dir is not None else out / "cache"
    store_dir = out / "store"
    ordered = {name: Path(trees[name]) for name in recipes if name in trees}
    timer = _Timer()
    timer.sec.update(timings or {})

    with timer.phase("scan"):
        candidates, skipped, copyrights = _scan(ordered, recipes)
    probe_path = cache / "probe.json"
    probe_cache = _load_probe_cache(probe_path)
    with timer.phase("probe and label"):
        tracks, skip, hits = _probe_and_label(
            candidates,
            recipes,
            copyrights,
            probe_cache,
            min_duration_sec=min_duration_sec,
            key_prefix=key_prefix,
            progress=progress,
        )
    write_json(probe_path, probe_cache)
    skipped += skip
    for s in skip:
        log.warning("realmusic: skipped %s %s: %s", s.package, s.path, s.reason)
    if not tracks:
        raise RealMusicError(
            f"No usable track in {', '.join(ordered) or 'no package'} ({len(skipped)} files skipped)"
        )
    with timer.phase("store"):
        store_counts = _write_store(tracks, store_dir, key_prefix)
    db_path = out / "catalogue.sqlite"
    with timer.phase("catalogue"):
        write_catalogue(db_path, tracks)

    stats = label_statistics(tracks)
    timer.sec["build_total"] = round(sum((timings or {}).values()) + time.monotonic() - t_start, 3)
    report = {
        "db_url": f"sqlite:///{db_path}",
        "store_dir": str(store_dir),
        "options": {"min_duration_sec": min_duration_sec, "key_prefix": key_prefix, "cache_dir": str(cache)},
        "packages": list(packages_report)
        or [
            {"name": n, "version": recipes[n].package.version, "sha256": recipes[n].package.sha256}
            for n in ordered
        ],
        **stats,
        "conflicts": [
            {
                "track_id": t.track_id,
                "chosen": t.label.artist_source,
                "disagreeing": list(t.label.conflicts),
                "evidence": dict(t.label.evidence),
            }
            for t in tracks
            if t.label.conflicts
        ],
        "unaliased_artist_tags": sorted(
            {(t.candidate.package, v) for t in tracks for v in t.label.unaliased}
        ),
        "n_skipped": len(skipped),
        "skipped_per_package": dict(sorted(Counter(s.package for s in skipped).items())),
        "skipped": [s.to_dict() for s in sorted(skipped, key=lambda s: (s.package, s.path))],
        "probe_cache_hits": hits,
        "store": store_counts,
        "timings_sec": dict(timer.sec),
    }
    report_path = out / "build_report.json"
    write_json(report_path, report)
    log.info(
        "realmusic: %d tracks, %d soundtracks, %d artists (%d tracks without one), %.0f s of audio, %.0f MB, "
        "%d files skipped, %.1f s",
        stats["n_tracks"],
        stats["n_soundtracks"],
        stats["n_artists"],
        stats["n_unknown_artist"],
        stats["total_audio_sec"],
        stats["total_bytes"] / 1e6,
        len(skipped),
        timer.sec["build_total"],
    )
    return RealMusicCorpus(
        out_dir=out,
        db_path=db_path,
        db_url=f"sqlite:///{db_path}",
        store_dir=store_dir,
        key_prefix=key_prefix,
        tracks=tuple(tracks),
        skipped=tuple(skipped),
        report=report,
        report_path=report_path,
    )


def build_realmusic_corpus(
    out_dir: str | os.PathLike[str],
    *,
    packages: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    min_duration_sec: float = DEFAULT_MIN_DURATION_SEC,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    progress: bool = False,
) -> RealMusicCorpus:
    """Fetch the pinned packages (apt; cached and sha256-checked) and build the corpus from them.

    Args:
        out_dir: where to write.
        packages: a subset of the package names (default: all seven).
        cache_dir: downloads, extracted trees and the probe cache (default ``out_dir/cache``).
        min_duration_sec, key_prefix, progress: as for :func:`build_from_trees`.

    Raises:
        ConfigError: an unknown package name (the message lists the known ones).
        ChecksumError: a download with the wrong sha256.
        RealMusicError: apt or dpkg failed, or see :func:`build_from_trees`.
    """
    names = list(packages) if packages is not None else list(RECIPES)
    for n in names:
        if n not in RECIPES:
            raise ConfigError(unknown_choice("package", n, RECIPES))
    out = Path(out_dir).resolve()
    cache = Path(cache_dir).resolve() if cache_dir is not None else out / "cache"
    t0 = time.monotonic()
    trees: dict[str, Path] = {}
    fetched = []
    for n in names:
        pkg = RECIPES[n].package
        tree, downloaded = fetch_package(pkg, cache)
        log.info("realmusic: %s %s %s", n, pkg.version, "downloaded" if downloaded else "cached")
        trees[n] = tree
        fetched.append(
            {
                "name": n,
                "version": pkg.version,
                "sha256": pkg.sha256,
                "size": pkg.size,
                "downloaded": downloaded,
            }
        )
    return build_from_trees(
        trees,
        out,
        min_duration_sec=min_duration_sec,
        key_prefix=key_prefix,
        cache_dir=cache,
        packages_report=fetched,
        timings={"fetch": round(time.monotonic() - t0, 3)},
        progress=progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m research_job.realmusic.build --out DIR [--packages a,b] [--min-duration-sec 10]``."""
    p = argparse.ArgumentParser(
        prog="python -m research_job.realmusic.build", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--out", required=True, help="output folder (catalogue.sqlite, store/, build_report.json)")
    p.add_argument("--packages", default=None, help=f"comma-separated subset of: {', '.join(RECIPES)}")
    p.add_argument(
        "--cache-dir", default=None, help="downloads, extracted packages, probe cache (default OUT/cache)"
    )
    p.add_argument("--min-duration-sec", type=float, default=DEFAULT_MIN_DURATION_SEC)
    p.add_argument("--key-prefix", default=DEFAULT_KEY_PREFIX)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        corpus = build_realmusic_corpus(
            args.out,
            packages=[s.strip() for s in args.packages.split(",") if s.strip()] if args.packages else None,
            cache_dir=args.cache_dir,
            min_duration_sec=args.min_duration_sec,
            key_prefix=args.key_prefix,
            progress=sys.stderr.isatty(),
        )
    except ResearchJobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(corpus.db_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
