"""Exact cosine index: FAISS ``IndexFlatIP`` on normalised vectors -> ``index/faiss.index``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from research_job.index.base import as_f32
from research_job.io.atomic import atomic_open


def _faiss() -> Any:
    import faiss

    return faiss


def faiss_write(index: Any, path: Path) -> None:
    """Serialise a FAISS index and write it atomically."""
    faiss = _faiss()
    data = faiss.serialize_index(index)
    with atomic_open(path, "wb") as f:
        f.write(np.asarray(data).tobytes())


def faiss_read(path: Path) -> Any:
    """Read a FAISS index file."""
    return _faiss().read_index(str(path))


class FaissFlatIndex:
    """Brute-force inner product (FAISS's float32 BLAS; the float64 reference ranking is ``search.py``)."""

    name: ClassVar[str] = "faiss-flat"
    library: ClassVar[str] = "faiss"
    type_name: ClassVar[str] = "IndexFlatIP"
    file_name: ClassVar[str] = "faiss.index"
    exact: ClassVar[bool] = True

    def __init__(self, index: Any) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict[str, Any]) -> FaissFlatIndex:
        x = as_f32(vectors)
        index = _faiss().IndexFlatIP(x.shape[1])
        index.add(x)
        return cls(index)

    @classmethod
    def load(cls, path: Path, dim: int) -> FaissFlatIndex:
        return cls(faiss_read(path))

    def save(self, path: Path) -> None:
        faiss_write(self.index, path)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        s, i = self.index.search(as_f32(queries), k)
        return s, i.astype(np.int64)

    def set_ef(self, ef: int) -> None:
        return None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @staticmethod
    def library_version() -> str:
        return str(_faiss().__version__)
