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
