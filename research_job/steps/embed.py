"""embed: standardised audio -> ``embeddings/embeddings.f32`` + ``track_ids.json`` + ``embeddings_meta.json``.

Per track: load the standardised waveform, run the encoder (pooled vector), reject silent / near-zero / non-finite
results (recorded in ``failures``, never written as a row), then fit the optional corpus post-processing and
L2-normalise. Rows follow the metadata CSV order, so a rerun yields identical bytes.

Resume: finished tracks are checkpointed to ``embeddings/partial/`` every ``checkpoint_every`` tracks (a
``chunk_NNNNN.npy`` of raw pooled vectors, then its ``chunk_NNNNN.json`` of ids and failures as the commit
marker). ``partial/spec.json`` records the model spec and info; a different model discards the checkpoints.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from research_job import schema
from research_job.config import EmbedConfig
from research_job.errors import ArtifactError, ConfigError, ResearchJobError, unknown_choice
from research_job.io.atomic import atomic_open, write_bytes, write_json
from research_job.io.prefetch import Loaded, prefetched
from research_job.layout import LAYOUT_VERSION, ArtifactLayout, model_dir_name
from research_job.metadata import read_tracks_csv
from research_job.models.base import Encoder, sha256_file
from research_job.steps.standardize_audio import load_track_audio
from research_job.version import code_version

LOG = logging.getLogger(__name__)

POSTPROCESS = ("none", "center", "standardize", "pca_whiten")
POSTPROCESS_FILE = "postprocess.npz"
#: a pooled vector with a smaller L2 norm is treated as silent / degenerate
MIN_NORM = 1e-6
#: a waveform whose peak is below this is silent (rejected before the model sees it)
SILENCE_PEAK = 1e-5
_ARTIFACT_VERSION = re.compile(r"^v[0-9]+_model_[A-Za-z0-9._-]+$")


def artifact_version(layout: ArtifactLayout, model: str) -> str:
    """The version folder name when it follows ``v<N>_model_<MODEL>``, else the canonical one for ``model``."""
    name = layout.version_dir.name
    return name if _ARTIFACT_VERSION.match(name) else f"{LAYOUT_VERSION}_model_{model_dir_name(model)}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now_iso() -> str:
    """UTC timestamp in RFC 3339 form (``2026-11-22T04:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- reading the artifacts back


def load_embeddings(layout: ArtifactLayout) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read ``embeddings.f32``, ``track_ids.json`` and ``embeddings_meta.json`` and check they agree.

    Returns:
        (float32 [N, D] vectors, N track ids, meta dict).

    Raises:
        ArtifactError: a file is missing or the sizes disagree; SchemaValidationError: a JSON is invalid.
    """
    for p in (layout.embeddings_f32, layout.track_ids_json, layout.embeddings_meta):
        if not p.is_file():
            raise ArtifactError(f"Missing {p} (run embed first)")
    meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
    ids = schema.read_artifact(layout.track_ids_json, "track_ids")["track_ids"]
    dim = int(meta["dim"])
    raw = np.fromfile(layout.embeddings_f32, dtype="<f4")
    if raw.size != len(ids) * dim:
        raise ArtifactError(
            f"{layout.embeddings_f32}: {raw.size * 4} bytes, expected {len(ids)} x {dim} x 4 = {len(ids) * dim * 4}"
        )
    return raw.reshape(len(ids), dim).astype(np.float32, copy=False), list(ids), meta


# ---------------------------------------------------------------- post-processing


def fit_postprocess(raw: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Fit a corpus transform on the raw pooled vectors [N, D] -> arrays ``mean`` (and ``scale`` / ``matrix``)."""
    x = raw.astype(np.float64)
    mean = x.mean(axis=0)
    if kind == "center":
        return {"mean": mean}
    if kind == "standardize":
        std = x.std(axis=0)
        return {"mean": mean, "scale": 1.0 / np.where(std > 1e-12, std, 1.0)}
    if kind == "pca_whiten":
        xc = x - mean
        cov = xc.T @ xc / max(1, x.shape[0] - 1)
        w, v = np.linalg.eigh(cov)
        order = np.argsort(-w, kind="stable")
        w, v = w[order], v[:, order]
        # deterministic eigenvector signs: largest-magnitude component positive
        signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
        v = v * np.where(signs == 0, 1.0, signs)
        eps = 1e-6 * max(float(w[0]), 1e-12)
        return {"mean": mean, "matrix": v / np.sqrt(np.maximum(w, 0.0) + eps)}
    raise ConfigError(unknown_choice("postprocess", kind, POSTPROCESS))


def _transform(x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    y = x.astype(np.float64) - params["mean"]
    if "scale" in params:
        y = y * params["scale"]
    if "matrix" in params:
        y = y @ params["matrix"]
    return y


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (computed in float64), as float32."""
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def apply_postprocess(vectors: np.ndarray, layout: ArtifactLayout) -> np.ndarray:
    """Apply the corpus transform recorded in ``embeddings_meta.json`` to raw pooled query vectors, then L2-normalise.

    A query embedded with the same model gets exactly the treatment the corpus rows got.
    """
    meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
    pp = meta["postprocess"]
    x = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if pp["type"] != "none":
        path = layout.embeddings_dir / pp["file"]
        if sha256_file(path) != pp["sha256"]:
            raise ArtifactError(f"{path}: sha256 differs from embeddings_meta.json['postprocess']")
        with np.load(path, allow_pickle=False) as z:
            x = _transform(x, {k: z[k] for k in z.files})
    return l2_normalize(x)


# ---------------------------------------------------------------- audio


def _decoded(
    layout: ArtifactLayout, rows: Sequence[Any], sample_rate: int, lookahead: int
) -> Iterator[Loaded[Any, np.ndarray]]:
    """Each row's mono float32 waveform (or its decode error), in order, decoded up to ``lookahead`` tracks ahead
    by a background thread while the model runs (:func:`research_job.io.prefetch.prefetched`)."""

    def load(row: Any) -> np.ndarray:
        return np.asarray(load_track_audio(layout, row, sample_rate), dtype=np.float32)

    return prefetched(rows, load, lookahead, catch=(ResearchJobError,))


# ---------------------------------------------------------------- checkpoints


def _spec(encoder: Encoder) -> dict[str, Any]:
    return {
        "model": encoder.name,
        "dim": int(encoder.dim),
        "sample_rate": int(encoder.sample_rate),
        "info": encoder.info(),
    }


def _load_checkpoints(
    part: Path, spec: dict[str, Any]
) -> tuple[dict[str, np.ndarray], list[dict[str, str]], dict[str, float], int]:
    """Read committed chunks of a previous run of the same model; discard the folder if the model differs."""
    done: dict[str, np.ndarray] = {}
    failures: list[dict[str, str]] = []
    stats = {"audio_sec": 0.0, "decode_sec": 0.0, "model_sec": 0.0, "wall_sec": 0.0}
    spec_file = part / "spec.json"
    if part.exists():
        try:
            old = json.loads(spec_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old != json.loads(json.dumps(spec)):
            LOG.warning("Discarding checkpoints in %s: made by another model spec", part)
            shutil.rmtree(part)
    part.mkdir(parents=True, exist_ok=True)
    write_json(spec_file, spec)
    n_chunks = 0
    for js in sorted(part.glob("chunk_*.json")):
        info = json.loads(js.read_text(encoding="utf-8"))
        vec_path = js.with_suffix(".npy")
        vecs = (
            np.load(vec_path, allow_pickle=False) if info["ids"] else np.zeros((0, spec["dim"]), np.float32)
        )
        if vecs.shape != (len(info["ids"]), spec["dim"]):
            raise ArtifactError(f"Corrupt checkpoint {vec_path}: shape {vecs.shape}; delete {part} and rerun")
        for tid, v in zip(info["ids"], vecs, strict=True):
            done[tid] = v
        failures.extend(info["failures"])
        for key in stats:
            stats[key] += float(info["stats"].get(key, 0.0))
        n_chunks += 1
    return done, failures, stats, n_chunks


def _write_chunk(
    part: Path,
    n: int,
    ids: list[str],
    vecs: list[np.ndarray],
    failures: list[dict[str, str]],
    stats: dict[str, float],
    dim: int,
) -> None:
    arr = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
    with atomic_open(part / f"chunk_{n:05d}.npy", "wb") as f:
        np.save(f, arr, allow_pickle=False)
    # the json is the commit marker: written last
    write_json(part / f"chunk_{n:05d}.json", {"ids": ids, "failures": failures, "stats": stats})


# ---------------------------------------------------------------- the step


def _reusable(
    layout: ArtifactLayout, encoder: Encoder, cfg: EmbedConfig, rows: Sequence[Any]
) -> dict[str, Any] | None:
    """The existing ``embeddings_meta.json`` when the final files are complete, verified and made by this model
    with this post-processing from exactly these tracks; else None (embed again)."""
    try:
        meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
        ids = schema.read_artifact(layout.track_ids_json, "track_ids")["track_ids"]
    except (OSError, ResearchJobError):
        return None
    info = encoder.info()
    same_model = meta["model"]["name"] == encoder.name and meta["model"]["version"] == str(
        info.get("version")
    )
    same_model = same_model and meta["model"]["params"] == json.loads(json.dumps(info.get("params", {})))
    same_model = same_model and meta["model"]["weights_sha256"] == info.get("weights_sha256")
    accounted = set(ids) | {f["track_id"] for f in meta["failures"]}
    if (
        not same_model
        or meta["postprocess"]["type"] != cfg.postprocess
        or accounted != {r.track_id for r in rows}
    ):
        return None
    if (
        not layout.embeddings_f32.is_file()
        or sha256_file(layout.embeddings_f32) != meta["files"]["embeddings_sha256"]
    ):
        return None
    if sha256_file(layout.track_ids_json) != meta["files"]["track_ids_sha256"]:
        return None
    return dict(meta)


def _reason(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    return msg if isinstance(e, ResearchJobError) else f"{type(e).__name__}: {msg}"


def _check_vector(v: np.ndarray) -> str | None:
    if not np.all(np.isfinite(v)):
        return "non-finite embedding (NaN or inf)"
    if float(np.linalg.norm(v.astype(np.float64))) < MIN_NORM:
        return f"near-zero embedding (norm < {MIN_NORM:g})"
    return None


def _wave_problem(wav: np.ndarray) -> str | None:
    """Why a decoded waveform must not reach the model (empty, non-finite, silent), or None."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if wav.size == 0 or not np.isfinite(peak):
        return "empty or non-finite audio"
    if peak < SILENCE_PEAK:
        return f"silent audio (peak {peak:.3g})"
    return None


def _embed_isolated(
    encoder: Encoder, waves: Sequence[np.ndarray]
) -> list[tuple[np.ndarray | None, str | None]]:
    """(vector, None) or (None / vector, reason) per waveform. A batch that raises is retried one track at a time,
    so one bad track fails alone."""
    try:
        out = np.asarray(encoder.embed(list(waves)), dtype=np.float32)
        if out.shape != (len(waves), encoder.dim):
            raise ArtifactError(f"encoder returned shape {out.shape}, expected {(len(waves), encoder.dim)}")
        return [(v, _check_vector(v)) for v in out]
    except Exception as e:  # noqa: BLE001 - one bad track must not sink the run; reason recorded
        if len(waves) == 1:
            return [(None, _reason(e))]
    results: list[tuple[np.ndarray | None, str | None]] = []
    for w in waves:
        try:
            v = np.asarray(encoder.embed([w]), dtype=np.float32)[0]
            results.append((v, _check_vector(v)))
        except Exception as e1:  # noqa: BLE001 - recorded as this track's failure
            results.append((None, _reason(e1)))
    return results


# ---------------------------------------------------------------- worker processes (EmbedConfig.processes > 1)
#: the encoder of this worker process, loaded once by _worker_init
_WORKER: dict[str, Any] = {}


def _worker_init(factory: Callable[[], Encoder], threads: int) -> None:
    """Pool initializer: ``threads`` torch threads, then this worker's own encoder from ``factory``."""
    import torch

    torch.set_num_threads(threads)
    _WORKER["encoder"] = factory()


def _embed_kept(encoder: Encoder, kept: Sequence[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """Embed checked waveforms (``(track_id, wave)`` pairs): ``ids`` and ``vecs`` (raw pooled vectors) of those
    that embedded, ``fails`` (stage ``embed``) of the others, ``audio_sec`` of the embedded audio, ``model_sec``."""
    t0 = time.perf_counter()
    results = _embed_isolated(encoder, [w for _, w in kept]) if kept else []
    out: dict[str, Any] = {"ids": [], "vecs": [], "fails": [], "audio_sec": 0.0}
    out["model_sec"] = time.perf_counter() - t0
    for (tid, w), (v, why) in zip(kept, results, strict=True):
        if why is not None or v is None:
            out["fails"].append({"track_id": tid, "stage": "embed", "reason": why or "no output"})
        else:
            out["ids"].append(tid)
            out["vecs"].append(v)
            out["audio_sec"] += w.size / encoder.sample_rate
    return out


def _worker_batch(layout: ArtifactLayout, rows: Sequence[Any], sample_rate: int) -> dict[str, Any]:
    """Decode, check and embed ``rows`` in a worker process; the same outcomes as the inline path.

    Returns :func:`_embed_kept`'s dict, with the decode and validation failures first in ``fails`` and the
    batch's ``decode_sec``.
    """
    fails: list[dict[str, str]] = []
    decode_sec = 0.0
    kept: list[tuple[str, np.ndarray]] = []
    for row in rows:
        t0 = time.perf_counter()
        try:
            wav = np.asarray(load_track_audio(layout, row, sample_rate), dtype=np.float32)
        except ResearchJobError as e:
            fails.append({"track_id": row.track_id, "stage": "decode", "reason": str(e)})
            continue
        finally:
            decode_sec += time.perf_counter() - t0
        why = _wave_problem(wav)
        if why is not None:
            fails.append({"track_id": row.track_id, "stage": "validate", "reason": why})
        else:
            kept.append((row.track_id, wav))
    out = _embed_kept(_WORKER["encoder"], kept)
    out["fails"] = fails + out["fails"]
    out["decode_sec"] = decode_sec
    return out


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    if cfg.postprocess not in POSTPROCESS:
        raise ConfigError(unknown_choice("postprocess", cfg.postprocess, POSTPROCESS))
    if cfg.batch_size < 1 or cfg.checkpoint_every < 1:
        raise ConfigError(
            f"batch_size and checkpoint_every must be >= 1, got {cfg.batch_size}, {cfg.checkpoint_every}"
        )
    if cfg.decode_ahead < 0:
        raise ConfigError(f"decode_ahead must be >= 0 (0 = decode inline), got {cfg.decode_ahead}")
    if cfg.processes < 1:
        raise ConfigError(f"processes must be >= 1 (1 = embed in this process), got {cfg.processes}")
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
        if encoder is not None and encoder_factory is None:
            raise ConfigError(
                "processes > 1 loads the model in each worker process: pass encoder_factory (a picklable callable), "
                "not a loaded encoder"
            )
    if cfg.segment_window_sec is not None:
        raise ConfigError("segment embeddings are not implemented; leave segment_window_sec unset")
    layout = cfg.common.layout
    t_start = time.perf_counter()
    rows = read_tracks_csv(layout.tracks_csv)
    if not rows:
        raise ArtifactError(f"{layout.tracks_csv} has no tracks")
    if encoder_factory is None:
        from research_job.models.registry import load_model

        # only a non-default device is passed on: weight-less backends take no options
        device_kw = {"device": cfg.device} if cfg.device != "cpu" else {}
        encoder_factory = functools.partial(load_model, cfg.common.model, **device_kw)
    if encoder is None:
        encoder = encoder_factory()
    spec = _spec(encoder)
    reused = _reusable(layout, encoder, cfg, rows)
    if reused is not None:
        LOG.info(
            "Embeddings in %s are complete for this model and metadata: reusing them", layout.embeddings_dir
        )
        return reused
    part = layout.embed_checkpoint_dir
    done, failures, prev, n_chunk = _load_checkpoints(part, spec)
    finished = set(done) | {f["track_id"] for f in failures}
    todo = [r for r in rows if r.track_id not in finished]
    if finished:
        LOG.info("Resuming: %d tracks already done, %d to go", len(finished), len(todo))

    stats = {"audio_sec": 0.0, "decode_sec": 0.0, "model_sec": 0.0, "wall_sec": 0.0}
    c_ids: list[str] = []
    c_vecs: list[np.ndarray] = []
    c_fail: list[dict[str, str]] = []
    c_stats = dict.fromkeys(stats, 0.0)
    t_chunk = time.perf_counter()

    def commit() -> None:
        nonlocal n_chunk, c_ids, c_vecs, c_fail, c_stats, t_chunk
        if not c_ids and not c_fail:
            return
        c_stats["wall_sec"] = time.perf_counter() - t_chunk
        _write_chunk(part, n_chunk, c_ids, c_vecs, c_fail, c_stats, encoder.dim)
        for tid, v in zip(c_ids, c_vecs, strict=True):
            done[tid] = v
        failures.extend(c_fail)
        for key in stats:
            stats[key] += c_stats[key]
        n_chunk += 1
        c_ids, c_vecs, c_fail, c_stats = [], [], [], dict.fromkeys(stats, 0.0)
        t_chunk = time.perf_counter()
        if on_chunk_committed is not None:
            on_chunk_committed(len(done) + len(failures))

    pending: list[tuple[str, np.ndarray]] = []

    def absorb(res: dict[str, Any]) -> None:
        """Add an :func:`_embed_kept` / :func:`_worker_batch` result to the current chunk."""
        c_ids.extend(res["ids"])
        c_vecs.extend(res["vecs"])
        c_fail.extend(res["fails"])
        for key in ("audio_sec", "decode_sec", "model_sec"):
            c_stats[key] += res.get(key, 0.0)

    def flush_batch() -> None:
        if not pending:
            return
        absorb(_embed_kept(encoder, pending))
        pending.clear()

    if cfg.processes > 1:
        threads = cfg.threads_per_process or max(1, _usable_cpus() // cfg.processes)
        batches = [[row] for row in todo]
        LOG.info("Embedding with %d worker processes x %d torch threads", cfg.processes, threads)
        ctx = multiprocessing.get_context("spawn")  # no fork after torch/OpenMP started threads
        with (
            ProcessPoolExecutor(
                cfg.processes, mp_context=ctx, initializer=_worker_init, initargs=(encoder_factory, threads)
            ) as pool,
            tqdm(total=len(todo), desc="embed", unit="track", disable=None) as bar,
        ):
            window: deque[Future[dict[str, Any]]] = deque()
            it = iter(batches)
            for batch in itertools.islice(it, 2 * cfg.processes):
                window.append(pool.submit(_worker_batch, layout, batch, encoder.sample_rate))
            while window:
                try:
                    res = window.popleft().result()
                except BrokenProcessPool as e:
                    raise ArtifactError(
                        f"an embed worker process died ({e}); tracks committed so far are checkpointed in {part}: "
                        "rerun to resume, with processes: 1 to isolate the track"
                    ) from e
                nxt = next(it, None)
                if nxt is not None:
                    window.append(pool.submit(_worker_batch, layout, nxt, encoder.sample_rate))
                absorb(res)
                bar.update(len(res["ids"]) + len(res["fails"]))
                if len(c_ids) + len(c_fail) >= cfg.checkpoint_every:
                    commit()
        commit()
    else:
        decoded = _decoded(layout, todo, encoder.sample_rate, cfg.decode_ahead)
        for got in tqdm(decoded, total=len(todo), desc="embed", unit="track", disable=None):
            row, wav = got.item, got.value
            if got.error is not None:
                c_fail.append({"track_id": row.track_id, "stage": "decode", "reason": str(got.error)})
            c_stats["decode_sec"] += got.seconds
            if wav is not None:
                why = _wave_problem(wav)
                if why is not None:
                    c_fail.append({"track_id": row.track_id, "stage": "validate", "reason": why})
                else:
                    pending.append((row.track_id, wav))
            if len(pending) >= cfg.batch_size:
                flush_batch()
            if len(c_ids) + len(c_fail) + len(pending) >= cfg.checkpoint_every:
                flush_batch()
                commit()
        flush_batch()
        commit()

    ok_ids = [r.track_id for r in rows if r.track_id in done]
    if not ok_ids:
        reasons = "; ".join(f"{f['track_id']}: {f['reason']}" for f in failures[:3])
        raise ArtifactError(f"All {len(rows)} tracks failed to embed ({reasons})")
    raw = np.stack([done[t] for t in ok_ids]).astype(np.float32)
    pp_meta: dict[str, Any] = {"type": cfg.postprocess, "file": None, "sha256": None, "fitted_on": 0}
    x = raw.astype(np.float64)
    if cfg.postprocess != "none":
        params = fit_postprocess(raw, cfg.postprocess)
        with atomic_open(layout.embeddings_dir / POSTPROCESS_FILE, "wb") as f:
            np.savez(f, **params)  # type: ignore[arg-type]
        pp_meta = {
            "type": cfg.postprocess,
            "file": POSTPROCESS_FILE,
            "sha256": sha256_file(layout.embeddings_dir / POSTPROCESS_FILE),
            "fitted_on": len(ok_ids),
        }
        x = _transform(raw, params)
    norms = np.linalg.norm(x, axis=1)
    keep = norms >= MIN_NORM
    for tid in np.asarray(ok_ids)[~keep]:
        failures.append(
            {"track_id": str(tid), "stage": "validate", "reason": "near-zero vector after postprocess"}
        )
    ok_ids = [t for t, k in zip(ok_ids, keep, strict=True) if k]
    if not ok_ids:
        raise ArtifactError(f"All {len(rows)} tracks failed to embed")
    vectors = l2_normalize(x[keep])
    # failures in CSV order, for a stable file
    order = {r.track_id: i for i, r in enumerate(rows)}
    failures.sort(key=lambda f: order.get(f["track_id"], len(order)))
    wall = prev["wall_sec"] + (time.perf_counter() - t_start)
    audio_sec = prev["audio_sec"] + stats["audio_sec"]
    meta = write_embeddings(
        layout,
        vectors,
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
            "audio_sec": round(audio_sec, 3),
            "wall_sec": round(wall, 3),
            "decode_sec": round(prev["decode_sec"] + stats["decode_sec"], 3),
            "model_sec": round(prev["model_sec"] + stats["model_sec"], 3),
            "x_realtime": round(audio_sec / wall, 3) if wall > 0 else 0.0,
        },
        failures=failures,
    )
    shutil.rmtree(part, ignore_errors=True)
    LOG.info(
        "Embedded %d of %d tracks (%d failed), dim %d", len(ok_ids), len(rows), len(failures), encoder.dim
    )
    return meta


def write_embeddings(
    layout: ArtifactLayout,
    vectors: np.ndarray,
    track_ids: Sequence[str],
    *,
    model_name: str,
    info: dict[str, Any],
    dim: int,
    sample_rate: int,
    stats: dict[str, Any],
    failures: Sequence[dict[str, Any]] = (),
    postprocess: dict[str, Any] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """Write the embedding artifacts of a version folder: ``embeddings.f32`` (row i is ``track_ids[i]``),
    ``track_ids.json`` and ``embeddings_meta.json`` (validated, atomic, meta last); return the meta.

    The one writer of this contract: the embed step, and the test and benchmark generators, call it.

    Args:
        vectors: float32 [N, dim], already L2-normalised; info: the encoder's ``info()``.
        stats: the ``stats`` object of the schema; postprocess: its ``postprocess`` object (default none).

    Raises:
        SchemaValidationError: ids not unique or unsafe, or a field outside the schema.
    """
    data = np.ascontiguousarray(vectors, dtype="<f4").tobytes(order="C")
    ids_obj = {"schema_version": "1.0", "count": len(track_ids), "track_ids": list(track_ids)}
    schema.validate("track_ids", ids_obj, source=layout.track_ids_json)
    write_bytes(layout.embeddings_f32, data)
    schema.write_artifact(layout.track_ids_json, "track_ids", ids_obj)
    pooling = info.get("pooling", "mean")
    meta = {
        "schema_version": "1.0",
        "artifact_version": artifact_version(layout, model_name),
        "model": {
            "name": model_name,
            "version": str(info.get("version", "unknown")),
            "weights_sha256": info.get("weights_sha256"),
            "pooling": pooling,
            "layer": info.get("layer"),
            "params": info.get("params", {}),
        },
        "dim": dim,
        "count": len(track_ids),
        "dtype": "float32",
        "byte_order": "little",
        "layout": "row-major",
        "sample_rate": sample_rate,
        "pooling": pooling if pooling in ("mean", "mean_std", "max") else "mean",
        "normalization": "l2",
        "postprocess": postprocess or {"type": "none", "file": None, "sha256": None, "fitted_on": 0},
        "files": {
            "embeddings": "embeddings.f32",
            "embeddings_sha256": sha256_bytes(data),
            "track_ids": "track_ids.json",
            "track_ids_sha256": sha256_file(layout.track_ids_json),
        },
        "segments": None,
        "stats": stats,
        "failures": list(failures),
        "created_at": created_at or now_iso(),
        "code_version": code_version(),
    }
    schema.write_artifact(layout.embeddings_meta, "embeddings_meta", meta)
    return meta


def embed_waveforms(encoder: Encoder, waves: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled vectors of ``waves`` (no normalisation); convenience for query-time use with :func:`apply_postprocess`."""
    return np.asarray(encoder.embed(list(waves)), dtype=np.float32)
