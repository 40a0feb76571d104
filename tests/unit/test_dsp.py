"""dsp-stats: deterministic, finite, right shape, and its features mean what they say."""

from __future__ import annotations

import numpy as np
import pytest

from research_job.errors import ModelError
from research_job.models import dsp
from research_job.models.random_encoder import load as load_random
from research_job.models.registry import load_model

SR = dsp.SAMPLE_RATE


def _sine(freq: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_registry_loads_and_protocol() -> None:
    enc = load_model("dsp-stats")
    assert enc.name == "dsp-stats" and enc.sample_rate == 22050 and enc.dim == 88
    info = enc.info()
    assert info["weights_sha256"] is None and info["pooling"] == "mean_std"
    with pytest.raises(ModelError, match="takes no options"):
        load_model("dsp-stats?x=1")


def test_deterministic_and_finite_for_odd_lengths() -> None:
    enc = dsp.DspStatsEncoder()
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (100, 2048, 22050, 33333)]
    a = enc.embed(waves)
    b = enc.embed(waves)
    assert a.shape == (4, 88) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_chroma_finds_the_pitch_class() -> None:
    f = dsp.frame_features(_sine(440.0))
    chroma = f[:, dsp.N_MFCC : dsp.N_MFCC + 12].mean(axis=0)
    assert int(np.argmax(chroma)) == 9  # A
    f = dsp.frame_features(_sine(261.63))
    assert int(np.argmax(f[:, dsp.N_MFCC : dsp.N_MFCC + 12].mean(axis=0))) == 0  # C


def test_centroid_and_flatness_separate_tone_from_noise() -> None:
    tone = dsp.frame_features(_sine(300.0)).mean(axis=0)
    noise = dsp.frame_features(
        np.random.default_rng(1).standard_normal(SR * 2).astype(np.float32) * 0.3
    ).mean(axis=0)
    centroid, flatness = dsp.N_MFCC + 12, dsp.N_MFCC + 15
    assert tone[centroid] < 1.0 < noise[centroid]  # kHz: a 300 Hz tone vs white noise (~5.5 kHz)
    assert tone[flatness] < 0.01 < 0.3 < noise[flatness]


def test_similar_sounds_are_closer_than_different_ones() -> None:
    enc = dsp.DspStatsEncoder()
    v = enc.embed(
        [
            _sine(440.0),
            _sine(445.0),
            np.random.default_rng(2).standard_normal(SR * 2).astype(np.float32) * 0.2,
        ]
    )
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_random_encoder_is_seeded_by_content() -> None:
    enc = load_random()
    w1, w2 = _sine(100.0), _sine(101.0)
    a, b = enc.embed([w1, w2]), enc.embed([w1.copy(), w2])
    assert a.shape == (2, 200) and np.array_equal(a, b) and not np.allclose(a[0], a[1])
    assert not np.array_equal(load_random(seed=1).embed([w1]), a[:1])
