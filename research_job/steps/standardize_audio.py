"""standardize-audio: ``audio_cache/`` -> ``audio_wav/<track_id>.wav`` (mono float32 at the model's rate).

Every pulled file is decoded with :func:`research_job.io.audio.decode_audio` (PyAV, channel mean, polyphase
resampling) and written as a float32 WAV atomically. A track that was not pulled, or whose file is corrupt,
empty or decodes to no samples, is reported ``failed`` with the reason and skipped; the others go on. Silent
audio is decoded as it is (the embed step decides what to do with it). A rerun reuses every WAV that is
complete (parses, right sample rate, data chunk not truncated) unless the last report was written with another
``max_duration_sec``; ``.tmp`` leftovers are never read.

The target sample rate is ``sample_rate`` from the config, else the model's: looked up in
:data:`MODEL_SAMPLE_RATES` without loading weights, or, for other specs, by loading the model.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from research_job.config import CommonConfig, option
from research_job.errors import AudioDecodeError, ConfigError, SchemaValidationError
from research_job.io.audio import (
    cached_path,
    decode_audio,
    probe_audio,
    read_wav_header,
    wav_is_complete,
    write_wav,
)
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import code_version, utc_now
from research_job.schema import read_artifact, write_artifact
from research_job.steps import Step

log = logging.getLogger(__name__)

#: sample rates of the registry's named models, so the step need not load weights to learn them
MODEL_SAMPLE_RATES: dict[str, int] = {
    "musicnn-msd": 16000,
    "musicnn-mtt": 16000,
    "dsp-stats": 22050,
    "random": 16000,
    "mert-v1-95m": 24000,
    "clap-music": 48000,
}


@dataclass(frozen=True)
class StandardizeAudioConfig:
    """standardize-audio: audio_cache -> audio_wav/<track_id>.wav, mono float32 at the model's sample rate."""

    common: CommonConfig = field(default_factory=CommonConfig)
    sample_rate: int | None = option(
        None, "target sample rate in Hz; unset = the model's (known without loading weights for named models)"
    )
    max_duration_sec: float | None = option(None, "keep at most this many seconds of each track; unset = all")
    workers: int = option(2, "tracks decoded in parallel (threads)")


def check(cfg: StandardizeAudioConfig) -> None:
    """Refuse a bad worker count, sample rate or duration before anything is read.

    Raises:
        ConfigError: naming the bad value.
    """
    if cfg.workers < 1:
        raise ConfigError(f"standardize-audio needs workers >= 1, got {cfg.workers}")
    if cfg.max_duration_sec is not None and cfg.max_duration_sec <= 0:
        raise ConfigError(f"Bad max_duration_sec {cfg.max_duration_sec}: must be > 0 or unset")
    if cfg.sample_rate is not None and cfg.sample_rate <= 0:
        raise ConfigError(f"Bad sample_rate {cfg.sample_rate}: must be a positive number of Hz")


def resolve_sample_rate(cfg: StandardizeAudioConfig) -> tuple[int, str]:
    """The target sample rate and where it came from (``config``, ``model_table`` or ``model``).

    Raises:
        ConfigError: a non-positive configured rate.
        ModelError: the model is not in the table and cannot be loaded.
    """
    if cfg.sample_rate is not None:
        if cfg.sample_rate <= 0:
            raise ConfigError(f"Bad sample_rate {cfg.sample_rate}: must be a positive number of Hz")
        return int(cfg.sample_rate), "config"
    from research_job.models.registry import load_model, split_options

    spec = cfg.common.model.strip()
    if spec.startswith("fusion:"):  # members share one rate (the fusion backend insists): the first one's
        from research_job.models.fusion import split_members

        spec = split_members(spec[len("fusion:") :])[0]
    name, _ = split_options(spec)
    if name in MODEL_SAMPLE_RATES:
        return MODEL_SAMPLE_RATES[name], "model_table"
    return int(load_model(cfg.common.model).sample_rate), "model"


def _previous_max_duration_matches(layout: ArtifactLayout, max_duration_sec: float | None) -> bool:
    """False when the last report was written with another ``max_duration_sec`` (its WAVs are cut differently)."""
    if not layout.standardize_report.is_file():
        return True
    try:
        previous = read_artifact(layout.standardize_report, "standardize_report")
    except SchemaValidationError:
        return False
    return bool(previous["max_duration_sec"] == max_duration_sec)


def _standardize_one(
    layout: ArtifactLayout, row: TrackRow, sample_rate: int, max_duration_sec: float | None, allow_reuse: bool
) -> dict[str, Any]:
    t0 = time.perf_counter()
    src = cached_path(layout, row)
    wav = layout.wav(row.track_id)
    entry: dict[str, Any] = {
        "track_id": row.track_id,
        "status": "failed",
        "reason": None,
        "reused": False,
        "wav": None,
        "duration_sec": None,
        "source": None,
    }
    rel = layout.rel
    try:
        if not src.is_file():
            raise AudioDecodeError(
                f"not pulled: {rel(src)} does not exist (see audio_cache/pull_report.json)"
            )
        if allow_reuse and wav_is_complete(wav, sample_rate):
            h = read_wav_header(wav)
            info = probe_audio(src)
            entry.update(reused=True, duration_sec=h.n_samples / sample_rate)
        else:
            x, info = decode_audio(src, sample_rate, max_duration_sec=max_duration_sec)
            write_wav(wav, x, sample_rate)
            entry["duration_sec"] = len(x) / sample_rate
        entry.update(status="ok", wav=rel(wav), source={"path": rel(src), **info.to_dict()})
    except AudioDecodeError as e:
        entry.update(status="failed", reason=str(e), reused=False, duration_sec=None)
    except OSError as e:
        entry.update(status="failed", reason=f"{type(e).__name__}: {e}", reused=False, duration_sec=None)
    entry["_elapsed"] = time.perf_counter() - t0
    return entry


def run(cfg: StandardizeAudioConfig) -> dict[str, Any]:
    """Decode every pulled track to ``audio_wav/<track_id>.wav`` and write ``standardize_report.json``.

    Raises:
        ConfigError: bad sample rate, worker count or max duration.
        MetadataError: ``tracks_metadata.csv`` missing or invalid.
        ModelError: the sample rate must come from a model that cannot be loaded.
        AudioDecodeError: not a single track could be standardised (after writing the report).
    """
    check(cfg)
    layout = cfg.common.layout
    rows = read_tracks_csv(layout.tracks_csv)
    sample_rate, rate_from = resolve_sample_rate(cfg)
    log.info("standardize-audio: %d tracks -> mono float32 %d Hz (%s)", len(rows), sample_rate, rate_from)
    allow_reuse = _previous_max_duration_matches(layout, cfg.max_duration_sec)
    if not allow_reuse:
        log.info("standardize-audio: max_duration_sec changed since the last run: re-decoding every track")
    t0 = time.perf_counter()
    entries: list[dict[str, Any] | None] = [None] * len(rows)
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        futures = {
            pool.submit(_standardize_one, layout, row, sample_rate, cfg.max_duration_sec, allow_reuse): i
            for i, row in enumerate(rows)
        }
        with tqdm(total=len(rows), desc="standardize-audio", unit="track", disable=None) as bar:
            for fut in as_completed(futures):
                e = fut.result()
                entries[futures[fut]] = e
                if e["status"] == "failed":
                    log.warning("standardize-audio: %s failed: %s", e["track_id"], e["reason"])
                bar.update(1)
    done = [e for e in entries if e is not None]
    elapsed = time.perf_counter() - t0
    for e in done:
        e.pop("_elapsed")
    n_ok = sum(e["status"] == "ok" for e in done)
    report: dict[str, Any] = {
        "schema_version": "1.0",
        "artifact_version": layout.version_dir.name,
        "sample_rate": sample_rate,
        "sample_rate_from": rate_from,
        "model": cfg.common.model,
        "channels": 1,
        "dtype": "float32",
        "max_duration_sec": cfg.max_duration_sec,
        "workers": cfg.workers,
        "counts": {
            "tracks": len(done),
            "ok": n_ok,
            "reused": sum(bool(e["reused"]) for e in done),
            "failed": len(done) - n_ok,
        },
        "audio_sec": round(sum(e["duration_sec"] or 0.0 for e in done), 6),
        "elapsed_sec": round(elapsed, 6),
        "tracks": done,
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    write_artifact(layout.standardize_report, "standardize_report", report)
    log.info(
        "standardize-audio: %d ok (%d reused), %d failed, %.1f s of audio in %.2fs",
        n_ok,
        report["counts"]["reused"],
        report["counts"]["failed"],
        report["audio_sec"],
        elapsed,
    )
    if done and n_ok == 0:
        raise AudioDecodeError(
            f"standardize-audio: none of {len(done)} tracks could be decoded; see {layout.standardize_report}"
        )
    return report


STEP = Step(
    name="standardize_audio",
    config=StandardizeAudioConfig,
    summary="Decode audio_cache/ to mono float32 WAV at the model's sample rate in audio_wav/.",
    example="research-job standardize-audio --max-duration-sec 120",
    run=run,
    check=check,
    pipeline=30,
)
