"""The track-embedding artifacts as a library: read and write them, post-process and normalise vectors.

``embeddings/embeddings.f32`` (row-major little-endian float32 [N, D], unit rows), ``track_ids.json`` (row i is
``track_ids[i]``) and ``embeddings_meta.json`` are written by :func:`write_embeddings` only and read back by
:func:`load_embeddings` only. The embed step, embed-segments, find-similar, build-index, evaluate, the benches
and the test factories all go through these functions, so the checks (silent waveforms, degenerate vectors) and
the corpus post-processing a query gets are the ones the corpus got.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from research_job import schema
from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.io.atomic import atomic_open, write_bytes
from research_job.layout import ArtifactLayout, artifact_version
from research_job.models.base import Encoder
from research_job.provenance import code_version, sha256_bytes, sha256_file, utc_now

POSTPROCESS = ("none", "center", "standardize", "block_standardize", "pca_whiten")
#: the embed step's default: removing the corpus mean before cosine helped or tied every musicnn model and fusion
#: on both quality corpora (docs/quality.md), the centring remedy for hubs (Suzuki et al., EMNLP 2013)
DEFAULT_POSTPROCESS = "center"
POSTPROCESS_FILE = "postprocess.npz"
#: a pooled vector with a smaller L2 norm is treated as silent / degenerate
MIN_NORM = 1e-6
#: a waveform whose peak is below this is silent (rejected before the model sees it)
SILENCE_PEAK = 1e-5


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


def fit_postprocess(raw: np.ndarray, kind: str, blocks: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Fit a corpus transform on the raw pooled vectors [N, D] -> arrays ``mean`` (and ``scale`` / ``matrix``).

    ``block_standardize`` z-scores every dimension, then divides each block of ``blocks`` (the dimensions of a
    fusion's members) by the square root of its size, so every block has the same total variance.
    """
    x = raw.astype(np.float64)
    mean = x.mean(axis=0)
    if kind == "center":
        return {"mean": mean}
    if kind in ("standardize", "block_standardize"):
        std = x.std(axis=0)
        scale = 1.0 / np.where(std > 1e-12, std, 1.0)
        if kind == "block_standardize":
            sizes = list(blocks or [x.shape[1]])
            if sum(sizes) != x.shape[1] or any(b < 1 for b in sizes):
                raise ConfigError(
                    f"block_standardize: blocks {sizes} do not add up to the dimension {x.shape[1]}"
                )
            scale = scale / np.sqrt(np.repeat(np.asarray(sizes, dtype=np.float64), sizes))
        return {"mean": mean, "scale": scale}
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


def transform(x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Apply fitted post-processing ``params`` (:func:`fit_postprocess`) to raw vectors, in float64."""
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
            x = transform(x, {k: z[k] for k in z.files})
    return l2_normalize(x)


def check_vector(v: np.ndarray) -> str | None:
    """Why a pooled vector must not become a row (non-finite, near zero), or None."""
    if not np.all(np.isfinite(v)):
        return "non-finite embedding (NaN or inf)"
    if float(np.linalg.norm(v.astype(np.float64))) < MIN_NORM:
        return f"near-zero embedding (norm < {MIN_NORM:g})"
    return None


def wave_problem(wav: np.ndarray) -> str | None:
    """Why a decoded waveform must not reach the model (empty, non-finite, silent), or None."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if wav.size == 0 or not np.isfinite(peak):
        return "empty or non-finite audio"
    if peak < SILENCE_PEAK:
        return f"silent audio (peak {peak:.3g})"
    return None


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
    extra: dict[str, Any] | None = None,
    extra_files: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the embedding artifacts of a version folder: ``embeddings.f32`` (row i is ``track_ids[i]``),
    ``track_ids.json`` and ``embeddings_meta.json`` (validated, atomic, meta last); return the meta.

    The one writer of this contract: the embed step, and the test and benchmark generators, call it.

    Args:
        vectors: float32 [N, dim], already L2-normalised; info: the encoder's ``info()``.
        stats: the ``stats`` object of the schema; postprocess: its ``postprocess`` object (default none).
        extra: more top-level keys of the schema (``engine``, ``incremental``); extra_files: more ``files`` keys.

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
            **(extra_files or {}),
        },
        "segments": None,
        "stats": stats,
        "failures": list(failures),
        "created_at": created_at or utc_now(),
        "code_version": code_version(),
        **(extra or {}),
    }
    schema.write_artifact(layout.embeddings_meta, "embeddings_meta", meta)
    return meta


def embed_waveforms(encoder: Encoder, waves: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled vectors of ``waves`` (no normalisation); convenience for query-time use with :func:`apply_postprocess`."""
    return np.asarray(encoder.embed(list(waves)), dtype=np.float32)


def postprocess_corpus(
    layout: ArtifactLayout, raw: np.ndarray, kind: str, blocks: Sequence[int] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit the corpus post-processing ``kind`` on the raw pooled rows and apply it (not yet normalised).

    Writes ``embeddings/postprocess.npz`` (atomic) for any kind but ``none``, so that queries get the same
    transform (:func:`apply_postprocess`).

    Returns:
        (float64 [N, D] transformed rows, the ``postprocess`` object of ``embeddings_meta.json``).
    """
    if kind not in POSTPROCESS:
        raise ConfigError(unknown_choice("postprocess", kind, POSTPROCESS))
    if kind == "none":
        return raw.astype(np.float64), {"type": "none", "file": None, "sha256": None, "fitted_on": 0}
    params = fit_postprocess(raw, kind, blocks)
    path = layout.postprocess
    with atomic_open(path, "wb") as f:
        np.savez(f, **params)  # type: ignore[arg-type]
    meta = {"type": kind, "file": path.name, "sha256": sha256_file(path), "fitted_on": int(raw.shape[0])}
    return transform(raw, params), meta
