"""The encoder protocol every embedding backend implements.

A backend turns mono float32 waveforms at its own ``sample_rate`` into one vector per waveform: its chunk or
frame embeddings pooled over the whole track (mean pooling unless ``info()['pooling']`` says otherwise). The
pipeline, not the model, L2-normalises and rejects zero / non-finite vectors.
"""

from __future__ import annotations

import hashlib
import os
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


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (weights checksums)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Sequence[str | os.PathLike[str]]) -> str:
    """One checksum over several weight files (sorted by name, each file's digest hashed in turn)."""
    h = hashlib.sha256()
    for p in sorted(map(str, paths)):
        h.update(os.path.basename(p).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()
