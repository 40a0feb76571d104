"""The protocol every index backend implements: build -> save, load -> search.

All backends use inner product on L2-normalised vectors (= cosine similarity); ids are row numbers of
``embeddings.f32``. ``search`` returns (scores float32 [Q, k], ids int64 [Q, k], -1 where fewer than k).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np


class VectorIndex(Protocol):
    """A cosine index backend."""

    #: name in ``index_meta.json`` (``faiss-flat``, ``faiss-hnsw``, ``hnswlib``)
    name: ClassVar[str]
    #: library and class name recorded in ``index_meta.json``
    library: ClassVar[str]
    type_name: ClassVar[str]
    #: key of its file in ``artifact_schema/artifacts.json`` (``layout.path(artifact)``)
    artifact: ClassVar[str]
    exact: ClassVar[bool]

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict[str, Any]) -> VectorIndex:
        """Index float32 [N, D] normalised ``vectors`` (ids = rows) with backend ``params``."""
        ...

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        """Read an index file written by :meth:`save` (``dim`` is needed by hnswlib, whose file lacks it)."""
        ...

    def save(self, path: Path) -> None:
        """Write the index atomically to ``path``."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores [Q, k], ids [Q, k])."""
        ...

    def set_ef(self, ef: int) -> None:
        """Set the search breadth of an HNSW index (no-op for exact indexes)."""
        ...

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    @staticmethod
    def simd() -> str | None:
        """The SIMD level the library runs at, when it says (recorded in ``index_meta.json``), else None."""
        ...

    @staticmethod
    def library_version() -> str:
        """Version of the backing library."""
        ...


def as_f32(x: np.ndarray) -> np.ndarray:
    """C-contiguous float32 2-D view of ``x``."""
    return np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
