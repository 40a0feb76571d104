"""Test helpers of compare-models / find-similar / embed-segments: a tiny seeded corpus as real encoded files.

Tracks are written into ``audio_cache/<album>/<track>.<codec>`` (as pull-audio leaves them; no ``audio_wav``),
so every step decodes real WAV/FLAC/... files with the pipeline's PyAV decoder. A fake encoder with known,
content-dependent outputs is registered for the tests that need one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from research_job.config import CommonConfig
from research_job.layout import ArtifactLayout
from tests.helpers.audio_fixtures import write_audio
from tests.unit._core_corpus import row, tone, write_csv

SOURCE_RATE = 22050
COMPOSERS = ("Bach", "Liszt", "Satie")


def signal(i: int, seconds: float = 2.0, sr: int = SOURCE_RATE) -> np.ndarray:
    """The seeded signal of track ``i`` (two random partials + noise), peak below 1."""
    return tone(1000 + i, sr, seconds)


def make_audio_corpus(
    root: Path,
    n: int = 9,
    *,
    codec: str = "wav",
    seconds: float | Sequence[float] = 2.0,
    model: str = "dsp-stats",
    silent: Sequence[int] = (),
) -> CommonConfig:
    """A version folder with metadata + ``audio_cache`` of ``n`` tracks (3 composers, albums of 3)."""
    common = CommonConfig(artifacts_root=root, model=model, version_dir=root / "v1_model_source")
    layout = common.layout
    rows = []
    for i in range(n):
        r = row(f"t{i:02d}", f"al{i // 3}", COMPOSERS[i % 3], i % 3 + 1)
        r["audio_s3_key"] = f"al{i // 3}/t{i:02d}.{codec}"
        secs = seconds if isinstance(seconds, float | int) else seconds[i]
        r["duration_sec"] = float(secs)
        rows.append(r)
        x = np.zeros(int(secs * SOURCE_RATE), np.float32) if i in silent else signal(i, float(secs))
        write_audio(layout.cached_audio(r["album_id"], r["track_id"], codec), x, SOURCE_RATE, codec)
    write_csv(layout, rows)
    return common


class FakeEncoder:
    """Known outputs: [mean, mean |x|, rms, length in seconds] of each waveform (dim 4, 8 kHz)."""

    name = "fake-stats"
    dim = 4
    sample_rate = 8000

    def __init__(self, version: str = "1") -> None:
        self.version = version

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(batch), self.dim), np.float32)
        for i, w in enumerate(batch):
            w = np.asarray(w, np.float64)
            out[i] = [w.mean(), np.abs(w).mean(), np.sqrt((w**2).mean()), w.size / self.sample_rate]
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "weights_sha256": None,
            "pooling": "mean",
            "layer": None,
            "params": {},
        }


def load_fake(version: str = "1") -> FakeEncoder:
    """Registry loader of ``fake-stats`` (option ``version``)."""
    return FakeEncoder(version)


def layout_of(common: CommonConfig) -> ArtifactLayout:
    return common.layout
