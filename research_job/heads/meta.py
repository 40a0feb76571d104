"""What a head version folder records about itself, and the light questions others ask of it (no torch import).

A head folder is a version folder whose ``head/head_meta.json`` (schema ``head_meta``) exists: the one file that
says which backbone folder, model and frame layers the head was trained on, with what objective, architecture,
hyper-parameters and split, what it measured, and the sha256 of ``head/head.pt`` and ``head/frozen.f32``. It is
written last by train-head, so a folder with it is complete.

The names: the head's model name is ``<backbone spec>+head:<name>`` (recorded in ``embeddings_meta.json``), its
default folder ``<artifacts_root>/`` + :func:`research_job.layout.version_name` of that name (folder-safe:
``v1_model_musicnn-msd_head-mlp-contrastive``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_job import schema
from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.io.atomic import dumps_json
from research_job.layout import ArtifactLayout
from research_job.provenance import sha256_bytes

OBJECTIVES = ("contrastive", "triplet")
ARCHITECTURES = ("mlp", "sequence")
SPLITS = ("track", "album", "label")
LABEL_COLUMNS = ("composer", "album_id")
DEVICES = ("cpu", "cuda", "mps", "auto")
POOLINGS = ("attention", "mean")
MINERS = ("semihard", "hard", "all")
#: what ``head.pt`` holds (a dict: format, architecture, params, state_dict); bump on an incompatible change
HEAD_FORMAT = "research_job.head/1"
#: what the head folder's ``embeddings_meta.json`` model name looks like: backbone spec, "+head:", head name
HEAD_SEPARATOR = "+head:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: the split parts, in the order the ids are listed in head_meta.json
PARTS = ("train", "val", "test")


def check_name(name: str) -> str:
    """Return ``name`` when it can name a head (letters, digits, ``._-``; at most 64), else raise ConfigError."""
    if not _NAME.match(name or ""):
        raise ConfigError(
            f"Head name {name!r} is not usable: 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def head_model_name(backbone_spec: str, name: str) -> str:
    """The model name a head folder's embeddings record: ``musicnn-msd+head:<name>``."""
    return f"{backbone_spec}{HEAD_SEPARATOR}{check_name(name)}"


def is_head_folder(layout: ArtifactLayout) -> bool:
    """Whether ``layout`` holds a (finished) trained head: its ``head/head_meta.json`` exists."""
    return layout.head_meta.is_file()


def read_head_meta(layout: ArtifactLayout) -> dict[str, Any]:
    """The validated ``head/head_meta.json`` of a head folder.

    Raises:
        ArtifactError: the folder holds no head; SchemaValidationError: the file does not match ``head_meta``.
    """
    if not is_head_folder(layout):
        raise ArtifactError(f"{layout.version_dir} holds no trained head (no {layout.rel(layout.head_meta)})")
    meta: dict[str, Any] = schema.read_artifact(layout.head_meta, "head_meta")
    return meta


def split_rows(layout: ArtifactLayout, part: str) -> list[int]:
    """The rows (of ``embeddings/track_ids.json``, ascending) of the tracks of split part ``part``.

    Raises:
        ConfigError: ``part`` is not train, val or test; ArtifactError: no head, or an id is not a row.
    """
    if part not in PARTS:
        raise ConfigError(f"Unknown split part {part!r}. Known: {', '.join(PARTS)}")
    meta = read_head_meta(layout)
    ids = schema.read_artifact(layout.track_ids_json, "track_ids")["track_ids"]
    row_of = {t: i for i, t in enumerate(ids)}
    missing = [t for t in meta["split"][part] if t not in row_of]
    if missing:
        raise ArtifactError(
            f"{layout.head_meta}: split.{part} names ids not in track_ids.json, e.g. {missing[:3]}"
        )
    return sorted(row_of[t] for t in meta["split"][part])


def test_rows(layout: ArtifactLayout) -> list[int]:
    """The rows of the head's test split: the tracks no frame of which reached training (excerpt evaluation)."""
    return split_rows(layout, "test")


test_rows.__test__ = False  # type: ignore[attr-defined]  # a library function, not a pytest test


def fingerprint(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (what a checkpoint or a finished head was made with)."""
    return sha256_bytes(dumps_json(obj).encode("utf-8"))


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts (to say why a configuration differs)."""
    out: list[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def default_head_dir(artifacts_root: str | Path, backbone_spec: str, name: str) -> ArtifactLayout:
    """``<artifacts_root>/v1_model_<backbone spec>+head:<name>``, made folder-safe by the layout helpers."""
    return ArtifactLayout.for_model(artifacts_root, head_model_name(backbone_spec, name))


@dataclass(frozen=True)
class HeadParams:
    """Every hyper-parameter of a head: recorded in ``head_meta.json['hyperparameters']`` and fingerprinted."""

    objective: str = "contrastive"
    architecture: str = "mlp"
    epochs: int = 50
    patience: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    out_dim: int = 256
    hidden: int = 512
    dropout: float = 0.1
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    pooling: str = "attention"
    max_frames: int = 64
    min_crop: float = 0.5
    temperature: float = 0.1
    margin: float = 0.25
    m_per_class: int = 4
    miner: str = "semihard"
    standardize: bool = True
    use_views: bool = True
    seed: int = 0
    threads: int = 2

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def module_params(self, in_dim: int) -> dict[str, Any]:
        """The constructor arguments of the module (:func:`research_job.heads.arch.build`)."""
        if self.architecture == "mlp":
            return {"in_dim": in_dim, "out_dim": self.out_dim, "hidden": self.hidden, "dropout": self.dropout}
        return {
            "in_dim": in_dim,
            "out_dim": self.out_dim,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "dropout": self.dropout,
            "pooling": self.pooling,
        }

    def check(self) -> None:
        """Refuse values that cannot train, naming the bad value and the valid ones.

        Raises:
            ConfigError: the first bad value found.
        """
        for value, kind, valid in (
            (self.objective, "objective", OBJECTIVES),
            (self.architecture, "architecture", ARCHITECTURES),
            (self.pooling, "pooling", POOLINGS),
            (self.miner, "miner", MINERS),
        ):
            if value not in valid:
                raise ConfigError(unknown_choice(kind, value, valid))
        counts = {
            "epochs": self.epochs,
            "patience": self.patience,
            "out_dim": self.out_dim,
            "hidden": self.hidden,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "max_frames": self.max_frames,
            "threads": self.threads,
        }
        for key, count in counts.items():
            if count < 1:
                raise ConfigError(f"{key} must be >= 1, got {count}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
        if self.m_per_class < 2:
            raise ConfigError(f"m_per_class must be >= 2 (a positive per anchor), got {self.m_per_class}")
        if self.objective == "triplet" and self.batch_size < 2 * self.m_per_class:
            raise ConfigError(
                f"triplet batch_size {self.batch_size} must hold at least two classes of m_per_class "
                f"{self.m_per_class} (>= {2 * self.m_per_class})"
            )
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not 0 <= self.dropout < 1 or not 0 < self.min_crop <= 1:
            raise ConfigError(
                f"dropout must be in [0, 1) and min_crop in (0, 1], got {self.dropout}, {self.min_crop}"
            )
        if not self.temperature > 0 or not self.margin > 0:
            raise ConfigError(f"temperature and margin must be > 0, got {self.temperature}, {self.margin}")
