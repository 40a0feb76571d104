"""Floor model ``random``: a seeded random vector per track, derived from a hash of the waveform bytes.

Content-independent (two different recordings of the same piece get unrelated vectors) but deterministic, so
it gives the chance level of every metric with a real pipeline run. ``random?seed=N&dim=D`` changes the seed
or the dimension (default 0 and 200).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from research_job.errors import ModelError

SAMPLE_RATE = 16000


class RandomEncoder:
    """A deterministic hash -> Gaussian vector encoder."""

    name = "random"
    sample_rate = SAMPLE_RATE

    def __init__(self, seed: int = 0, dim: int = 200) -> None:
        self.seed = seed
        self.dim = dim

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """One standard-normal vector per waveform, seeded by sha256(seed, float32 waveform bytes)."""
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for i, wav in enumerate(batch):
            h = hashlib.sha256(str(self.seed).encode() + b"\0")
            h.update(np.ascontiguousarray(wav, dtype="<f4").tobytes())
            rng = np.random.default_rng(int.from_bytes(h.digest()[:8], "little"))
            out[i] = rng.standard_normal(self.dim).astype(np.float32)
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": "random-1",
            "weights_sha256": None,
            "pooling": "mean",
            "layer": None,
            "params": {"seed": self.seed, "dim": self.dim, "sample_rate": SAMPLE_RATE},
        }


def load(seed: int | str = 0, dim: int | str = 200) -> RandomEncoder:
    """Registry loader of ``random`` (options ``seed`` and ``dim``)."""
    try:
        s, d = int(seed), int(dim)
    except ValueError as e:
        raise ModelError(f"random: seed and dim must be integers, got seed={seed!r} dim={dim!r}") from e
    if d < 1:
        raise ModelError(f"random: dim must be >= 1, got {d}")
    return RandomEncoder(s, d)
