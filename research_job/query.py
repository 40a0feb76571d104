"""Embed one query audio file exactly as the corpus of an artifact folder was embedded.

The recorded facts in ``embeddings/embeddings_meta.json`` decide everything: the model spec is loaded from the
registry and its ``info()`` (name, version, weights_sha256, layer) must equal the recorded one; the query is
decoded (any codec the pipeline decodes) at the recorded sample rate and cut at the ``max_duration_sec`` the
standardise step used (when the corpus was embedded from those WAVs); the recorded corpus post-processing and
the L2 norm are applied with :func:`research_job.embeddings.apply_postprocess`. A mismatch is refused, never
silently searched.

A head folder (:func:`research_job.heads.is_head_folder`) is queried through its head: the backbone recorded in
``head/head_meta.json`` is loaded and must match that record (name, version, weights_sha256, layer), the head is
loaded with its ``head.pt`` checked against the record, and a query's vector is
``head.embed(encoder.embed_frames([wave], head.layers)[1])``, exactly how train-head embedded every row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.embeddings import MIN_NORM, SILENCE_PEAK, apply_postprocess, embed_waveforms
from research_job.errors import ArtifactError, AudioDecodeError, ModelError
from research_job.io.audio import decode_audio
from research_job.layout import ArtifactLayout
from research_job.models.base import Encoder

#: the ``info()`` keys that must agree between the loaded model and ``embeddings_meta.json['model']``
CHECKED_KEYS = ("name", "version", "weights_sha256", "layer")


@dataclass(frozen=True)
class QueryEncoder:
    """A loaded encoder checked against an artifact folder, plus what is needed to embed like the corpus."""

    encoder: Encoder
    layout: ArtifactLayout
    meta: dict[str, Any]
    max_duration_sec: float | None
    #: the trained head of a head folder (:class:`research_job.heads.Head`), else None
    head: Any = None


def recorded_model(meta: dict[str, Any]) -> dict[str, Any]:
    """The checked facts of the model recorded in an ``embeddings_meta`` dict."""
    return {key: meta["model"].get(key) for key in CHECKED_KEYS}


def loaded_model(encoder: Encoder) -> dict[str, Any]:
    """The checked facts of a loaded encoder (``name`` is the registry spec it was loaded from)."""
    info = encoder.info()
    return {
        "name": encoder.name,
        "version": str(info.get("version", "unknown")),
        "weights_sha256": info.get("weights_sha256"),
        "layer": info.get("layer"),
    }


def check_same_model(recorded: dict[str, Any], loaded: dict[str, Any], where: Path) -> None:
    """Raise :class:`ModelError` naming both values of every checked key that differs."""
    diffs = [
        f"{key}: artifacts {recorded.get(key)!r} vs loaded {loaded.get(key)!r}"
        for key in CHECKED_KEYS
        if recorded.get(key) != loaded.get(key)
    ]
    if diffs:
        raise ModelError(
            f"The loaded model differs from the one that embedded {where}: {'; '.join(diffs)}. "
            "Re-embed the corpus or use the recorded model."
        )


def _recorded_max_duration(layout: ArtifactLayout, sample_rate: int) -> float | None:
    """The cut standardize-audio applied, when the corpus was embedded from its WAVs (same sample rate);
    embed decodes the pulled files in full otherwise."""
    if not layout.standardize_report.is_file():
        return None
    report = schema.read_artifact(layout.standardize_report, "standardize_report")
    value = report.get("max_duration_sec")
    if value is None or int(report.get("sample_rate", 0)) != int(sample_rate):
        return None
    return float(value)


def load_query_encoder(
    layout: ArtifactLayout, *, model: str | None = None, encoder: Encoder | None = None
) -> QueryEncoder:
    """Load the model recorded in ``layout``'s embeddings and check it is the same model.

    Args:
        layout: the artifact version folder.
        model: a model spec the caller expects (``--model``); refused when it is not the recorded one.
        encoder: an already loaded encoder (tests); still checked against the record.

    Raises:
        ArtifactError: the embeddings are missing; ModelError: ``model`` differs from the recorded spec, the
            recorded model cannot be loaded, or the loaded model's info differs from the recorded one.
    """
    if not layout.embeddings_meta.is_file():
        raise ArtifactError(f"Missing {layout.embeddings_meta}: {layout.version_dir} has no embeddings")
    meta = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")
    from research_job.heads import is_head_folder

    if is_head_folder(layout):
        return _load_head_query_encoder(layout, meta, model=model, encoder=encoder)
    spec = meta["model"]["name"]
    if model is not None and model.strip() != spec:
        raise ModelError(
            f"--model {model.strip()!r} differs from the model that embedded {layout.version_dir}: {spec!r}"
        )
    if encoder is None:
        from research_job.models.registry import load_model

        encoder = load_model(spec)
    check_same_model(recorded_model(meta), loaded_model(encoder), layout.version_dir)
    if int(encoder.sample_rate) != int(meta["sample_rate"]) or int(encoder.dim) != int(meta["dim"]):
        raise ModelError(
            f"Loaded {spec!r} has sample rate {encoder.sample_rate} and dim {encoder.dim}; "
            f"{layout.embeddings_meta} records {meta['sample_rate']} and {meta['dim']}"
        )
    return QueryEncoder(encoder, layout, meta, _recorded_max_duration(layout, int(meta["sample_rate"])))


def _load_head_query_encoder(
    layout: ArtifactLayout, meta: dict[str, Any], *, model: str | None, encoder: Encoder | None
) -> QueryEncoder:
    """The recorded backbone, checked against ``head_meta.json``, plus the verified head of a head folder.

    Raises:
        ModelError: ``model`` is neither the head's nor its backbone's spec, the backbone or head.pt differs from
            the record (both values named), or the backbone returns no such frames; ArtifactError: the
            embeddings were not written by this head.
    """
    from research_job.heads import load_head, read_head_meta
    from research_job.models.base import FrameEncoder

    hmeta = read_head_meta(layout)
    recorded = hmeta["backbone"]["model"]
    spec = recorded["name"]
    if model is not None and model.strip() not in (spec, meta["model"]["name"]):
        raise ModelError(
            f"--model {model.strip()!r} differs from the backbone of the head in {layout.version_dir}: {spec!r}"
        )
    if (
        meta["model"]["name"] != hmeta["model_name"]
        or meta["model"]["weights_sha256"] != hmeta["files"]["head_sha256"]
    ):
        raise ArtifactError(
            f"{layout.embeddings_meta} records model {meta['model']['name']!r} with weights "
            f"{meta['model']['weights_sha256']!r}, head_meta.json the head {hmeta['model_name']!r} with "
            f"{hmeta['files']['head_sha256']!r}: run train-head again"
        )
    if encoder is None:
        from research_job.models.registry import load_model

        encoder = load_model(spec)
    check_same_model({k: recorded.get(k) for k in CHECKED_KEYS}, loaded_model(encoder), layout.head_meta)
    head = load_head(layout)
    if not isinstance(encoder, FrameEncoder) or any(n not in encoder.frame_layers for n in head.layers):
        raise ModelError(
            f"Backbone {spec!r} does not return the frame layers {list(head.layers)} the head reads"
        )
    if int(encoder.sample_rate) != int(meta["sample_rate"]):
        raise ModelError(
            f"Loaded {spec!r} has sample rate {encoder.sample_rate}; {layout.embeddings_meta} records {meta['sample_rate']}"
        )
    return QueryEncoder(encoder, layout, meta, _recorded_max_duration(layout, int(meta["sample_rate"])), head)


def load_query_audio(path: str | os.PathLike[str], qe: QueryEncoder) -> np.ndarray:
    """Decode ``path`` to mono float32 at the recorded sample rate, cut like the corpus was.

    Raises:
        AudioDecodeError: missing, undecodable, empty or silent file (naming it).
    """
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"Query file not found: {p}")
    wav, _ = decode_audio(p, int(qe.meta["sample_rate"]), max_duration_sec=qe.max_duration_sec)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak < SILENCE_PEAK:
        raise AudioDecodeError(f"Query file {p} is silent (peak {peak:.3g}); nothing to search with")
    return wav


def embed_query_waveforms(waves: list[np.ndarray], qe: QueryEncoder) -> np.ndarray:
    """Pooled vectors of waveforms (one call of the model) -> recorded post-processing -> L2 norm: float32 [n, D].

    For a head folder: the backbone's frames of the head's layers -> the head (unit norm already).

    Raises:
        ArtifactError: the model returned a non-finite or zero vector (for any of them).
    """
    if qe.head is not None:
        _, frames = qe.encoder.embed_frames(waves, qe.head.layers)  # type: ignore[attr-defined]
        return np.asarray(qe.head.embed([np.asarray(f, np.float32) for f in frames]), dtype=np.float32)
    raw = embed_waveforms(qe.encoder, waves)
    if raw.shape != (len(waves), int(qe.meta["dim"])) or not np.all(np.isfinite(raw)):
        raise ArtifactError(f"The model returned a bad query vector (shape {raw.shape}, NaN or inf)")
    if float(np.linalg.norm(raw.astype(np.float64), axis=1).min()) < MIN_NORM:
        raise ArtifactError("The model returned a near-zero query vector")
    out = apply_postprocess(raw, qe.layout)
    if not np.all(np.isfinite(out)):
        raise ArtifactError("The query vector is near zero after the recorded post-processing")
    return out


def embed_query_waveform(wav: np.ndarray, qe: QueryEncoder) -> np.ndarray:
    """:func:`embed_query_waveforms` of one waveform: float32 [1, D], unit norm."""
    return embed_query_waveforms([wav], qe)


def embed_query_file(path: str | os.PathLike[str], qe: QueryEncoder) -> np.ndarray:
    """Decode and embed one query file like the corpus: float32 [1, D], unit norm."""
    return embed_query_waveform(load_query_audio(path, qe), qe)
