"""Apply a trained head: load ``head/head.pt`` checked against ``head_meta.json``, embed frame sequences.

:func:`load_head` verifies the weights' sha256 against the record before torch reads them (``weights_only=True``:
plain tensors and builtins, no pickled code), rebuilds the module from its recorded architecture and params and
checks its input and output widths. :meth:`Head.embed` turns each track's (or query's) frames into one unit
vector, the same function train-head used for every row of the folder, so a query gets exactly what the corpus
got:

* ``mlp``: the mean frame -> the module;
* ``sequence``: the frames cut into consecutive chunks of ``max_frames`` (the training crop length), each chunk
  through the module, the chunk vectors averaged weighted by their frame counts, L2-normalised.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from research_job.errors import ArtifactError, ModelError
from research_job.heads.meta import HEAD_FORMAT, read_head_meta
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout
from research_job.provenance import sha256_bytes, sha256_file


def forward_batch(module: Any, seqs: Sequence[np.ndarray], device: str = "cpu") -> Any:
    """The module's output (a torch tensor [len(seqs), out], with grad when enabled) for frame arrays [T_i, D].

    mlp heads see each array's mean frame; sequence heads the arrays padded to the longest with a padding mask.
    """
    import torch

    if not getattr(module, "takes_sequence", False):
        pooled = np.stack([s.mean(axis=0) for s in seqs]).astype(np.float32)
        return module(torch.from_numpy(pooled).to(device))
    longest = max(int(s.shape[0]) for s in seqs)
    x = np.zeros((len(seqs), longest, seqs[0].shape[1]), np.float32)
    pad = np.ones((len(seqs), longest), bool)
    for i, s in enumerate(seqs):
        x[i, : s.shape[0]] = s
        pad[i, : s.shape[0]] = False
    return module(torch.from_numpy(x).to(device), torch.from_numpy(pad).to(device))


def _chunks(frames: np.ndarray, max_frames: int) -> list[np.ndarray]:
    return [frames[i : i + max_frames] for i in range(0, frames.shape[0], max_frames)]


def embed_frames(
    module: Any, frames: Sequence[np.ndarray], *, max_frames: int, device: str = "cpu", batch_size: int = 256
) -> np.ndarray:
    """One unit vector per frame array (float32 [n, out]), in eval mode, without gradients.

    Raises:
        ArtifactError: an array is empty, not 2-D or not finite.
    """
    import torch

    for i, f in enumerate(frames):
        if f.ndim != 2 or f.shape[0] < 1 or not np.all(np.isfinite(f)):
            raise ArtifactError(
                f"frame array {i} has shape {f.shape} or non-finite values; expected [T >= 1, D]"
            )
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if not getattr(module, "takes_sequence", False):
                outs = [
                    forward_batch(module, list(frames[s : s + batch_size]), device).cpu().numpy()
                    for s in range(0, len(frames), batch_size)
                ]
                return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)
            pieces = [
                (i, c) for i, f in enumerate(frames) for c in _chunks(np.asarray(f, np.float32), max_frames)
            ]
            vecs = np.concatenate(
                [
                    forward_batch(module, [c for _, c in pieces[s : s + batch_size]], device).cpu().numpy()
                    for s in range(0, len(pieces), batch_size)
                ]
            ).astype(np.float64)
    finally:
        module.train(was_training)
    out = np.zeros((len(frames), vecs.shape[1]), np.float64)
    for (i, c), v in zip(pieces, vecs, strict=True):
        out[i] += c.shape[0] * v
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def head_bytes(architecture: str, params: dict[str, Any], module: Any) -> bytes:
    """What ``head.pt`` holds, serialised: format, architecture, params and the CPU ``state_dict``."""
    import torch

    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    buf = io.BytesIO()
    torch.save(
        {"format": HEAD_FORMAT, "architecture": architecture, "params": params, "state_dict": state}, buf
    )
    return buf.getvalue()


def save_head(layout: ArtifactLayout, architecture: str, params: dict[str, Any], module: Any) -> str:
    """Write ``head/head.pt`` atomically; return its sha256."""
    data = head_bytes(architecture, params, module)
    write_bytes(layout.head_pt, data)
    return sha256_bytes(data)


@dataclass(frozen=True)
class Head:
    """A trained head loaded from a head folder: its record, its module (eval mode) and how to embed with it."""

    meta: dict[str, Any]
    module: Any
    device: str = "cpu"

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def layers(self) -> tuple[str, ...]:
        """The backbone frame layers the head reads, in column order (pass them to ``encoder.embed_frames``)."""
        return tuple(str(b["name"]) for b in self.meta["backbone"]["frame_layers"])

    @property
    def backbone(self) -> dict[str, Any]:
        """The backbone model recorded at training time (name = registry spec, version, weights_sha256, layer)."""
        return dict(self.meta["backbone"]["model"])

    @property
    def in_dim(self) -> int:
        return int(self.meta["in_dim"])

    @property
    def dim(self) -> int:
        return int(self.meta["out_dim"])

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Unit vectors float32 [n, dim] of ``n`` frame arrays (float32 [T_i, in_dim], raw backbone features).

        Raises:
            ArtifactError: an array of the wrong width, empty, or not finite.
        """
        bad = [i for i, f in enumerate(frames) if f.ndim != 2 or f.shape[1] != self.in_dim]
        if bad:
            raise ArtifactError(
                f"frame array {bad[0]} has shape {frames[bad[0]].shape}; head {self.name!r} reads [T, {self.in_dim}]"
            )
        if not frames:
            return np.zeros((0, self.dim), np.float32)
        return embed_frames(
            self.module,
            [np.asarray(f, np.float32) for f in frames],
            max_frames=int(self.meta["hyperparameters"]["max_frames"]),
            device=self.device,
        )


def load_module(layout: ArtifactLayout, meta: dict[str, Any], device: str = "cpu") -> Any:
    """The module of ``head/head.pt`` after checking its sha256, format and widths against ``meta``.

    Raises:
        ModelError: the file's sha256, format, architecture or widths differ from the record (both values named).
    """
    import torch

    from research_job.heads.arch import build

    path, want = layout.head_pt, meta["files"]["head_sha256"]
    if not path.is_file():
        raise ArtifactError(f"Missing {path} (named in {layout.head_meta.name})")
    got = sha256_file(path)
    if got != want:
        raise ModelError(
            f"{path}: sha256 {got} differs from head_meta.json files.head_sha256 {want}: these weights are not "
            "the head this folder records; retrain with train-head"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != HEAD_FORMAT or blob.get("architecture") != meta["architecture"]:
        raise ModelError(
            f"{path}: format {blob.get('format')!r} / architecture {blob.get('architecture')!r}, head_meta.json "
            f"records {HEAD_FORMAT!r} / {meta['architecture']!r}"
        )
    module = build(str(blob["architecture"]), dict(blob["params"]))
    module.load_state_dict(blob["state_dict"], strict=True)
    widths = (int(blob["params"]["in_dim"]), int(blob["params"]["out_dim"]))
    if widths != (int(meta["in_dim"]), int(meta["out_dim"])):
        raise ModelError(
            f"{path}: in/out dims {widths}, head_meta.json records ({meta['in_dim']}, {meta['out_dim']})"
        )
    return module.to(device).eval()


def load_head(layout: ArtifactLayout, *, device: str = "cpu") -> Head:
    """Load the trained head of a head folder, verified against its ``head_meta.json``.

    Raises:
        ArtifactError: not a head folder, or head.pt missing; ModelError: head.pt differs from the record.
    """
    from research_job.models.device import resolve_device

    meta = read_head_meta(layout)
    dev = resolve_device(device)
    return Head(meta, load_module(layout, meta, dev), dev)
