"""Fusion backend ``fusion:<spec>+<spec>[+...]``: several registry models (layers or checkpoints) as one vector.

``fusion:musicnn-msd+musicnn-mtt`` embeds every track with both musicnn checkpoints and concatenates the two
pooled vectors, each L2-normalised first (every block weighs the same before the corpus post-processing).
``fusion:musicnn-msd+musicnn-msd?layer=max_pool`` fuses two layers of one checkpoint: sub-models that share a
checkpoint share one loaded network and one forward pass when they are musicnn models.

The blocks' sizes are recorded (``info()['params']['blocks']``), so the post-processing ``block_standardize``
(:mod:`research_job.embeddings`) can z-score every dimension over the corpus and then scale each block to the
same total variance, whatever its dimension: the per-block standardisation the fusion literature uses, so a
753-d layer does not drown a 200-d one. Every sub-model must take the same sample rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from research_job.errors import ModelError
from research_job.models.base import Encoder

PREFIX = "fusion:"


def split_members(rest: str) -> list[str]:
    """The member specs of ``fusion:<a>+<b>`` (the part after the prefix).

    Raises:
        ModelError: fewer than two members, an empty one, or a nested fusion.
    """
    members = [m.strip() for m in rest.split("+")]
    if len(members) < 2 or any(not m for m in members):
        raise ModelError(
            f"Bad fusion spec {PREFIX}{rest!r}: expected {PREFIX}<spec>+<spec>[+...], two or more models"
        )
    if any(m.startswith(PREFIX) for m in members):
        raise ModelError(f"Bad fusion spec {PREFIX}{rest!r}: a fusion cannot contain another fusion")
    return members


class FusionEncoder:
    """Concatenation of several encoders' pooled vectors, each block L2-normalised."""

    def __init__(self, members: Sequence[Encoder]) -> None:
        rates = {int(m.sample_rate) for m in members}
        if len(rates) != 1:
            raise ModelError(
                f"fusion members must share one sample rate, got {sorted(rates)} ({', '.join(m.name for m in members)})"
            )
        self.members = list(members)
        self.sample_rate = rates.pop()
        self.blocks = [int(m.dim) for m in members]
        self.dim = sum(self.blocks)
        self.name = PREFIX + "+".join(m.name for m in members)

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """[n, sum of the members' dims]: each member's pooled vector, L2-normalised, side by side."""
        parts = []
        for m in self.members:
            v = np.asarray(m.embed(list(batch)), dtype=np.float64)
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            parts.append(np.where(norm > 0, v / np.where(norm > 0, norm, 1.0), 0.0))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def info(self) -> dict[str, Any]:
        infos = [m.info() for m in self.members]
        shas = [i.get("weights_sha256") for i in infos]
        return {
            "name": self.name,
            "version": "fusion-1(" + ",".join(str(i.get("version")) for i in infos) + ")",
            # one checksum per distinct weights file set, in member order (None for weight-less members)
            "weights_sha256": shas[0] if len(set(shas)) == 1 else None,
            "pooling": "mean",
            "layer": "+".join(str(i.get("layer")) for i in infos),
            "params": {
                "members": [m.name for m in self.members],
                "blocks": self.blocks,
                "member_weights_sha256": shas,
                "block_normalization": "l2",
            },
        }


def load(rest: str, **overrides: Any) -> FusionEncoder:
    """Registry loader of ``fusion:<spec>+<spec>``: each member loaded from the registry (``overrides``, e.g. the
    device, go to every member).

    Raises:
        ModelError: a bad spec or member (naming it), or members of different sample rates.
    """
    from research_job.models.registry import load_model

    return FusionEncoder([load_model(m, **overrides) for m in split_members(rest)])
