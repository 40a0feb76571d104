"""DSP baseline ``dsp-stats``: hand-made spectral features, mean and std over frames (no weights, CPU, numpy).

Per frame (STFT at 22050 Hz, n_fft 2048, hop 512, Hann window): 20 MFCC (40 mel bands, log power, DCT-II),
12 chroma bins (power summed per pitch class, normalised per frame), spectral centroid, bandwidth, 85 % roll-off
(each in kHz), flatness, 7 spectral-contrast values (6 octave sub-bands + the rest) and onset strength (positive
log-mel flux). The track vector is the mean and the standard deviation of those 44 features over frames: 88
dimensions. Deterministic: same waveform -> same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.fft import dct

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 40
N_MFCC = 20
N_CONTRAST_BANDS = 6
N_FEATURES = N_MFCC + 12 + 4 + (N_CONTRAST_BANDS + 1) + 1
VERSION = "dsp-stats-1"


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1] (HTK mel scale, 0 Hz .. sr / 2, area-normalised)."""
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fb = np.zeros((n_mels, freqs.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        fb[m] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb


def chroma_matrix(sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Bin -> pitch-class map [12, n_fft // 2 + 1] (bins below 55 Hz or above 5 kHz ignored; C = 0)."""
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    cm = np.zeros((12, freqs.size))
    ok = (freqs >= 55.0) & (freqs <= 5000.0)
    midi = 69.0 + 12.0 * np.log2(freqs[ok] / 440.0)
    cm[np.round(midi).astype(int) % 12, np.nonzero(ok)[0]] = 1.0
    return cm


def _stft_power(wav: np.ndarray) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float64)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    n_frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = x[idx] * np.hanning(N_FFT + 1)[:-1]
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [T, F]


def frame_features(wav: np.ndarray) -> np.ndarray:
    """Per-frame features [T, N_FEATURES] of a mono waveform at 22050 Hz."""
    p = _stft_power(wav)
    freqs = np.linspace(0.0, SAMPLE_RATE / 2.0, N_FFT // 2 + 1)
    eps = 1e-10
    mel = p @ mel_filterbank().T
    logmel = np.log(mel + eps)
    mfcc = dct(logmel, type=2, norm="ortho", axis=1)[:, :N_MFCC]
    chroma = p @ chroma_matrix().T
    chroma = chroma / (chroma.sum(axis=1, keepdims=True) + eps)
    mag = np.sqrt(p)
    total = mag.sum(axis=1) + eps
    centroid = (mag @ freqs) / total
    bandwidth = np.sqrt((mag * (freqs[None, :] - centroid[:, None]) ** 2).sum(axis=1) / total)
    cum = np.cumsum(p, axis=1)
    rolloff = freqs[np.argmax(cum >= 0.85 * cum[:, -1:], axis=1)]
    flatness = np.exp(np.mean(np.log(p + eps), axis=1)) / (np.mean(p, axis=1) + eps)
    # spectral contrast: octave sub-bands from 200 Hz, peak vs valley (top / bottom 20 % of each band), in dB
    edges = [0.0] + [200.0 * 2**i for i in range(N_CONTRAST_BANDS)] + [SAMPLE_RATE / 2.0 + 1]
    contrast = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = np.sort(p[:, (freqs >= lo) & (freqs < hi)], axis=1)
        q = max(1, int(round(0.2 * band.shape[1])))
        peak = band[:, -q:].mean(axis=1)
        valley = band[:, :q].mean(axis=1)
        contrast.append(10.0 * np.log10((peak + eps) / (valley + eps)))
    flux = np.diff(logmel, axis=0, prepend=logmel[:1])
    onset = np.maximum(flux, 0.0).mean(axis=1)
    cols = [mfcc, chroma, centroid[:, None] / 1000.0, bandwidth[:, None] / 1000.0, rolloff[:, None] / 1000.0]
    cols += [flatness[:, None], np.stack(contrast, axis=1), onset[:, None]]
    return np.concatenate(cols, axis=1)


class DspStatsEncoder:
    """The ``dsp-stats`` baseline behind the :class:`~research_job.models.base.Encoder` protocol."""

    name = "dsp-stats"
    dim = 2 * N_FEATURES
    sample_rate = SAMPLE_RATE

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """Mean and std of the frame features of each waveform -> float32 [len(batch), 88]."""
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for i, wav in enumerate(batch):
            f = frame_features(wav)
            out[i] = np.concatenate([f.mean(axis=0), f.std(axis=0)]).astype(np.float32)
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": VERSION,
            "weights_sha256": None,
            "pooling": "mean_std",
            "layer": None,
            "params": {
                "sample_rate": SAMPLE_RATE,
                "n_fft": N_FFT,
                "hop": HOP,
                "n_mels": N_MELS,
                "n_mfcc": N_MFCC,
                "features": [
                    "mfcc",
                    "chroma",
                    "centroid",
                    "bandwidth",
                    "rolloff",
                    "flatness",
                    "contrast",
                    "onset",
                ],
            },
        }


def load(**kwargs: Any) -> DspStatsEncoder:
    """Registry loader of ``dsp-stats`` (takes no options)."""
    if kwargs:
        from research_job.errors import ModelError

        raise ModelError(f"dsp-stats takes no options, got {sorted(kwargs)}")
    return DspStatsEncoder()
