"""Where the embed engines read a catalogue track's audio from, and the fingerprint that says it changed.

Two readers behind one small protocol (:class:`TrackAudio`), both picklable so that a worker process or a Ray
actor gets its own copy:

* :class:`VersionFolderAudio`: the version folder's ``audio_wav/`` (complete standardised WAVs) or
  ``audio_cache/`` (the pulled originals), through :func:`research_job.io.audio.load_track_audio`: what the
  inline and process engines always did; on a cluster it needs the folder on a shared file system.
* :class:`StoreAudio`: straight from the object store (S3 or a local folder used as one, as in pull-audio): the
  object is fetched into a temporary file on the worker (transient errors retried with backoff), decoded and
  standardised exactly as standardize-audio does (:func:`~research_job.io.audio.decode_audio`, the same
  ``max_duration_sec``), and deleted. The store client is opened lazily in each process (boto3 clients do not
  pickle); credentials come from the standard AWS chain on each worker, never through the task graph.

A fingerprint is ``{"size", "etag", "sha256"}`` of a track's original file (either hash may be None);
:func:`same_audio` compares two. :meth:`TrackAudio.fingerprints` gives every row's without decoding: the
version folder takes the size and ETag pull-audio recorded (hashing a cached original only when there is no
ETag for it or its size differs from the recorded one); the store lists its
objects (S3: size and ETag, from ``ListObjectsV2`` pages of 1000; a local folder: size and sha256).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from research_job.errors import AudioDecodeError
from research_job.io.audio import cached_path, decode_audio, load_track_audio
from research_job.io.retry import Attempts
from research_job.io.storage import ObjectNotFound, ObjectStore, TransientStorageError, open_store
from research_job.layout import ArtifactLayout, id_file_name
from research_job.metadata import TrackRow
from research_job.provenance import sha256_file

LOG = logging.getLogger(__name__)

Fingerprint = dict[str, Any]


def same_audio(a: Fingerprint | None, b: Fingerprint | None) -> bool:
    """Whether two fingerprints name the same file: equal sizes and an equal ETag or sha256 (one both have).

    Sizes alone never suffice: two fingerprints with no hash in common count as different (embed again).
    """
    if not a or not b or a.get("size") is None or a.get("size") != b.get("size"):
        return False
    for key in ("sha256", "etag"):
        if a.get(key) and b.get(key):
            return bool(a[key] == b[key])
    return False


class TrackAudio(Protocol):
    """What an embed engine needs to read tracks."""

    #: ``version_folder`` or ``store``; how the meta and the logs name the source
    kind: str
    #: the store's URL, or the version folder (no credentials either way)
    url: str

    def load(self, row: TrackRow) -> np.ndarray:
        """The track's mono float32 waveform at the reader's sample rate.

        Raises:
            ResearchJobError or OSError: this track's problem (the engine records it as its failure).
        """
        ...

    def fingerprints(self, rows: Sequence[TrackRow]) -> dict[str, Fingerprint | None]:
        """Every row's fingerprint (None when its file is absent), without decoding anything."""
        ...


@dataclass(frozen=True)
class VersionFolderAudio:
    """Tracks from the version folder: the standardised WAV when complete, else the pulled original."""

    layout: ArtifactLayout
    sample_rate: int
    kind: str = "version_folder"

    @property
    def url(self) -> str:
        return self.layout.version_dir.name

    def load(self, row: TrackRow) -> np.ndarray:
        return np.asarray(load_track_audio(self.layout, row, self.sample_rate), dtype=np.float32)

    def fingerprints(self, rows: Sequence[TrackRow]) -> dict[str, Fingerprint | None]:
        """Size and the ETag pull-audio recorded for a cached original of the recorded size, without reading it
        (hashing a million originals on every run would cost more than embedding the few that changed); the
        sha256 of the file when the report has no ETag for it or the size differs."""
        pulled: dict[str, tuple[int | None, str | None]] = {}
        try:
            report = json.loads(self.layout.pull_report.read_text(encoding="utf-8"))
            pulled = {t["track_id"]: (t.get("size_bytes"), t.get("etag")) for t in report.get("tracks", [])}
        except (OSError, ValueError, TypeError, KeyError):
            pass  # no or unreadable pull report: the sha256 alone identifies the file
        out: dict[str, Fingerprint | None] = {}
        for row in rows:
            src = cached_path(self.layout, row)
            try:
                size = src.stat().st_size
                rec_size, etag = pulled.get(row.track_id, (None, None))
                if etag and rec_size == size:
                    out[row.track_id] = {"size": size, "etag": etag, "sha256": None}
                else:
                    out[row.track_id] = {"size": size, "etag": None, "sha256": sha256_file(src)}
            except OSError:
                out[row.track_id] = None
        return out


@dataclass
class StoreAudio:
    """Tracks fetched from the object store and decoded on the worker (pull-audio + standardize-audio in one)."""

    source: str
    sample_rate: int
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    timeout_sec: float = 60.0
    max_duration_sec: float | None = None
    #: tries per object on transient errors (5xx, throttling, timeouts), with exponential backoff and jitter
    max_attempts: int = 5
    backoff_sec: float = 0.5
    kind: str = "store"

    def __post_init__(self) -> None:
        self._store: ObjectStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None  # a boto3 client does not pickle: each process opens its own
        return state

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(
                self.source,
                endpoint_url=self.endpoint_url,
                region=self.region,
                profile=self.profile,
                timeout_sec=self.timeout_sec,
            )
        return self._store

    @property
    def url(self) -> str:
        return self.store.url

    def _fetch(self, key: str, dest: Path) -> None:
        def get() -> None:
            got = self.store.get_to_file(key, dest)
            if dest.stat().st_size != got.size:
                raise TransientStorageError(
                    f"short read of {key!r}: {dest.stat().st_size} bytes, expected {got.size}"
                )

        Attempts(self.max_attempts, self.backoff_sec).call(get)

    def load(self, row: TrackRow) -> np.ndarray:
        """Fetch ``row``'s object into a temporary file, decode it at the reader's rate, delete it.

        Raises:
            StorageError: the object is missing or the store refuses it (after the retries);
            AudioDecodeError: the file is not decodable audio, naming the object (not the temporary file).
        """
        key = self.store.resolve_key(row.audio_s3_key)
        with tempfile.TemporaryDirectory(prefix="research-job-") as tmp:
            dest = Path(tmp) / id_file_name(row.track_id, row.audio_ext)
            self._fetch(key, dest)
            try:
                x, _ = decode_audio(dest, self.sample_rate, max_duration_sec=self.max_duration_sec)
            except AudioDecodeError as e:
                where = f"{self.store.url.rstrip('/')}/{key}" if self.store.kind == "s3" else key
                raise AudioDecodeError(str(e).replace(str(dest), where)) from e
        return np.asarray(x, dtype=np.float32)

    def fingerprints(self, rows: Sequence[TrackRow]) -> dict[str, Fingerprint | None]:
        store = self.store
        keys = {row.track_id: store.resolve_key(row.audio_s3_key) for row in rows}
        if store.kind == "s3":
            listed = {o.key: o for o in store.list()}
            return {
                tid: ({"size": o.size, "etag": o.etag, "sha256": None} if (o := listed.get(k)) else None)
                for tid, k in keys.items()
            }
        out: dict[str, Fingerprint | None] = {}
        for tid, k in keys.items():
            try:
                o = store.head(k)
                out[tid] = {"size": o.size, "etag": o.etag, "sha256": o.sha256}
            except ObjectNotFound:
                out[tid] = None
        return out


def reader_for(
    layout: ArtifactLayout,
    sample_rate: int,
    *,
    source: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    timeout_sec: float = 60.0,
    max_duration_sec: float | None = None,
) -> TrackAudio:
    """The store reader when ``source`` is set, else the version folder's."""
    if source and source.strip():
        return StoreAudio(
            source.strip(),
            sample_rate,
            endpoint_url=endpoint_url,
            region=region,
            profile=profile,
            timeout_sec=timeout_sec,
            max_duration_sec=max_duration_sec,
        )
    return VersionFolderAudio(layout, sample_rate)
