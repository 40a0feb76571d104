"""The embed step's Ray engine: shards of track ids on an actor pool that keeps the model loaded.

The driver (the embed step's process) cuts the tracks still to do into shards of ``shard_size`` consecutive
rows in metadata order and keeps at most ``2 x workers`` shards in flight, two per actor: that bounds what is
queued (back-pressure), and what comes back is vectors, never audio, so the driver never holds the
catalogue's audio. Each actor loads the model once (``encoder_factory``, with ``threads`` torch threads) and,
per shard, reads every track through its :class:`~research_job.io.track_audio.TrackAudio` reader (the object
store, fetched and decoded on the worker; or the version folder on a shared file system), then checks and
embeds it with :func:`research_job.embed_work.embed_rows`, the inline engine's own code, so the rows, failures
and reasons are the inline ones. The driver commits each finished shard as one checkpoint chunk
(:class:`~research_job.embed_work.Checkpoints`: the vectors written under a temporary name and renamed, the
JSON marker with the shard's record last), so an interrupted driver resumes from its finished shards on the
next run, whichever engine resumes it.

Faults. An actor that dies (killed, out of memory, a decoder that crashes the process) loses only its queued
shards: Ray restarts it (``max_restarts=-1``; the model is loaded again) and the driver resubmits them. A shard
that has been in flight on ``shard_attempts`` dead workers is split into single tracks; a single track that
has is recorded as that track's failure (stage ``worker``), so one poisonous file never sinks the run and the
number of retries is bounded. A Python error outside a track's own work (the model's loader, say) ends the run
with an :class:`~research_job.errors.ArtifactError`; the finished shards stay committed.

The cluster: ``address`` joins a running one (``host:port`` from ``ray start --head``, or ``ray://host:10001``
for Ray Client, or ``auto``); unset, the cluster named by ``RAY_ADDRESS`` when set (as in a RayJob or under
``ray job submit``), else a local one with ``workers x cpus_per_worker`` CPUs, started for the run and shut down
after it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from research_job.embed_work import Checkpoints, FrameSpec, embed_rows, failure_entry
from research_job.errors import ArtifactError, ConfigError
from research_job.io.track_audio import TrackAudio
from research_job.metadata import TrackRow
from research_job.models.base import Encoder

LOG = logging.getLogger(__name__)

#: shards queued on one actor at a time: one running, one waiting, so no actor idles between shards
PER_ACTOR_IN_FLIGHT = 2


@dataclass(frozen=True)
class RaySettings:
    """How the Ray engine runs (from the embed config's ``ray_*`` and ``shard_*`` keys)."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    threads_per_worker: int | None = None
    gpus_per_worker: float = 0.0
    shard_size: int = 32
    shard_attempts: int = 3

    @property
    def threads(self) -> int:
        """Torch threads of each actor: ``threads_per_worker``, else its CPUs rounded up (at least 1)."""
        return self.threads_per_worker or max(1, math.ceil(self.cpus_per_worker))

    def check(self) -> None:
        """Refuse counts that cannot run.

        Raises:
            ConfigError: naming the bad value.
        """
        if self.workers < 1 or self.shard_size < 1 or self.shard_attempts < 1:
            raise ConfigError(
                f"ray_workers, shard_size and shard_attempts must be >= 1, got {self.workers}, "
                f"{self.shard_size}, {self.shard_attempts}"
            )
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ConfigError(
                f"ray_cpus_per_worker must be > 0 and ray_gpus_per_worker >= 0, got {self.cpus_per_worker}, "
                f"{self.gpus_per_worker}"
            )
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ConfigError(f"ray_threads_per_worker must be >= 1 or unset, got {self.threads_per_worker}")


def shards_of(rows: Sequence[TrackRow], size: int) -> list[list[TrackRow]]:
    """Consecutive slices of ``size`` rows (the last may be shorter), in order."""
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


class EmbedActor:
    """One Ray worker: its own encoder, loaded once; embeds one shard per call."""

    def __init__(self, factory: Callable[[], Encoder], threads: int, reader: TrackAudio) -> None:
        import torch

        torch.set_num_threads(threads)
        self.threads = threads
        self.encoder = factory()
        self.reader = reader

    def whoami(self) -> dict[str, Any]:
        """Where this actor runs (the host name and process id), once its model is loaded."""
        return {"host": socket.gethostname(), "pid": os.getpid(), "threads": self.threads}

    def embed(self, rows: Sequence[TrackRow], spec: FrameSpec) -> dict[str, Any]:
        """:func:`research_job.embed_work.embed_rows` over ``rows``, plus this shard's wall time and worker."""
        t0 = time.perf_counter()
        out = embed_rows(self.encoder, rows, self.reader.load, spec)
        out["shard_wall_sec"] = time.perf_counter() - t0
        out["worker"] = {"host": socket.gethostname(), "pid": os.getpid()}
        return out


@dataclass
class _Shard:
    index: str
    rows: list[TrackRow]
    attempts: int = 0
    deaths: list[str] = field(default_factory=list)


def cluster_address(settings: RaySettings) -> str:
    """The cluster to join: ``settings.address``, else ``$RAY_ADDRESS`` (how Ray tells a job where its cluster is:
    a RayJob's submitter, ``ray job submit``); empty = start a local one."""
    return settings.address or os.environ.get("RAY_ADDRESS", "").strip()


def _connect(settings: RaySettings) -> bool:
    """Join ``settings.address`` or start a local cluster; True when this call started Ray (and must stop it).

    Raises:
        ConfigError: ray is not installed, or the address cannot be reached.
    """
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "engine ray needs the ray package: pip install 'research-job[ray]' (or engine: local)"
        ) from e
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": True,
        "logging_level": logging.WARNING,
    }
    address = cluster_address(settings)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:  # "local": a new cluster of our own, never one that `ray start` left running on this machine
            ray.init(
                address="local",
                num_cpus=max(1, math.ceil(settings.workers * settings.cpus_per_worker)),
                num_gpus=math.ceil(settings.workers * settings.gpus_per_worker),
                **kwargs,
            )
    except Exception as e:  # noqa: BLE001 - Ray raises bare Exception on start-up timeouts too
        with contextlib.suppress(Exception):
            ray.shutdown()
        where = address or "a local cluster"
        raise ConfigError(f"Cannot start or join the Ray cluster at {where}: {e}") from e
    return True


def embed_on_ray(
    settings: RaySettings,
    todo: Sequence[TrackRow],
    factory: Callable[[], Encoder],
    reader: TrackAudio,
    spec: FrameSpec,
    ckpt: Checkpoints,
) -> dict[str, Any]:
    """Embed ``todo`` on a Ray cluster, committing each finished shard to ``ckpt``; return the engine record.

    Returns:
        the ``engine`` object of ``embeddings_meta.json``: name, cluster, workers and their hosts, shard size,
        shards committed, worker deaths survived (``retries``) and tracks isolated after repeated deaths.

    Raises:
        ConfigError: no ray, or the cluster cannot be reached; ArtifactError: an actor cannot load the model, or
        a shard raised outside its tracks' own work (what was committed stays checkpointed).
    """
    settings.check()
    record = {
        "name": "ray",
        "cluster": cluster_address(settings) or "local",
        "workers": settings.workers,
        "cpus_per_worker": settings.cpus_per_worker,
        "threads_per_worker": settings.threads,
        "gpus_per_worker": settings.gpus_per_worker,
        "hosts": [],
        "shard_size": settings.shard_size,
        "retries": 0,
        "isolated_tracks": 0,
    }
    if not todo:  # resumed or copied in full: no cluster, no model loads
        LOG.info("Nothing to embed on Ray: every track is checkpointed or copied")
        return record
    started = _connect(settings)  # first: it names a missing ray package clearly
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    actors: list[Any] = []
    retries = 0
    isolated = 0
    try:
        remote_cls = ray.remote(EmbedActor).options(
            num_cpus=settings.cpus_per_worker,
            num_gpus=settings.gpus_per_worker,
            max_restarts=-1,
            max_task_retries=0,
        )
        actors = [remote_cls.remote(factory, settings.threads, reader) for _ in range(settings.workers)]
        try:
            hosts = ray.get([a.whoami.remote() for a in actors])
        except RayTaskError as e:
            raise ArtifactError(f"A Ray worker could not load the model: {e}") from e
        LOG.info(
            "Embedding %d tracks on Ray: %d workers x %d threads, shards of %d",
            len(todo),
            settings.workers,
            settings.threads,
            settings.shard_size,
        )
        queue: deque[_Shard] = deque(
            _Shard(f"{i:05d}", rows) for i, rows in enumerate(shards_of(todo, settings.shard_size))
        )
        in_flight: dict[Any, tuple[_Shard, int]] = {}
        load = [0] * len(actors)
        with tqdm(total=len(todo), desc="embed (ray)", unit="track", disable=None) as bar:
            while queue or in_flight:
                for _ in range(PER_ACTOR_IN_FLIGHT):  # deal one shard per actor per round: none sits idle
                    for i, actor in enumerate(actors):
                        if queue and load[i] < PER_ACTOR_IN_FLIGHT:
                            shard = queue.popleft()
                            in_flight[actor.embed.remote(shard.rows, spec)] = (shard, i)
                            load[i] += 1
                (ref,), _ = ray.wait(list(in_flight), num_returns=1)
                shard, i = in_flight.pop(ref)
                load[i] -= 1
                try:
                    res = ray.get(ref)
                except RayActorError as e:
                    retries += 1
                    shard.attempts += 1
                    shard.deaths.append(type(e).__name__)
                    isolated += _requeue(queue, shard, settings.shard_attempts, ckpt, bar)
                    continue
                except RayTaskError as e:
                    raise ArtifactError(
                        f"Shard {shard.index} raised outside its tracks' own work: {e}; the finished shards are "
                        f"checkpointed in {ckpt.part}: rerun to resume"
                    ) from e
                ckpt.absorb(res)
                ckpt.commit(
                    {
                        "shard": shard.index,
                        "tracks": len(shard.rows),
                        "attempts": shard.attempts + 1,
                        "worker": res["worker"],
                        "wall_sec": round(res["shard_wall_sec"], 4),
                        "decode_sec": round(res.get("decode_sec", 0.0), 4),
                        "model_sec": round(res.get("model_sec", 0.0), 4),
                    }
                )
                bar.update(len(res["ids"]) + len(res["fails"]))
    finally:
        for a in actors:
            with contextlib.suppress(Exception):  # already gone: nothing to free
                ray.kill(a, no_restart=True)
        if started:
            ray.shutdown()
    return {
        **record,
        "hosts": sorted({h["host"] for h in hosts}),
        "retries": retries,
        "isolated_tracks": isolated,
    }


def _requeue(queue: deque[_Shard], shard: _Shard, attempts: int, ckpt: Checkpoints, bar: Any) -> int:
    """Put a shard whose worker died back in front: again, split into single tracks, or (a single track that has
    killed ``attempts`` workers) recorded as that track's failure. Returns the tracks so recorded (0 or 1)."""
    if shard.attempts < attempts:
        LOG.warning("A Ray worker died with shard %s in flight; retrying it", shard.index)
        queue.appendleft(shard)
        return 0
    if len(shard.rows) > 1:
        LOG.warning("Shard %s was in flight on %d dead workers: isolating its tracks", shard.index, attempts)
        queue.extendleft(
            reversed([_Shard(f"{shard.index}.{j:03d}", [row]) for j, row in enumerate(shard.rows)])
        )
        return 0
    row = shard.rows[0]
    LOG.error("Track %s was in flight on %d dead workers: recorded as failed", row.track_id, attempts)
    ckpt.fail(
        failure_entry(
            row.track_id,
            "worker",
            f"the embed worker process died {attempts} times with this track in flight "
            f"({', '.join(shard.deaths)}); rerun to retry it",
        )
    )
    ckpt.commit({"shard": shard.index, "tracks": 1, "attempts": shard.attempts, "worker": None})
    bar.update(1)
    return 1
