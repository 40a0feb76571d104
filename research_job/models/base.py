"""The encoder protocol every embedding backend implements.

A backend turns mono float32 waveforms at its own ``sample_rate`` into one vector per waveform: its chunk or
frame embeddings pooled over the whole track (mean pooling unless ``info()['pooling']`` says otherwise). The
pipeline, not the model, L2-normalises and rejects zero / non-finite vectors.

A frame encoder that is also a tagger (musicnn) has a ``taggram`` frame layer and a ``tag_blocks`` attribute naming
its columns (:func:`tag_blocks_of`): the embed step asks for that layer in the same forward pass and keeps each
track's mean tag probabilities (:mod:`research_job.tags`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from research_job.errors import ModelError

#: the frame layer of a tagger's per-frame tag probabilities (musicnn: the sigmoid of its 50 training tags)
TAG_LAYER = "taggram"


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


@runtime_checkable
class StagedEncoder(FrameEncoder, Protocol):
    """A frame encoder in three stages (front end, network, pooling), so that the members of a fusion that share a
    stage run it once per batch (:mod:`research_job.models.fusion`): both musicnn checkpoints take the same log-mel
    patches, and two layers of one checkpoint the same forward pass. Members whose ``front_end_key`` are equal
    must compute identical inputs from the same waveforms, and those whose ``network_key`` are equal identical
    outputs from the same inputs; ``embed_frames(b, layers)`` is ``pool(network(x), bounds, layers)`` with
    ``x, bounds = front_end(b)``."""

    #: equal for encoders whose front ends give the same inputs for the same waveforms
    front_end_key: tuple[Any, ...]
    #: equal for encoders whose networks give the same outputs for the same inputs
    network_key: tuple[Any, ...]

    def front_end(self, batch: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The network inputs of the whole batch, concatenated, and the bounds of each waveform's rows
        (``bounds[i]:bounds[i + 1]``)."""
        ...

    def network(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's outputs for the rows of :meth:`front_end`, by layer name."""
        ...

    def pool(
        self, outputs: dict[str, np.ndarray], bounds: np.ndarray, layers: Sequence[str]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`embed_frames`'s answer from :meth:`network`'s outputs and :meth:`front_end`'s bounds."""
        ...


def tag_blocks_of(encoder: Encoder) -> list[dict[str, Any]]:
    """The tag blocks of an encoder's ``taggram`` frame layer, in column order: ``[{"model", "vocabulary",
    "tags"}]`` (one per tagging model; a fusion has one per member); empty when the encoder gives no tags.

    Raises:
        ModelError: the blocks name another number of tags than the layer has columns (a backend bug).
    """
    if not isinstance(encoder, FrameEncoder) or TAG_LAYER not in encoder.frame_layers:
        return []
    blocks = [dict(b) for b in getattr(encoder, "tag_blocks", None) or []]
    if blocks and sum(len(b["tags"]) for b in blocks) != int(encoder.frame_layers[TAG_LAYER]):
        raise ModelError(
            f"{encoder.name}: its tag blocks name {sum(len(b['tags']) for b in blocks)} tags, its {TAG_LAYER} "
            f"layer has {encoder.frame_layers[TAG_LAYER]} columns"
        )
    return blocks
