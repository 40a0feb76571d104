"""previews: the original audio (else ``audio_wav/``) -> ``previews/<name>.ogg`` + ``previews/previews.json``.

One short Ogg/Opus excerpt per embedded track for the web page's "sounds like" player: ``duration_sec`` from
the middle of the track, mono 48 kHz, ``bitrate_kbps``, 50 ms fades. The work is :mod:`research_job.previews`
(why mono, the file names, the seek); this step maps its options and prints what it wrote. A track whose audio
does not decode is recorded in ``failed`` and the others go on; only a run where every track fails is an error.
A rerun reuses every file that still has its recorded size and sha256 when the parameters are the same.

In ``research-job run`` it comes after report and before validate (it needs ``embeddings/track_ids.json``, and a
problem with the previews stops nothing but validate). Cost on the demo corpus (128 tracks of 17-30 s in five
codecs, 2 threads): 26 s of CPU (about 0.1 s of libopus per 20 s excerpt, the rest decoding the window), 36-56 s
of wall time on a shared, loaded 2-core machine; 15.8 MB of previews (123 kB per 20 s). The real-music corpus
(151 tracks, median 277 s, longest 1,755 s): 43 s of CPU, 18.6 MB (the seek makes the longest track's excerpt
0.25 s instead of a 2.6 s full decode). A rerun that reuses everything takes 0.2 s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from research_job.config import CommonConfig, option
from research_job.errors import AudioDecodeError
from research_job.previews import VBR_MODES, PreviewOptions, build_previews, check_encoder, total_bytes
from research_job.steps import Step

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewsConfig:
    """previews: Ogg/Opus excerpts of the embedded tracks for the web page, in previews/."""

    common: CommonConfig = field(default_factory=CommonConfig)
    duration_sec: float = option(
        20.0, "seconds cut from the middle of each track (the whole track when shorter)"
    )
    bitrate_kbps: int = option(48, "Opus bitrate in kbps (6..510); 48 kbps mono is about 120 kB per 20 s")
    fade_ms: float = option(50.0, "fade in and out, milliseconds (half-cosine), so a preview does not click")
    vbr: str = option("constrained", "libopus VBR mode (constrained keeps the size near bitrate x duration)",
                      choices=VBR_MODES, kind="vbr mode")  # fmt: skip
    workers: int = option(2, "tracks encoded in parallel (threads)")


def _options(cfg: PreviewsConfig) -> PreviewOptions:
    return PreviewOptions(
        duration_sec=cfg.duration_sec,
        bitrate_kbps=cfg.bitrate_kbps,
        fade_ms=cfg.fade_ms,
        vbr=cfg.vbr,
        workers=cfg.workers,
    )


def check(cfg: PreviewsConfig) -> None:
    """Refuse bad options, or a PyAV without libopus, before anything is read.

    Raises:
        ConfigError: naming the bad value and the valid ones.
    """
    _options(cfg).check()
    check_encoder()


def run(cfg: PreviewsConfig) -> dict[str, Any]:
    """Write the previews of the version folder and ``previews/previews.json``; return the latter.

    Raises:
        ConfigError: bad options; ArtifactError: no embeddings yet (run embed first).
        AudioDecodeError: not one track got a preview (after writing previews.json with every reason).
    """
    check(cfg)
    layout = cfg.common.layout
    report = build_previews(layout, _options(cfg))
    c = report["counts"]
    if c["tracks"] and not report["tracks"]:
        raise AudioDecodeError(
            f"previews: none of {c['tracks']} tracks could be encoded; see {layout.previews_json}"
        )
    return report


def _show(cfg: PreviewsConfig, report: dict[str, Any]) -> str:
    c = report["counts"]
    return (
        f"{c['written']} written, {c['reused']} reused, {c['failed']} failed; "
        f"{total_bytes(report) / 1e6:.1f} MB in {cfg.common.layout.previews_dir}"
    )


STEP = Step(
    name="previews",
    config=PreviewsConfig,
    summary="Ogg/Opus previews (20 s from the middle, mono 48 kHz) of the embedded tracks in previews/.",
    example="research-job previews --duration-sec 20 --bitrate-kbps 48",
    run=run,
    check=check,
    show=_show,
    pipeline=67,
)
