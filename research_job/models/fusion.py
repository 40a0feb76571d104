"""Fusion backend ``fusion:<spec>+<spec>[+...]``: several registry models (layers or checkpoints) as one vector.

``fusion:musicnn-msd+musicnn-mtt`` embeds every track with both musicnn checkpoints and concatenates the two
pooled vectors, each L2-normalised first (every block weighs the same before the corpus post-processing).
``fusion:musicnn-msd+musicnn-msd?layer=max_pool`` fuses two layers of one checkpoint. Members that run in stages
(:class:`~research_job.models.base.StagedEncoder`, the musicnn models) share what they have in common, once per
batch: the front end when their ``front_end_key`` match (both musicnn checkpoints take the same log-mel patches,
so the default fusion computes them once, not once per member), the forward pass when their ``network_key``
match (two layers of one checkpoint, same runtime and precision: one pass). Each member still loads its own
network.

The blocks' sizes are recorded (``info()['params']['blocks']``), so the post-processing ``block_standardize``
(:mod:`research_job.embeddings`) can z-score every dimension over the corpus and then scale each block to the
same total variance, whatever its dimension: the per-block standardisation the fusion literature uses, so a
753-d layer does not drown a 200-d one. Every sub-model must take the same sample rate.

When every member is a frame encoder with the same frame and hop lengths (the musicnn checkpoints: one frame per
3 s patch), the fusion is one too: a frame layer of the fusion is that layer of every member side by side, so
train-head can learn on the fused frames of the default model. When every member is a tagger (musicnn), so is the
fusion: its ``taggram`` frame layer holds each member's tags side by side, named by ``tag_blocks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from research_job.errors import ModelError, unknown_choice
from research_job.models.base import TAG_LAYER, Encoder, FrameEncoder, StagedEncoder, tag_blocks_of

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


def _join(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Each block L2-normalised (a zero row stays zero), side by side, float32."""
    out = []
    for v in parts:
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        out.append(np.where(norm > 0, v / np.where(norm > 0, norm, 1.0), 0.0))
    return np.concatenate(out, axis=1).astype(np.float32)


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
        # frame layers: those every member has, at one frame/hop length; none when a member has no frames
        framed = [m for m in members if isinstance(m, FrameEncoder)]
        timing = {(float(m.frame_sec), float(m.hop_sec)) for m in framed}
        self.frame_layers: dict[str, int] = {}
        self.frame_sec = self.hop_sec = 0.0
        if len(framed) == len(members) and len(timing) == 1:
            self.frame_sec, self.hop_sec = timing.pop()
            common = [n for n in framed[0].frame_layers if all(n in m.frame_layers for m in framed)]
            self.frame_layers = {n: sum(int(m.frame_layers[n]) for m in framed) for n in common}
        # the fused taggram is every member's side by side: its columns are the members' tag blocks in order
        member_tags = [tag_blocks_of(m) for m in members]
        self.tag_blocks: list[dict[str, Any]] = (
            [b for blocks in member_tags for b in blocks]
            if TAG_LAYER in self.frame_layers and all(member_tags)
            else []
        )

    def _members_frames(
        self, batch: Sequence[np.ndarray], layers: Sequence[str]
    ) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """Each member's ``embed_frames(batch, layers)``, a front end or forward pass that members share run once
        (by ``front_end_key`` / ``network_key``); a member that is not staged runs alone (``layers`` empty: its
        frames are not asked for, so any encoder can be a member)."""
        fronts: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
        nets: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
        out = []
        for m in self.members:
            if isinstance(m, StagedEncoder) and len(batch):
                if m.front_end_key not in fronts:
                    fronts[m.front_end_key] = m.front_end(list(batch))
                inputs, bounds = fronts[m.front_end_key]
                key = (m.front_end_key, m.network_key)
                if key not in nets:
                    nets[key] = m.network(inputs)
                out.append(m.pool(nets[key], bounds, layers))
            elif layers:
                assert isinstance(m, FrameEncoder)
                out.append(m.embed_frames(list(batch), layers))
            else:
                out.append((np.asarray(m.embed(list(batch))), []))
        return out

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """[n, sum of the members' dims]: each member's pooled vector, L2-normalised, side by side."""
        return _join([np.asarray(p, dtype=np.float64) for p, _ in self._members_frames(batch, ())])

    def embed_frames(
        self, batch: Sequence[np.ndarray], layers: Sequence[str]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The pooled vectors of :meth:`embed` and, per waveform, its frames: for each of ``layers`` in order,
        that layer of every member side by side (so ``frames_meta`` columns hold one fused layer each).

        Raises:
            ModelError: a layer not every member has (naming the valid ones), or members disagreeing on a
                waveform's frame count.
        """
        for name in layers:
            if name not in self.frame_layers:
                raise ModelError(unknown_choice(f"frame layer of {self.name}", name, list(self.frame_layers)))
        if layers:
            assert all(isinstance(m, FrameEncoder) for m in self.members)
        pooled, per_member = [], []
        for m, (p, f) in zip(self.members, self._members_frames(batch, layers), strict=True):
            pooled.append(np.asarray(p, dtype=np.float64))
            cuts = np.cumsum([int(m.frame_layers[n]) for n in layers])[:-1]  # type: ignore[attr-defined]
            per_member.append([np.split(np.asarray(x), cuts, axis=1) for x in f])
        joined = []
        for i in range(len(batch)):
            counts = {int(pm[i][0].shape[0]) for pm in per_member} if layers else {0}
            if len(counts) != 1:
                raise ModelError(f"{self.name}: members gave {sorted(counts)} frames for waveform {i}")
            blocks = [pm[i][j] for j in range(len(layers)) for pm in per_member]
            joined.append(
                np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((0, 0), np.float32)
            )
        return _join(pooled), joined

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
