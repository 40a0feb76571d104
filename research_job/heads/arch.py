"""The head architectures: small torch modules over frozen backbone frames, output L2-normalised.

* ``mlp`` (S002): ``Linear(D, hidden) -> LayerNorm -> GELU -> Dropout -> Linear(hidden, out)`` over the mean
  frame of a track (its pooled features).
* ``sequence`` (S000): input projection ``Linear(D, d_model)`` -> ``nn.TransformerEncoder`` (pre-norm, GELU,
  ``n_layers`` x ``n_heads``) over the frame sequence with a padding mask -> attention pooling (a learned query
  scores each frame) or masked mean pooling -> ``LayerNorm -> Linear(d_model, out)``. No positional encoding:
  the frames are a set, so an excerpt's frames need not line up with where the track starts.

Both start with :class:`Standardize` (per-feature mean and 1/std fitted on the training split, kept as buffers,
so they travel in the ``state_dict``) and end with an L2 norm. :func:`build` makes a module from its
architecture name and ``params`` (every argument), which is all ``head.pt`` needs besides the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from research_job.errors import ConfigError, unknown_choice
from research_job.heads.meta import ARCHITECTURES, POOLINGS


class Standardize(nn.Module):
    """``(x - mean) * inv_std`` per feature; identity until :meth:`fit` (buffers, saved with the weights)."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def fit(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Set the statistics (float64 arrays of the training frames); a constant feature keeps scale 1."""
        safe = np.where(std > 1e-6, std, 1.0)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.inv_std.copy_(torch.as_tensor(1.0 / safe, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std


def _unit(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=-1, eps=1e-12)


class MLPHead(nn.Module):
    """The ``mlp`` head: pooled features [B, D] -> unit vectors [B, out_dim]."""

    takes_sequence = False

    def __init__(self, in_dim: int, out_dim: int = 256, hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.standardize = Standardize(in_dim)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _unit(self.net(self.standardize(x)))


class SequenceHead(nn.Module):
    """The ``sequence`` head: frames [B, T, D] + padding mask [B, T] (True = padding) -> unit vectors [B, out]."""

    takes_sequence = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 256,
        d_model: int = 128,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.1,
        pooling: str = "attention",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(unknown_choice("pooling", pooling, POOLINGS))
        self.pooling = pooling
        self.standardize = Standardize(in_dim)
        self.proj = nn.Linear(in_dim, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.score = nn.Linear(d_model, 1) if pooling == "attention" else None
        self.out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, out_dim))

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.proj(self.standardize(x)), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        if self.score is not None:
            w = self.score(h).masked_fill(pad.unsqueeze(-1), float("-inf")).softmax(dim=1)
        else:
            w = keep / keep.sum(dim=1, keepdim=True).clamp(min=1.0)
        return _unit(self.out((w * h * keep).sum(dim=1)))


def build(architecture: str, params: dict[str, Any]) -> nn.Module:
    """The module of ``architecture`` with constructor arguments ``params`` (as recorded in ``head.pt``).

    Raises:
        ConfigError: unknown architecture (listing the known ones) or arguments it does not take.
    """
    classes = {"mlp": MLPHead, "sequence": SequenceHead}
    if architecture not in classes:
        raise ConfigError(unknown_choice("architecture", architecture, ARCHITECTURES))
    try:
        module: nn.Module = classes[architecture](**params)
    except TypeError as e:
        raise ConfigError(f"Bad parameters for the {architecture} head: {e}") from e
    return module


def n_params(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
