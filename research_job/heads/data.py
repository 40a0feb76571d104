"""What a head trains on: seeded splits, labels from the metadata, and frame access fenced by split part.

Splits (:func:`make_split`), all seeded and deterministic:

* ``track``: tracks at random;
* ``album``: whole albums at random (no album in two parts: the album effect cannot inflate validation);
* ``label``: whole label values (composers, or albums) at random, so no val or test label appears in training:
  the honest test of a head meeting composers it never saw. Tracks with a missing label go to train (they can
  serve the contrastive objective; triplet training leaves them out).

Groups are shuffled with ``numpy.random.default_rng(seed)`` and dealt to test, then val, until each holds its
fraction of the tracks; the rest is train. Every part must end up non-empty.

:class:`PartFrames` is the only way training and validation read frames: it serves the rows of one part and
raises on any other, and records which rows it served, so "no frame or view of a val/test track reaches
training" holds by construction and is checked by the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.frames import Frames
from research_job.heads.meta import LABEL_COLUMNS, PARTS, SPLITS
from research_job.metadata import TrackRow


@dataclass(frozen=True)
class Split:
    """Row indices (of ``track_ids.json``) of each part, ascending, plus how they were drawn."""

    by: str
    seed: int
    val_fraction: float
    test_fraction: float
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def part(self, name: str) -> tuple[int, ...]:
        if name not in PARTS:
            raise ConfigError(unknown_choice("split part", name, PARTS))
        rows: tuple[int, ...] = getattr(self, name)
        return rows

    def to_json(self, track_ids: Sequence[str]) -> dict[str, Any]:
        """The ``split`` object of ``head_meta.json``: settings, counts and the ids of each part."""
        return {
            "by": self.by,
            "seed": self.seed,
            "fractions": {"val": self.val_fraction, "test": self.test_fraction},
            "counts": {p: len(self.part(p)) for p in PARTS},
            **{p: [track_ids[r] for r in self.part(p)] for p in PARTS},
        }


def labels_of(rows: Sequence[TrackRow], track_ids: Sequence[str], column: str) -> list[str | None]:
    """The value of metadata column ``column`` for each track id (None when missing).

    Raises:
        ConfigError: unknown column (listing the known ones); ArtifactError: an id has no metadata row.
    """
    if column not in LABEL_COLUMNS:
        raise ConfigError(unknown_choice("label column", column, LABEL_COLUMNS))
    by_id = {r.track_id: r for r in rows}
    missing = [t for t in track_ids if t not in by_id]
    if missing:
        raise ArtifactError(f"{len(missing)} embedded tracks have no metadata row, e.g. {missing[:3]}")
    out: list[str | None] = []
    for t in track_ids:
        value = getattr(by_id[t], column)
        out.append(None if value is None or str(value).strip() == "" else str(value))
    return out


def make_split(
    groups: Sequence[str | None], by: str, *, val_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Deal the rows ``0..len(groups)-1`` to train / val / test, keeping each group (album, label) whole.

    Args:
        groups: per row its album id (``by='album'``) or label (``by='label'``; None = unlabelled, sent to
            train); ignored for ``by='track'`` (every row its own group).

    Raises:
        ConfigError: unknown ``by`` or fractions outside 0 < val, 0 <= test, val + test < 1;
        ArtifactError: too few groups for every part to get one.
    """
    if by not in SPLITS:
        raise ConfigError(unknown_choice("split", by, SPLITS))
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"split fractions must satisfy 0 < val < 1, 0 <= test < 1, val + test < 1; got val {val_fraction}, "
            f"test {test_fraction}"
        )
    n = len(groups)
    keys: list[str | None] = [str(i) for i in range(n)] if by == "track" else list(groups)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(keys):
        if g is not None:
            members.setdefault(g, []).append(i)
    names = sorted(members)
    order = [names[j] for j in np.random.default_rng(seed).permutation(len(names))]
    targets = {"test": test_fraction * n, "val": val_fraction * n}
    parts: dict[str, list[int]] = {
        "train": [i for i, g in enumerate(keys) if g is None],
        "val": [],
        "test": [],
    }
    it = iter(order)
    for part in ("test", "val"):
        while targets[part] > 0 and len(parts[part]) < targets[part]:
            g = next(it, None)
            if g is None:
                break
            parts[part] += members[g]
    for g in it:
        parts["train"] += members[g]
    empty = [p for p in PARTS if not parts[p] and (p != "test" or test_fraction > 0)]
    if empty:
        raise ArtifactError(
            f"split by {by!r}: {len(names)} groups cannot fill every part (empty: {', '.join(empty)}); "
            "lower the val/test fractions or split by track"
        )
    return Split(
        by,
        seed,
        float(val_fraction),
        float(test_fraction),
        *(tuple(sorted(parts[p])) for p in PARTS),
    )


@dataclass
class PartFrames:
    """The frames of one split part only: :meth:`of` / :meth:`view` raise for any other row (and log the rows served)."""

    frames: Frames
    rows: frozenset[int]
    part: str
    touched: set[int] = field(default_factory=set)
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_views(self) -> int:
        return self.frames.n_views

    @property
    def dim(self) -> int:
        return int(self.frames.meta["dim"])

    def _allow(self, row: int) -> None:
        if row not in self.rows:
            raise ArtifactError(
                f"row {row} is not in the {self.part} split: its frames must not be read here"
            )
        self.touched.add(row)

    def of(self, row: int) -> np.ndarray:
        """The clean frames of ``row`` (float32 [T, D]), cached."""
        self._allow(row)
        if row not in self._cache:
            self._cache[row] = self.frames.of(row)
        return self._cache[row]

    def view(self, row: int, v: int) -> np.ndarray:
        """The frames of augmented view ``v`` of ``row``."""
        self._allow(row)
        return self.frames.view(row, v)

    def standardization(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and std (float64) over every clean frame of this part's tracks."""
        total = np.zeros(self.dim, np.float64)
        sq = np.zeros(self.dim, np.float64)
        count = 0
        for r in sorted(self.rows):
            f = self.of(r).astype(np.float64)
            total += f.sum(axis=0)
            sq += (f * f).sum(axis=0)
            count += f.shape[0]
        mean = total / max(count, 1)
        return mean, np.sqrt(np.maximum(sq / max(count, 1) - mean * mean, 0.0))


def crop(frames: np.ndarray, rng: np.random.Generator, min_fraction: float, max_frames: int) -> np.ndarray:
    """A random contiguous crop: length uniform in [ceil(min_fraction * T), T], at most ``max_frames``."""
    t = frames.shape[0]
    lo = max(1, int(np.ceil(min_fraction * t)))
    length = min(int(rng.integers(lo, t + 1)), max_frames)
    start = int(rng.integers(0, t - length + 1))
    return frames[start : start + length]


def fixed_crop(frames: np.ndarray, fraction: float, max_frames: int) -> np.ndarray:
    """The centred crop of ``ceil(fraction * T)`` frames (at most ``max_frames``): a deterministic query."""
    t = frames.shape[0]
    length = min(max(1, int(np.ceil(fraction * t))), max_frames)
    start = (t - length) // 2
    return frames[start : start + length]
