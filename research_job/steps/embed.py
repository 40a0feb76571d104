"""embed: standardised audio -> ``embeddings/embeddings.f32`` + ``track_ids.json`` + ``embeddings_meta.json``.

Per track: load the standardised waveform, run the encoder (pooled vector), reject silent / near-zero / non-finite
results (recorded in ``failures``, never written as a row), then fit the optional corpus post-processing and
L2-normalise (:mod:`research_job.embeddings`). Rows follow the metadata CSV order, so a rerun yields identical
bytes.

Two engines produce the same rows and failures: inline (this process, optionally decoding ahead in a thread)
and ``processes > 1`` worker processes (CPU only), whose results are committed in submission order; the workers
die with the embed process, however it ends (``kill -9`` included, :func:`_die_with_parent`). A track whose files
cannot be read (any ``OSError``) fails alone, stage ``decode``.

Tags: when the model is a tagger too (:func:`research_job.models.base.tag_blocks_of`: musicnn and fusions of
musicnn checkpoints), its ``taggram`` layer is asked for in the same forward pass and each track's mean tag
probabilities are written to ``embeddings/tags.f32`` + ``tags.json`` (:mod:`research_job.tags`), rows in
``track_ids.json`` order; a model without tags removes earlier tag files.

Resume: finished tracks are checkpointed to ``embeddings/partial/`` every ``checkpoint_every`` tracks (a
``chunk_NNNNN.npy`` of raw pooled vectors, then its ``chunk_NNNNN.json`` of ids and failures as the commit
marker). ``partial/spec.json`` records the model spec and info; a different model discards the checkpoints.
"""

from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from research_job import schema
from research_job.augment import CHAINS, describe
from research_job.config import CommonConfig, check_choices, option
from research_job.embed_ray import RaySettings, embed_on_ray
from research_job.embed_work import (
    POSTPROCESS_REASON,
    STAT_KEYS,
    TRACK_ERRORS,
    Checkpoints,
    FrameSpec,
    _forward,  # noqa: F401 - re-exported: tests reach the shared work through the step
    check_frame_encoder,
    checked_wave,
    checkpoint_spec,
    embed_kept,
    embed_rows,
    failure_entry,
)
from research_job.embeddings import (
    DEFAULT_POSTPROCESS,
    MIN_NORM,
    POSTPROCESS,
    l2_normalize,
    postprocess_corpus,
    write_embeddings,
)
from research_job.errors import ArtifactError, ConfigError, ResearchJobError
from research_job.incremental import Plan, same_model, write_sources
from research_job.incremental import plan as plan_incremental
from research_job.io.prefetch import Loaded, prefetched
from research_job.io.track_audio import TrackAudio, reader_for
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.models.base import Encoder, FrameEncoder, tag_blocks_of
from research_job.provenance import sha256_file
from research_job.steps import Step

LOG = logging.getLogger(__name__)

#: where the embed step can run (``local``: this process or ``processes`` worker processes)
ENGINES = ("local", "ray")

#: ``processes = 0`` (auto) starts workers only for at least this many tracks to embed: on the 2-core VM, the
#: default fusion on 64 demo tracks ran at 57.7x / 58.4x real time with 2 single-thread workers against 50.2x /
#: 51.4x in this process with 2 threads (alternating runs, worker start-up included); below that the ~5 s start-up
#: eats the gain
AUTO_MIN_TRACKS = 64
#: and at most this many: each worker holds its own copy of the model (and of torch's runtime)
AUTO_MAX_PROCESSES = 8


@dataclass(frozen=True)
class EmbedConfig:
    """embed: standardised audio -> embeddings/embeddings.f32 + track_ids.json + embeddings_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    device: str = option("cpu", "torch device of the model: cpu, cuda, cuda:N, mps or auto")
    batch_size: int = option(8, "tracks per call of the model")
    #: On 2 cores, where torch already uses both, 8 ahead was within noise of inline for musicnn-msd (-3.6 % and
    #: +1.4 % in two quiet runs); it pays with spare cores or slow storage
    decode_ahead: int = option(0, "tracks a background thread decodes ahead while the model runs; 0 = inline")
    #: not called ``workers``, whose environment variable the download steps share. Start-up costs ~3-5 s
    #: (spawn, import torch, load the weights), so auto waits for a run of AUTO_MIN_TRACKS; see bench/findings.md
    processes: int = option(
        0,
        "worker processes, each with its own model copy (CPU only); 1 = this process; 0 = auto: one per usable "
        f"CPU (at most {AUTO_MAX_PROCESSES}) when at least {AUTO_MIN_TRACKS} tracks are to be embedded on CPU by the local engine without "
        "decode_ahead, else this process",
    )
    threads_per_process: int | None = option(
        None, "torch threads per worker process; unset = usable CPUs // processes (at least 1)"
    )
    checkpoint_every: int = option(
        16, "commit partial results every this many tracks (an interrupted run resumes)"
    )
    engine: str = option(
        "local",
        "where the tracks are embedded: local (this process, or `processes` worker processes) or ray (an actor "
        "pool on a Ray cluster, in shards)",
        choices=ENGINES,
    )
    ray_address: str | None = option(
        None,
        "engine ray: the cluster to join (host:port of `ray start --head`, ray://host:10001, or auto); unset = "
        "$RAY_ADDRESS when set (a RayJob, `ray job submit`), else a local cluster started for the run",
    )
    ray_workers: int = option(2, "engine ray: actors, each with its own model copy")
    ray_cpus_per_worker: float = option(1.0, "engine ray: CPUs Ray reserves for each actor")
    ray_threads_per_worker: int | None = option(
        None, "engine ray: torch threads of each actor; unset = its CPUs, rounded up"
    )
    ray_gpus_per_worker: float = option(0.0, "engine ray: GPUs of each actor (needs device cuda or auto)")
    shard_size: int = option(32, "engine ray: tracks per work unit; each finished shard is one checkpoint")
    shard_attempts: int = option(
        3, "engine ray: dead workers a shard survives before its tracks are tried one by one, then failed"
    )
    stream_from: str = option(
        "",
        "read each track straight from this object store (s3://bucket/prefix or a folder used as one), fetched "
        "and decoded by the worker like pull-audio + standardize-audio; unset = the version folder's audio",
    )
    stream_endpoint_url: str | None = option(
        None, "with stream_from: S3-compatible endpoint (MinIO, moto, ...); unset = AWS"
    )
    stream_region: str | None = option(
        None, "with stream_from: AWS region; unset = from the standard AWS configuration"
    )
    stream_aws_profile: str | None = option(
        None,
        "with stream_from: AWS profile; unset = the standard credential chain (env, files, instance role)",
    )
    stream_timeout_sec: float = option(
        60.0, "with stream_from: connect/read timeout of each S3 request, seconds"
    )
    stream_max_duration_sec: float | None = option(
        None,
        "with stream_from: decode at most this many seconds of each track (as standardize-audio's); unset = all",
    )
    incremental: bool = option(
        False,
        "copy the rows of --base whose audio (size + ETag or sha256) and model are unchanged; embed only new "
        "and changed tracks; drop removed ones",
    )
    base: Path | None = option(None, "with --incremental: the previous version folder to copy rows from")
    postprocess: str = option(
        DEFAULT_POSTPROCESS,
        "corpus post-processing before the L2 norm (fitted on this corpus, applied to queries); center removes "
        "the corpus mean (fewer hubs), none keeps the model's vectors",
        choices=POSTPROCESS,
    )
    frames: str | None = option(
        None,
        "also keep these layers' per-frame features (comma-separated, e.g. penultimate) for train-head; unset = off",
    )
    views: int = option(
        0, "seeded augmented excerpts per track whose frames are kept too (needs --frames); 0 = none"
    )
    view_sec: float = option(30.0, "length of each augmented view's excerpt, seconds")
    view_chain: str = option("train", "augmentation of the views (research_job.augment)", choices=CHAINS)
    view_seed: int = option(0, "seed of the views' excerpts and augmentation")

    @property
    def frame_layers(self) -> tuple[str, ...]:
        """The layers named by ``frames`` (empty: no frames)."""
        return tuple(x.strip() for x in (self.frames or "").split(",") if x.strip())


def check(cfg: EmbedConfig) -> None:
    """Refuse counts and combinations that cannot run, before anything is read.

    Raises:
        ConfigError: naming the bad value (and, for a bad combination, what to set instead).
    """
    check_choices(cfg)
    if cfg.batch_size < 1 or cfg.checkpoint_every < 1:
        raise ConfigError(
            f"batch_size and checkpoint_every must be >= 1, got {cfg.batch_size}, {cfg.checkpoint_every}"
        )
    if cfg.decode_ahead < 0:
        raise ConfigError(f"decode_ahead must be >= 0 (0 = decode inline), got {cfg.decode_ahead}")
    if cfg.processes < 0:
        raise ConfigError(
            f"processes must be >= 0 (0 = auto, 1 = embed in this process, N = N workers), got {cfg.processes}"
        )
    if cfg.threads_per_process is not None and cfg.threads_per_process < 1:
        raise ConfigError(f"threads_per_process must be >= 1 or unset, got {cfg.threads_per_process}")
    if cfg.processes > 1:
        if cfg.device != "cpu":
            raise ConfigError(
                f"processes = {cfg.processes} needs device 'cpu' (got {cfg.device!r}): one accelerator is driven by one "
                "process; set processes: 1"
            )
        if cfg.decode_ahead:
            raise ConfigError(
                f"decode_ahead = {cfg.decode_ahead} applies to processes = 1 only (each worker decodes its own tracks)"
            )
    if cfg.views < 0 or (cfg.views and not cfg.frame_layers):
        raise ConfigError(f"views = {cfg.views} needs >= 0 and frames set (the views keep frames only)")
    if cfg.views and not cfg.view_sec > 0:
        raise ConfigError(f"view_sec must be > 0, got {cfg.view_sec}")
    if cfg.frames is not None and not cfg.frame_layers:
        raise ConfigError(f"frames {cfg.frames!r} names no layer; e.g. --frames penultimate")
    if cfg.engine == "ray":
        if cfg.processes > 1 or cfg.decode_ahead:
            raise ConfigError(
                f"engine ray runs its own workers (ray_workers); processes = {cfg.processes} and decode_ahead = "
                f"{cfg.decode_ahead} apply to engine local only: set processes: 1, decode_ahead: 0"
            )
        ray_settings(cfg).check()
        if cfg.ray_gpus_per_worker > 0 and cfg.device == "cpu":
            raise ConfigError(
                f"ray_gpus_per_worker = {cfg.ray_gpus_per_worker} needs device cuda or auto (got 'cpu')"
            )
    if cfg.stream_timeout_sec <= 0 or (
        cfg.stream_max_duration_sec is not None and cfg.stream_max_duration_sec <= 0
    ):
        raise ConfigError(
            "stream_timeout_sec must be > 0 and stream_max_duration_sec > 0 or unset, got "
            f"{cfg.stream_timeout_sec}, {cfg.stream_max_duration_sec}"
        )
    if cfg.incremental and cfg.base is None:
        raise ConfigError(
            "--incremental needs --base <the previous version folder> to copy unchanged rows from"
        )
    if cfg.base is not None and not cfg.incremental:
        raise ConfigError(
            f"--base {cfg.base} is read only with --incremental; add --incremental or drop --base"
        )
    if cfg.incremental and cfg.frame_layers:
        raise ConfigError(
            f"--incremental does not copy frames (frames = {cfg.frames!r}): embed the whole catalogue for train-head"
        )


def ray_settings(cfg: EmbedConfig) -> RaySettings:
    """The Ray engine's settings of an embed config."""
    return RaySettings(
        address=cfg.ray_address or None,
        workers=cfg.ray_workers,
        cpus_per_worker=cfg.ray_cpus_per_worker,
        threads_per_worker=cfg.ray_threads_per_worker,
        gpus_per_worker=cfg.ray_gpus_per_worker,
        shard_size=cfg.shard_size,
        shard_attempts=cfg.shard_attempts,
    )


def audio_reader(cfg: EmbedConfig, layout: ArtifactLayout, sample_rate: int) -> TrackAudio:
    """Where this run reads its tracks: the object store named by ``stream_from``, else the version folder."""
    return reader_for(
        layout,
        sample_rate,
        source=cfg.stream_from,
        endpoint_url=cfg.stream_endpoint_url,
        region=cfg.stream_region,
        profile=cfg.stream_aws_profile,
        timeout_sec=cfg.stream_timeout_sec,
        max_duration_sec=cfg.stream_max_duration_sec,
    )


# ---------------------------------------------------------------- engine: this process


def _decoded(
    reader: TrackAudio, rows: Sequence[TrackRow], lookahead: int
) -> Iterator[Loaded[TrackRow, np.ndarray]]:
    """Each row's mono float32 waveform (or its decode error), in order, decoded up to ``lookahead`` tracks ahead
    by a background thread while the model runs (:func:`research_job.io.prefetch.prefetched`)."""
    return prefetched(rows, reader.load, lookahead, catch=TRACK_ERRORS)


def _embed_inline(
    cfg: EmbedConfig, reader: TrackAudio, todo: Sequence[TrackRow], encoder: Encoder, ckpt: Checkpoints
) -> None:
    """Decode, check and embed ``todo`` in batches of ``batch_size`` in this process, committing as it goes."""
    pending: list[tuple[str, np.ndarray]] = []
    spec = FrameSpec.of(cfg)

    def flush_batch() -> None:
        if pending:
            ckpt.absorb(embed_kept(encoder, pending, spec))
            pending.clear()

    decoded = _decoded(reader, todo, cfg.decode_ahead)
    for got in tqdm(decoded, total=len(todo), desc="embed", unit="track", disable=None):
        ckpt.chunk_stats["decode_sec"] += got.seconds
        wav, failure = checked_wave(got.item.track_id, got.value, got.error)
        if failure is not None:
            ckpt.fail(failure)
        else:
            assert wav is not None
            pending.append((got.item.track_id, wav))
        if len(pending) >= cfg.batch_size:
            flush_batch()
        if ckpt.filled + len(pending) >= cfg.checkpoint_every:
            flush_batch()
            ckpt.commit()
    flush_batch()
    ckpt.commit()


# ---------------------------------------------------------------- engine: worker processes (processes > 1)
#: the encoder of this worker process, loaded once by _worker_init
_WORKER: dict[str, Any] = {}


#: how often a worker's watcher thread checks that its parent is still alive, seconds
PARENT_POLL_SEC = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _watch_parent(parent_pid: int, poll_sec: float = PARENT_POLL_SEC) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once ``parent_pid`` is no longer its parent.

    The portable half of :func:`_die_with_parent`: an orphan is re-parented (to init or a subreaper), so
    ``os.getppid()`` changes within ``poll_sec`` of the parent's death, however it died (``kill -9`` included).
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_sec)
        os._exit(1)  # no cleanup: the parent that would collect the results is gone

    t = threading.Thread(target=watch, name="embed-parent-watch", daemon=True)
    t.start()
    return t


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process die with the embed process that started it, even after a ``kill -9``.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills the worker the moment its parent goes; then
    a check that the parent did not die before that call. Everywhere: :func:`_watch_parent` as well (the prctl
    may be unavailable, and it fires on the death of the parent *thread* that started the worker).
    Without this an orphaned worker (hundreds of MB with its model) would live for good, and with it the
    multiprocessing resource tracker, which waits for every worker to close its end of the pipe.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the watcher thread alone does it
            pass
    if os.getppid() != parent_pid:  # the parent died while this worker was starting
        os._exit(1)
    _watch_parent(parent_pid)


def _worker_init(factory: Callable[[], Encoder], threads: int, parent_pid: int | None = None) -> None:
    """Pool initializer: die with ``parent_pid`` (:func:`_die_with_parent`), use ``threads`` torch threads, then
    load this worker's own encoder from ``factory``."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(threads)
    _WORKER["encoder"] = factory()


def _worker_batch(reader: TrackAudio, rows: Sequence[TrackRow], spec: FrameSpec) -> dict[str, Any]:
    """Decode, check and embed ``rows`` in a worker process (:func:`research_job.embed_work.embed_rows`)."""
    return embed_rows(_WORKER["encoder"], rows, reader.load, spec)


def effective_processes(cfg: EmbedConfig, todo: int, *, loaded_encoder_only: bool) -> int:
    """The worker processes the local engine runs: ``cfg.processes`` when set; for 0 (auto), one per usable CPU
    (at most AUTO_MAX_PROCESSES) when the run embeds at least AUTO_MIN_TRACKS tracks on CPU without decode_ahead
    and the model can be loaded in each worker (``loaded_encoder_only``: the caller passed a loaded encoder and no
    factory), else 1."""
    if cfg.processes:
        return cfg.processes
    cpus = min(_usable_cpus(), AUTO_MAX_PROCESSES)
    if cfg.engine != "local" or cfg.device != "cpu" or cfg.decode_ahead or loaded_encoder_only:
        return 1
    return cpus if cpus > 1 and todo >= AUTO_MIN_TRACKS else 1


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _embed_in_processes(
    cfg: EmbedConfig,
    reader: TrackAudio,
    todo: Sequence[TrackRow],
    factory: Callable[[], Encoder],
    ckpt: Checkpoints,
) -> None:
    """Send ``todo`` one track per task to ``cfg.processes`` spawned workers; commit results in submission order.

    Raises:
        ArtifactError: a worker process died (what was committed stays checkpointed).
    """
    threads = cfg.threads_per_process or max(1, _usable_cpus() // cfg.processes)
    LOG.info("Embedding with %d worker processes x %d torch threads", cfg.processes, threads)
    ctx = multiprocessing.get_context("spawn")  # no fork after torch/OpenMP started threads
    with (
        ProcessPoolExecutor(
            cfg.processes, mp_context=ctx, initializer=_worker_init, initargs=(factory, threads, os.getpid())
        ) as pool,
        tqdm(total=len(todo), desc="embed", unit="track", disable=None) as bar,
    ):
        window: deque[Future[dict[str, Any]]] = deque()
        it = iter([row] for row in todo)
        for batch in itertools.islice(it, 2 * cfg.processes):
            window.append(pool.submit(_worker_batch, reader, batch, FrameSpec.of(cfg)))
        while window:
            try:
                res = window.popleft().result()
            except BrokenProcessPool as e:
                raise ArtifactError(
                    f"an embed worker process died ({e}); tracks committed so far are checkpointed in {ckpt.part}: "
                    "rerun to resume, with processes: 1 to isolate the track"
                ) from e
            nxt = next(it, None)
            if nxt is not None:
                window.append(pool.submit(_worker_batch, reader, nxt, FrameSpec.of(cfg)))
            ckpt.absorb(res)
            bar.update(len(res["ids"]) + len(res["fails"]))
            if ckpt.filled >= cfg.checkpoint_every:
                ckpt.commit()
    ckpt.commit()


# ---------------------------------------------------------------- the step


def _reusable(
    layout: ArtifactLayout, encoder: Encoder, cfg: EmbedConfig, rows: Sequence[TrackRow]
) -> dict[str, Any] | None:
    """The existing ``embeddings_meta.json`` when the final files are complete, verified and made by this model
    with this post-processing from exactly these tracks; else None (embed again)."""
    try:
        meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
        ids = schema.read_artifact(layout.track_ids_json, "track_ids")["track_ids"]
    except (OSError, ResearchJobError):
        return None
    accounted = set(ids) | {f["track_id"] for f in meta["failures"]}
    if (
        not same_model(meta, encoder.name, encoder.info())
        or meta["postprocess"]["type"] != cfg.postprocess
        or accounted != {r.track_id for r in rows}
    ):
        return None
    if (
        not layout.embeddings_f32.is_file()
        or sha256_file(layout.embeddings_f32) != meta["files"]["embeddings_sha256"]
        or sha256_file(layout.track_ids_json) != meta["files"]["track_ids_sha256"]
    ):
        return None
    if cfg.frame_layers and not _frames_match(layout, FrameSpec.of(cfg)):
        return None
    if tag_blocks_of(encoder) and not _tags_match(layout, encoder):
        return None
    return dict(meta)


def _tags_match(layout: ArtifactLayout, encoder: Encoder) -> bool:
    """Whether the folder's tag files are complete, verified and made by this model's tag blocks."""
    from research_job.tags import load_tags

    try:
        tags = load_tags(layout)
    except (OSError, ResearchJobError):
        return False
    blocks = [{k: b[k] for k in ("model", "vocabulary", "tags")} for b in tags.meta["blocks"]]
    return tags.meta["model"]["name"] == encoder.name and blocks == tag_blocks_of(encoder)


def _write_tags(layout: ArtifactLayout, encoder: Encoder, ckpt: Checkpoints, ok_ids: list[str]) -> None:
    """The tag files of the embedded rows, or, when the model gives no tags, no stale ones of an earlier model."""
    from research_job.tags import remove_tags, write_tags

    blocks = tag_blocks_of(encoder)
    if not blocks:
        remove_tags(layout)
        return
    info = encoder.info()
    write_tags(
        layout,
        ok_ids,
        np.stack([ckpt.tags[t] for t in ok_ids]),
        model={"name": encoder.name, "version": str(info.get("version", "unknown")),
               "weights_sha256": info.get("weights_sha256")},
        blocks=blocks,
    )  # fmt: skip


def _frames_match(layout: ArtifactLayout, spec: FrameSpec) -> bool:
    """Whether the folder's frame files are complete, verified and made with ``spec``'s layers and views."""
    from research_job.frames import load_frames

    try:
        frames = load_frames(layout)
    except (OSError, ResearchJobError):
        return False
    views = frames.meta["views"] or {}
    return [b["name"] for b in frames.meta["layers"]] == list(spec.layers) and (
        (views.get("n_views", 0), views.get("seconds"), views.get("chain"), views.get("seed"))
        == (
            (spec.views, spec.view_sec, spec.view_chain, spec.view_seed)
            if spec.views
            else (0, None, None, None)
        )
    )


def _write_frames(
    layout: ArtifactLayout, encoder: Encoder, ckpt: Checkpoints, ok_ids: list[str], spec: FrameSpec
) -> None:
    """The frame files of the embedded rows, or, when the spec keeps none, no stale ones of earlier rows."""
    from research_job.frames import write_frames

    if not spec.layers:
        for p in (
            layout.frames_meta,
            layout.frames_f16,
            layout.frames_offsets,
            layout.views_f16,
            layout.views_offsets,
        ):
            p.unlink(missing_ok=True)
        return
    assert isinstance(encoder, FrameEncoder)
    info = encoder.info()
    write_frames(
        layout,
        ok_ids,
        [ckpt.frames[t] for t in ok_ids],
        model={
            "name": encoder.name,
            "version": str(info.get("version", "unknown")),
            "weights_sha256": info.get("weights_sha256"),
        },
        layers=[{"name": n, "dim": encoder.frame_layers[n]} for n in spec.layers],
        frame_sec=encoder.frame_sec,
        hop_sec=encoder.hop_sec,
        views=[ckpt.views[t] for t in ok_ids] if spec.views else None,
        view_spec={
            "seconds": spec.view_sec,
            "chain": spec.view_chain,
            "augmentation": describe(spec.view_chain),
            "seed": spec.view_seed,
        }
        if spec.views
        else None,
    )


def _finish(
    cfg: EmbedConfig,
    layout: ArtifactLayout,
    rows: Sequence[TrackRow],
    encoder: Encoder,
    ckpt: Checkpoints,
    wall_sec: float,
    *,
    engine: dict[str, Any],
    fingerprints: dict[str, Any],
    plan: Plan | None = None,
) -> dict[str, Any]:
    """Post-process and normalise the committed vectors in metadata order and write the embedding files: the raw
    rows and audio fingerprints (:mod:`research_job.incremental`), then the three of the contract, meta last.

    ``plan``: what an incremental run copied from its base (rows, tag scores, failures), merged here.

    Raises:
        ArtifactError: every track failed (before or after post-processing).
    """
    if plan is not None:
        ckpt.done.update(plan.vectors)
        ckpt.tags.update(plan.tags)
    failures = list(ckpt.failures) + (list(plan.failures) if plan is not None else [])
    ok_ids = [r.track_id for r in rows if r.track_id in ckpt.done]
    if not ok_ids:
        reasons = "; ".join(f"{f['track_id']}: {f['reason']}" for f in failures[:3])
        raise ArtifactError(f"All {len(rows)} tracks failed to embed ({reasons})")
    raw = np.stack([ckpt.done[t] for t in ok_ids]).astype(np.float32)
    blocks = encoder.info().get("params", {}).get("blocks")  # a fusion's member dimensions
    x, pp_meta = postprocess_corpus(layout, raw, cfg.postprocess, blocks)
    keep = np.linalg.norm(x, axis=1) >= MIN_NORM
    failures += [failure_entry(str(t), "validate", POSTPROCESS_REASON) for t in np.asarray(ok_ids)[~keep]]
    ok_ids = [t for t, k in zip(ok_ids, keep, strict=True) if k]
    if not ok_ids:
        raise ArtifactError(f"All {len(rows)} tracks failed to embed")
    order = {r.track_id: i for i, r in enumerate(rows)}
    failures.sort(key=lambda f: order.get(f["track_id"], len(order)))  # CSV order, for a stable file
    total = {key: ckpt.previous[key] + ckpt.stats[key] for key in STAT_KEYS}
    total["wall_sec"] = ckpt.previous["wall_sec"] + wall_sec
    write_sources(layout, raw[keep], ok_ids, fingerprints, rows, engine["source"])
    if ckpt.work_units:
        engine = {**engine, "shards": ckpt.work_units}
    meta = write_embeddings(
        layout,
        l2_normalize(x[keep]),
        ok_ids,
        model_name=encoder.name,
        info=encoder.info(),
        dim=int(encoder.dim),
        sample_rate=int(encoder.sample_rate),
        postprocess=pp_meta,
        stats={
            "n_input_tracks": len(rows),
            "n_embedded": len(ok_ids),
            "n_failed": len(failures),
            **{key: round(total[key], 3) for key in STAT_KEYS},
            "x_realtime": round(total["audio_sec"] / total["wall_sec"], 3) if total["wall_sec"] > 0 else 0.0,
        },
        failures=failures,
        extra={"engine": engine, "incremental": plan.report() if plan is not None else None},
        extra_files={
            "sources": layout.embed_sources.name,
            "sources_sha256": sha256_file(layout.embed_sources),
        },
    )
    _write_frames(layout, encoder, ckpt, ok_ids, FrameSpec.of(cfg))
    _write_tags(layout, encoder, ckpt, ok_ids)
    return meta


def run(
    cfg: EmbedConfig,
    *,
    encoder: Encoder | None = None,
    encoder_factory: Callable[[], Encoder] | None = None,
    on_chunk_committed: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Embed every track of the metadata CSV; write the three embedding files atomically.

    With ``cfg.processes > 1`` (CPU only) the tracks go one at a time to that many worker processes, each with its
    own encoder and ``cfg.threads_per_process`` torch threads, which decode, check and embed them (one track per
    task keeps the tail short: no worker idles while another finishes a batch); the parent commits their results
    in submission order, so rows, failures and checkpoints are those of ``processes = 1``, and the vectors too up to
    float rounding (a model that batches across tracks, as musicnn's patch batches do, groups them differently).

    Args:
        cfg: step config.
        encoder: an already loaded encoder (default: ``encoder_factory()`` or ``load_model(cfg.common.model)``).
        encoder_factory: a picklable callable returning the encoder, called once in each worker process when
            ``cfg.processes > 1`` (default: ``load_model(cfg.common.model)``).
        on_chunk_committed: test hook called with the number of tracks finished after each checkpoint
            (raising from it simulates an interruption).

    Returns:
        the ``embeddings_meta.json`` dict.

    Raises:
        ConfigError: bad postprocess/batch size; ArtifactError: no tracks, or every track failed.
    """
    check(cfg)
    loaded_encoder_only = encoder is not None and encoder_factory is None
    if cfg.processes > 1 and loaded_encoder_only:
        raise ConfigError(
            "processes > 1 loads the model in each worker process: pass encoder_factory (a picklable callable), "
            "not a loaded encoder"
        )
    layout = cfg.common.layout
    t_start = time.perf_counter()
    rows = read_tracks_csv(layout.tracks_csv)
    if not rows:
        raise ArtifactError(f"{layout.tracks_csv} has no tracks")
    driver_factory = encoder_factory
    if encoder_factory is None:
        from research_job.models.registry import load_model

        # only a non-default device is passed on: weight-less backends take no options
        device_kw = {"device": cfg.device} if cfg.device != "cpu" else {}
        encoder_factory = functools.partial(load_model, cfg.common.model, **device_kw)
        # the Ray driver only reads the model's facts (name, dim, rate, info): on its CPU, whatever the workers use
        driver_factory = (
            functools.partial(load_model, cfg.common.model) if cfg.engine == "ray" else encoder_factory
        )
    if encoder is None:
        encoder = driver_factory()
    check_frame_encoder(encoder, FrameSpec.of(cfg))
    reused = _reusable(layout, encoder, cfg, rows)
    if reused is not None:
        LOG.info(
            "Embeddings in %s are complete for this model and metadata: reusing them", layout.embeddings_dir
        )
        return reused
    reader = audio_reader(cfg, layout, encoder.sample_rate)
    fingerprints = reader.fingerprints(rows)
    plan: Plan | None = None
    if cfg.incremental:
        assert cfg.base is not None
        n_tags = sum(len(b["tags"]) for b in tag_blocks_of(encoder))
        plan = plan_incremental(
            cfg.base, rows, fingerprints, model_name=encoder.name, info=encoder.info(), dim=int(encoder.dim),
            tag_count=n_tags,
        )  # fmt: skip
    ckpt = Checkpoints(
        layout.embed_checkpoint_dir, checkpoint_spec(encoder, FrameSpec.of(cfg)), on_chunk_committed
    )
    resumed = ckpt.finished()
    finished = resumed | (plan.copied if plan is not None else set())
    todo = [r for r in rows if r.track_id not in finished]
    if resumed:
        LOG.info("Resuming: %d tracks already done, %d to go", len(resumed), len(todo))
    engine: dict[str, Any] = {"source": {"kind": reader.kind, "url": reader.url}}
    cfg = replace(cfg, processes=effective_processes(cfg, len(todo), loaded_encoder_only=loaded_encoder_only))
    if cfg.engine == "ray":
        engine.update(embed_on_ray(ray_settings(cfg), todo, encoder_factory, reader, FrameSpec.of(cfg), ckpt))
    elif cfg.processes > 1:
        threads = cfg.threads_per_process or max(1, _usable_cpus() // cfg.processes)
        engine.update(name="processes", workers=cfg.processes, threads_per_worker=threads)
        _embed_in_processes(cfg, reader, todo, encoder_factory, ckpt)
    else:
        import torch

        engine.update(name="inline", workers=1, threads_per_worker=int(torch.get_num_threads()))
        _embed_inline(cfg, reader, todo, encoder, ckpt)
    meta = _finish(
        cfg, layout, rows, encoder, ckpt, time.perf_counter() - t_start,
        engine=engine, fingerprints=fingerprints, plan=plan,
    )  # fmt: skip
    shutil.rmtree(ckpt.part, ignore_errors=True)
    LOG.info(
        "Embedded %d of %d tracks (%d failed), dim %d",
        meta["count"],
        len(rows),
        len(meta["failures"]),
        encoder.dim,
    )
    return meta


STEP = Step(
    name="embed",
    config=EmbedConfig,
    summary="Embed every track: embeddings.f32, track_ids.json, embeddings_meta.json (resumable).",
    example="research-job embed --model musicnn-msd --batch-size 8 --postprocess none",
    run=run,
    check=check,
    pipeline=40,
)
