"""The encoder protocol every embedding backend implements.

A backend turns mono float32 waveforms at its own ``sample_rate`` into one vector per waveform: its chunk or
frame embeddings pooled over the whole track (mean pooling unless ``info()['pooling']`` says otherwise). The
pipeline, not the model, L2-normalises and rejects zero / non-finite vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """What the pipeline needs of a model."""

    #: registry spec the model was loaded from, e.g. ``musicnn-msd`` or ``hf:/path/to/ckpt``
    name: str
    #: embedding dimension D
    dim: int
    #: sample rate (Hz) the waveforms passed to :meth:`embed` must have
    sample_rate: int

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """Embed whole tracks.

        Args:
            batch: mono float32 waveforms in [-1, 1] at ``sample_rate``, any lengths.

        Returns:
            float32 array [len(batch), dim]: one pooled, *not yet normalised* vector per waveform.
        """
        ...

    def info(self) -> dict[str, Any]:
        """Facts recorded in ``embeddings_meta.json['model']``: at least ``name``, ``version``,
        ``weights_sha256`` (or ``None`` for weight-less models), ``pooling``, ``layer`` and ``params``."""
        ...


@runtime_checkable
class FrameEncoder(Encoder, Protocol):
    """An encoder that can also return its per-frame features (musicnn: one frame per 3 s patch), so that the
    embed step can keep them beside the pooled vectors (:mod:`research_job.frames`) for heads to train on."""

    #: layers whose per-frame outputs :meth:`embed_frames` can return, name -> dim
    frame_layers: dict[str, int]
    #: length of one frame and the hop between frames, seconds
    frame_sec: float
    hop_sec: float

    def embed_frames(
        self, batch: Sequence[np.ndarray], layers: Sequence[str]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass: the pooled vectors :meth:`embed` returns ([n, dim]) and, per waveform, its frames
        [T_i, sum of the chosen layers' dims] (float32, the layers concatenated in the given order)."""
        ...
