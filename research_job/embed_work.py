"""Embedding work shared by the embed engines (inline, worker processes, Ray): one batch's outcome, checkpoints.

:func:`embed_rows` decodes, checks and embeds a batch of catalogue rows with a loaded encoder and returns what the
engines commit: the raw pooled vectors (and frames, views, tag scores) of the tracks that embedded, and a failure
entry (``track_id``, ``stage``, ``reason``) for each that did not. A batch that raises is retried one track at a
time, so one bad track fails alone; the stages are ``decode`` (the file could not be read), ``validate`` (silent,
near-zero or non-finite audio), ``embed`` (the model raised or gave a bad vector) and ``views``.

:class:`Checkpoints` keeps the committed chunks of ``embeddings/partial/`` (a ``chunk_NNNNN.npy`` of raw pooled
vectors, then its ``chunk_NNNNN.json`` of ids, failures and stats as the commit marker, both written atomically);
an interrupted run resumes from them, whichever engine wrote them.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from research_job.augment import augmented, seed_for
from research_job.embeddings import check_vector, wave_problem
from research_job.errors import ArtifactError, ConfigError, ResearchJobError, unknown_choice
from research_job.io.atomic import atomic_open, write_json
from research_job.metadata import TrackRow
from research_job.models.base import TAG_LAYER, Encoder, FrameEncoder, tag_blocks_of

LOG = logging.getLogger(__name__)

STAT_KEYS = ("audio_sec", "decode_sec", "model_sec", "wall_sec")
#: what loading one track may raise that makes it that track's failure (stage ``decode``), never the run's:
#: the pipeline's own errors and the file system's (a name too long, a permission, an I/O error)
TRACK_ERRORS: tuple[type[Exception], ...] = (ResearchJobError, OSError)


@dataclass(frozen=True)
class FrameSpec:
    """What to keep besides the pooled vectors (from :class:`EmbedConfig`); picklable for worker processes."""

    layers: tuple[str, ...] = ()
    views: int = 0
    view_sec: float = 30.0
    view_chain: str = "train"
    view_seed: int = 0

    @classmethod
    def of(cls, cfg: Any) -> FrameSpec:
        """The spec of an embed config (its ``frame_layers`` and ``view_*`` fields)."""
        return cls(cfg.frame_layers, cfg.views, cfg.view_sec, cfg.view_chain, cfg.view_seed)

    def to_json(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "views": self.views, "view_sec": self.view_sec,
                "view_chain": self.view_chain, "view_seed": self.view_seed}  # fmt: skip


def check_frame_encoder(encoder: Encoder, spec: FrameSpec) -> None:
    """Refuse frames from a model that has none, or layers it does not know.

    Raises:
        ConfigError: naming the model or the layer, and the valid ones.
    """
    if not spec.layers:
        return
    if not isinstance(encoder, FrameEncoder):
        raise ConfigError(
            f"Model {encoder.name!r} returns no per-frame features; frames need a frame encoder (musicnn-msd, musicnn-mtt)"
        )
    for name in spec.layers:
        if name not in encoder.frame_layers:
            raise ConfigError(unknown_choice(f"frame layer of {encoder.name}", name, encoder.frame_layers))


# ---------------------------------------------------------------- one track's outcome (both engines)


def reason_of(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    return msg if isinstance(e, ResearchJobError) else f"{type(e).__name__}: {msg}"


#: the reason of a track rejected only after the corpus post-processing (its vector near zero once centred or
#: whitened on that corpus): the one failure that depends on the other tracks, not on the track alone
POSTPROCESS_REASON = "near-zero vector after postprocess"


def failure_entry(track_id: str, stage: str, reason: str) -> dict[str, str]:
    return {"track_id": track_id, "stage": stage, "reason": reason}


#: one track's outcome: (pooled vector or None, its frames or None, its tag scores or None, why it failed or None)
Outcome = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, str | None]


def _forward(
    encoder: Encoder, waves: Sequence[np.ndarray], layers: tuple[str, ...], tagged: bool = False
) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """(pooled, frames or None, tags or None) per waveform from one call of the model; the shape is checked.

    With ``tagged`` the model's ``taggram`` is asked for as one more frame layer of the same forward pass, cut off
    the frames again, and averaged over each waveform's frames (its tag scores).
    """
    n = len(waves)
    ask = layers + ((TAG_LAYER,) if tagged else ())
    frames: list[np.ndarray | None] = [None] * n
    tags: list[np.ndarray | None] = [None] * n
    if ask:
        assert isinstance(encoder, FrameEncoder)
        pooled, got = encoder.embed_frames(list(waves), ask)
        got = [np.asarray(f) for f in got]
        if len(got) != n:
            raise ArtifactError(f"encoder returned {len(got)} frame blocks for {n} waveforms")
        if tagged:
            t = int(encoder.frame_layers[TAG_LAYER])
            tags = [f[:, -t:].mean(axis=0, dtype=np.float64).astype(np.float32) for f in got]
            got = [f[:, :-t] for f in got]
        if layers:
            frames = list(got)
    else:
        pooled = encoder.embed(list(waves))
    pooled = np.asarray(pooled, dtype=np.float32)
    if pooled.shape != (n, encoder.dim) or len(frames) != n or len(tags) != n:
        raise ArtifactError(f"encoder returned shape {pooled.shape}, expected {(n, encoder.dim)}")
    return list(zip(pooled, frames, tags, strict=True))


def embed_isolated(
    encoder: Encoder, waves: Sequence[np.ndarray], layers: tuple[str, ...] = (), tagged: bool = False
) -> list[Outcome]:
    """(vector, frames, tags, None) or (None / vector, None, None, reason) per waveform. A batch that raises is
    retried one track at a time, so one bad track fails alone."""

    def checked(v: np.ndarray, f: np.ndarray | None, t: np.ndarray | None) -> Outcome:
        why = check_vector(v)
        if why is None and f is not None and not np.all(np.isfinite(f)):
            why = "non-finite frame features (NaN or inf)"
        if why is None and t is not None and not np.all(np.isfinite(t)):
            why = "non-finite tag scores (NaN or inf)"
        return v, f, t, why

    try:
        return [checked(*out) for out in _forward(encoder, waves, layers, tagged)]
    except Exception as e:  # noqa: BLE001 - one bad track must not sink the run; reason recorded
        if len(waves) == 1:
            return [(None, None, None, reason_of(e))]
    results: list[Outcome] = []
    for w in waves:
        try:
            results.append(checked(*_forward(encoder, [w], layers, tagged)[0]))
        except Exception as e1:  # noqa: BLE001 - recorded as this track's failure
            results.append((None, None, None, reason_of(e1)))
    return results


def _views(encoder: Encoder, tid: str, wave: np.ndarray, spec: FrameSpec) -> list[np.ndarray]:
    """The frames of ``spec.views`` seeded augmented excerpts of one track (the same on every run)."""
    waves = [
        augmented(wave, encoder.sample_rate, spec.view_chain, seed_for(tid, v, spec.view_seed), spec.view_sec)
        for v in range(spec.views)
    ]
    assert isinstance(encoder, FrameEncoder)
    _, frames = encoder.embed_frames(waves, spec.layers)
    if not all(np.all(np.isfinite(f)) and f.shape[0] for f in frames):
        raise ArtifactError("an augmented view gave no or non-finite frame features")
    return [f.astype(np.float16) for f in frames]


def embed_kept(
    encoder: Encoder, kept: Sequence[tuple[str, np.ndarray]], spec: FrameSpec = FrameSpec()
) -> dict[str, Any]:
    """Embed checked waveforms (``(track_id, wave)`` pairs): ``ids`` and ``vecs`` (raw pooled vectors), ``frames``
    and ``views`` (float16, when ``spec`` asks for them) and ``tags`` (float32, when the model gives them) of those
    that embedded, ``fails`` (stage ``embed`` or ``views``) of the others, ``audio_sec`` of the embedded audio,
    ``model_sec``."""
    t0 = time.perf_counter()
    tagged = bool(tag_blocks_of(encoder))
    results = embed_isolated(encoder, [w for _, w in kept], spec.layers, tagged) if kept else []
    out: dict[str, Any] = {"ids": [], "vecs": [], "frames": [], "views": [], "tags": [], "fails": [],
                           "audio_sec": 0.0}  # fmt: skip
    for (tid, w), (v, f, tags, why) in zip(kept, results, strict=True):
        if why is not None or v is None:
            out["fails"].append(failure_entry(tid, "embed", why or "no output"))
            continue
        views: list[np.ndarray] = []
        if spec.views:
            try:
                views = _views(encoder, tid, w, spec)
            except Exception as e:  # noqa: BLE001 - this track fails alone, with the reason
                out["fails"].append(failure_entry(tid, "views", reason_of(e)))
                continue
        out["ids"].append(tid)
        out["vecs"].append(v)
        if spec.layers:
            assert f is not None
            out["frames"].append(f.astype(np.float16))
            out["views"].append(views)
        if tagged:
            assert tags is not None
            out["tags"].append(tags)
        out["audio_sec"] += w.size / encoder.sample_rate
    out["model_sec"] = time.perf_counter() - t0
    return out


def checked_wave(
    track_id: str, wav: np.ndarray | None, error: BaseException | None
) -> tuple[np.ndarray | None, dict[str, str] | None]:
    """A decoded waveform that may reach the model, or the failure (stage ``decode`` or ``validate``)."""
    if error is not None:
        return None, failure_entry(track_id, "decode", reason_of(error))
    assert wav is not None
    why = wave_problem(wav)
    return (None, failure_entry(track_id, "validate", why)) if why is not None else (wav, None)


# ---------------------------------------------------------------- checkpoints


def checkpoint_spec(encoder: Encoder, frames: FrameSpec) -> dict[str, Any]:
    """What the checkpoints were made with (another spec discards them)."""
    spec = {
        "model": encoder.name,
        "dim": int(encoder.dim),
        "sample_rate": int(encoder.sample_rate),
        "info": encoder.info(),
        "frames": frames.to_json(),
    }
    blocks = tag_blocks_of(encoder)
    if blocks:  # checkpoints made before tags were kept hold none: discarded
        spec["tags"] = blocks
    return spec


class Checkpoints:
    """The committed chunks of ``embeddings/partial/`` plus the chunk being filled.

    ``absorb`` / ``fail`` add to the current chunk; ``commit`` writes it (vectors, then the JSON commit marker)
    and folds it into ``done``, ``failures`` and ``stats``.
    """

    def __init__(self, part: Path, spec: dict[str, Any], on_commit: Callable[[int], None] | None) -> None:
        self.part = part
        self.dim = int(spec["dim"])
        self.on_commit = on_commit
        self.done: dict[str, np.ndarray] = {}
        #: per embedded track: its frames and its views' frames (float16), when the spec keeps them
        self.frames: dict[str, np.ndarray] = {}
        self.views: dict[str, list[np.ndarray]] = {}
        #: per embedded track: its tag scores (float32), when the model gives tags
        self.n_tags = sum(len(b["tags"]) for b in spec.get("tags", []))
        self.tags: dict[str, np.ndarray] = {}
        self.failures: list[dict[str, str]] = []
        #: what earlier runs measured (their chunks' stats)
        self.previous = dict.fromkeys(STAT_KEYS, 0.0)
        #: what this run measured
        self.stats = dict.fromkeys(STAT_KEYS, 0.0)
        self.n_chunk = 0
        #: the engine's work units (Ray shards) committed by earlier runs and this one, in commit order
        self.work_units: list[dict[str, Any]] = []
        self._open(spec)
        self._new_chunk()

    def _open(self, spec: dict[str, Any]) -> None:
        """Read the committed chunks of a previous run of the same model; discard the folder if it differs."""
        spec_file = self.part / "spec.json"
        if self.part.exists():
            try:
                old = json.loads(spec_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = None
            if old != json.loads(json.dumps(spec)):
                LOG.warning("Discarding checkpoints in %s: made by another model spec", self.part)
                shutil.rmtree(self.part)
        self.part.mkdir(parents=True, exist_ok=True)
        write_json(spec_file, spec)
        for js in sorted(self.part.glob("chunk_*.json")):
            info = json.loads(js.read_text(encoding="utf-8"))
            vec_path = js.with_suffix(".npy")
            vecs = (
                np.load(vec_path, allow_pickle=False) if info["ids"] else np.zeros((0, self.dim), np.float32)
            )
            if vecs.shape != (len(info["ids"]), self.dim):
                raise ArtifactError(
                    f"Corrupt checkpoint {vec_path}: shape {vecs.shape}; delete {self.part} and rerun"
                )
            self.done.update(zip(info["ids"], vecs, strict=True))
            self._read_frames(js, info)
            self._read_tags(js, info)
            self.failures.extend(info["failures"])
            if "work_unit" in info:
                self.work_units.append(info["work_unit"])
            for key in STAT_KEYS:
                self.previous[key] += float(info["stats"].get(key, 0.0))
            self.n_chunk += 1

    def _read_frames(self, js: Path, info: dict[str, Any]) -> None:
        """The frames and views of a committed chunk (``.frames.npy`` / ``.views.npy`` beside it)."""
        for kind, counts in (("frames", info.get("frame_counts")), ("views", info.get("view_counts"))):
            if counts is None:
                continue
            path = js.with_suffix(f".{kind}.npy")
            flat = counts if kind == "frames" else [c for per in counts for c in per]
            data = np.load(path, allow_pickle=False) if sum(flat) else np.zeros((0, 0), np.float16)
            if data.shape[0] != sum(flat):
                raise ArtifactError(f"Corrupt checkpoint {path}: {data.shape[0]} rows, expected {sum(flat)}")
            bounds = np.cumsum([0, *flat])
            blocks = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            if kind == "frames":
                self.frames.update(zip(info["ids"], blocks, strict=True))
            else:
                it = iter(blocks)
                self.views.update(
                    {tid: [next(it) for _ in per] for tid, per in zip(info["ids"], counts, strict=True)}
                )

    def _read_tags(self, js: Path, info: dict[str, Any]) -> None:
        """The tag scores of a committed chunk (``.tags.npy`` beside it, one row per id), when the spec has tags."""
        if not self.n_tags or not info["ids"]:
            return
        path = js.with_suffix(".tags.npy")
        tags = np.load(path, allow_pickle=False) if path.is_file() else None
        if tags is None or tags.shape != (len(info["ids"]), self.n_tags):
            raise ArtifactError(
                f"Corrupt checkpoint {path}: shape {None if tags is None else tags.shape}, expected "
                f"{(len(info['ids']), self.n_tags)}; delete {self.part} and rerun"
            )
        self.tags.update(zip(info["ids"], tags, strict=True))

    def _new_chunk(self) -> None:
        self.ids: list[str] = []
        self.vecs: list[np.ndarray] = []
        self.chunk_frames: list[np.ndarray] = []
        self.chunk_views: list[list[np.ndarray]] = []
        self.chunk_tags: list[np.ndarray] = []
        self.fails: list[dict[str, str]] = []
        self.chunk_stats = dict.fromkeys(STAT_KEYS, 0.0)
        self.t_chunk = time.perf_counter()

    def finished(self) -> set[str]:
        """Track ids already embedded or failed (by earlier runs and this one)."""
        return set(self.done) | {f["track_id"] for f in self.failures}

    @property
    def filled(self) -> int:
        """Tracks in the current, uncommitted chunk."""
        return len(self.ids) + len(self.fails)

    def fail(self, entry: dict[str, str]) -> None:
        self.fails.append(entry)

    def absorb(self, res: dict[str, Any]) -> None:
        """Add an :func:`embed_kept` / :func:`_worker_batch` result to the current chunk."""
        self.ids.extend(res["ids"])
        self.vecs.extend(res["vecs"])
        self.chunk_frames.extend(res.get("frames", []))
        self.chunk_views.extend(res.get("views", []))
        self.chunk_tags.extend(res.get("tags", []))
        self.fails.extend(res["fails"])
        for key in ("audio_sec", "decode_sec", "model_sec"):
            self.chunk_stats[key] += res.get(key, 0.0)

    def commit(self, work_unit: dict[str, Any] | None = None) -> None:
        """Write the current chunk (vectors first, the JSON commit marker last) and start a new one.

        ``work_unit`` (an engine's record of the shard this chunk is: index, worker, attempts, timings) is kept in
        the marker and in :attr:`work_units`, so the final meta lists the shards of every run that contributed.
        """
        if not self.ids and not self.fails:
            return
        self.chunk_stats["wall_sec"] = time.perf_counter() - self.t_chunk
        arr = np.stack(self.vecs).astype(np.float32) if self.vecs else np.zeros((0, self.dim), np.float32)
        stem = self.part / f"chunk_{self.n_chunk:05d}"
        with atomic_open(stem.with_suffix(".npy"), "wb") as f:
            np.save(f, arr, allow_pickle=False)
        marker: dict[str, Any] = {"ids": self.ids, "failures": self.fails, "stats": self.chunk_stats}
        if work_unit is not None:
            marker["work_unit"] = work_unit
            self.work_units.append(work_unit)
        if self.chunk_frames:
            marker["frame_counts"] = [int(b.shape[0]) for b in self.chunk_frames]
            with atomic_open(stem.with_suffix(".frames.npy"), "wb") as f:
                np.save(f, np.concatenate(self.chunk_frames).astype(np.float16), allow_pickle=False)
        if any(self.chunk_views):
            marker["view_counts"] = [[int(b.shape[0]) for b in per] for per in self.chunk_views]
            with atomic_open(stem.with_suffix(".views.npy"), "wb") as f:
                np.save(
                    f,
                    np.concatenate([b for per in self.chunk_views for b in per]).astype(np.float16),
                    allow_pickle=False,
                )
        if self.chunk_tags:
            with atomic_open(stem.with_suffix(".tags.npy"), "wb") as f:
                np.save(f, np.stack(self.chunk_tags).astype(np.float32), allow_pickle=False)
        write_json(stem.with_suffix(".json"), marker)  # the commit marker: written last
        self.done.update(zip(self.ids, self.vecs, strict=True))
        self.frames.update(zip(self.ids, self.chunk_frames, strict=False))
        self.views.update(zip(self.ids, self.chunk_views, strict=False))
        self.tags.update(zip(self.ids, self.chunk_tags, strict=False))
        self.failures.extend(self.fails)
        for key in STAT_KEYS:
            self.stats[key] += self.chunk_stats[key]
        self.n_chunk += 1
        self._new_chunk()
        if self.on_commit is not None:
            self.on_commit(len(self.done) + len(self.failures))


def embed_rows(
    encoder: Encoder,
    rows: Sequence[TrackRow],
    load: Callable[[TrackRow], np.ndarray],
    spec: FrameSpec = FrameSpec(),
) -> dict[str, Any]:
    """Decode (``load``), check and embed ``rows``; the outcomes of the inline path, in any process.

    Returns :func:`embed_kept`'s dict, with the decode and validation failures first in ``fails`` and the
    batch's ``decode_sec``.
    """
    fails: list[dict[str, str]] = []
    decode_sec = 0.0
    kept: list[tuple[str, np.ndarray]] = []
    for row in rows:
        t0 = time.perf_counter()
        wav: np.ndarray | None = None
        error: BaseException | None = None
        try:
            wav = np.asarray(load(row), dtype=np.float32)
        except TRACK_ERRORS as e:
            error = e
        decode_sec += time.perf_counter() - t0
        wav, failure = checked_wave(row.track_id, wav, error)
        if failure is not None:
            fails.append(failure)
        else:
            assert wav is not None
            kept.append((row.track_id, wav))
    out = embed_kept(encoder, kept, spec)
    out["fails"] = fails + out["fails"]
    out["decode_sec"] = decode_sec
    return out
