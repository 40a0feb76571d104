"""Seeded audio augmentation (audiomentations) and excerpt cutting: the views a head trains on and the queries the
excerpt task asks with.

Two named chains:

* ``train`` (the S002 recipe plus what a degraded query does): pitch shift +-3 semitones, time stretch 0.9-1.1,
  Gaussian noise 0.001-0.01, gain -6..+3 dB, and half the time a low-pass at 3-8 kHz and noise at 15-35 dB SNR;
* ``query`` (the S000 robustness query): band-limited to 4 kHz, Gaussian noise at 20 dB SNR, a gain change of
  -6..+6 dB.

Every draw comes from a ``numpy`` generator seeded by the caller (a track id, a view number and a seed), so the
same call gives the same samples on every machine; audiomentations' own randomness is driven from that generator
(its transforms draw from Python's ``random`` and ``numpy.random``, which are seeded around each call and restored).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np

from research_job.errors import ConfigError, unknown_choice
from research_job.provenance import sha256_bytes

CHAINS = ("train", "query", "none")


def seed_for(*parts: object) -> int:
    """A 63-bit seed from any parts (track id, view number, user seed): stable across runs and machines."""
    return int(sha256_bytes("\x1f".join(map(str, parts)).encode("utf-8"))[:16], 16) >> 1


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed Python's and numpy's global generators (which audiomentations draws from), then restore them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def chain(name: str) -> Any:
    """The audiomentations ``Compose`` of chain ``name`` (``none`` returns None).

    Raises:
        ConfigError: unknown chain, naming the known ones.
    """
    if name not in CHAINS:
        raise ConfigError(unknown_choice("augmentation chain", name, CHAINS))
    if name == "none":
        return None
    import audiomentations as A

    if name == "train":
        return A.Compose(
            [
                A.PitchShift(min_semitones=-3.0, max_semitones=3.0, p=0.5),
                A.TimeStretch(min_rate=0.9, max_rate=1.1, leave_length_unchanged=True, p=0.5),
                A.AddGaussianNoise(min_amplitude=0.001, max_amplitude=0.01, p=0.5),
                A.Gain(min_gain_db=-6.0, max_gain_db=3.0, p=0.5),
                A.LowPassFilter(min_cutoff_freq=3000.0, max_cutoff_freq=8000.0, p=0.5),
                A.AddGaussianSNR(min_snr_db=15.0, max_snr_db=35.0, p=0.5),
            ]
        )
    return A.Compose(
        [
            A.LowPassFilter(min_cutoff_freq=4000.0, max_cutoff_freq=4000.0, p=1.0),
            A.AddGaussianSNR(min_snr_db=20.0, max_snr_db=20.0, p=1.0),
            A.Gain(min_gain_db=-6.0, max_gain_db=6.0, p=1.0),
        ]
    )


def describe(name: str) -> dict[str, Any]:
    """What chain ``name`` does, for the artifacts that record it."""
    c = chain(name)
    if c is None:
        return {"chain": "none", "transforms": []}
    return {
        "chain": name,
        "library": "audiomentations",
        "transforms": [
            {
                "name": type(t).__name__,
                "p": float(t.p),
                **{k: v for k, v in vars(t).items() if k.startswith(("min_", "max_"))},
            }
            for t in c.transforms
        ],
    }


def excerpt(
    wave: np.ndarray, sample_rate: int, seconds: float | None, rng: np.random.Generator
) -> np.ndarray:
    """A random ``seconds``-long piece of ``wave`` (all of it when shorter, or when ``seconds`` is None)."""
    if seconds is None:
        return wave
    n = int(round(seconds * sample_rate))
    if wave.size <= n:
        return wave
    start = int(rng.integers(0, wave.size - n + 1))
    return wave[start : start + n]


def augmented(
    wave: np.ndarray, sample_rate: int, chain_name: str, seed: int, seconds: float | None = None
) -> np.ndarray:
    """A seeded augmented excerpt of ``wave``: cut (:func:`excerpt`), then chain ``chain_name``; float32, clipped
    to [-1, 1]."""
    rng = np.random.default_rng(seed)
    piece = np.asarray(
        excerpt(np.asarray(wave, dtype=np.float32), sample_rate, seconds, rng), dtype=np.float32
    )
    c = chain(chain_name)
    if c is None:
        return piece.copy()
    with _seeded(int(rng.integers(0, 2**62))):
        out = c(samples=piece, sample_rate=sample_rate)
    return np.clip(np.asarray(out, dtype=np.float32), -1.0, 1.0)
