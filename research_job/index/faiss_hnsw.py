"""Approximate cosine index: FAISS ``IndexHNSWFlat`` with METRIC_INNER_PRODUCT -> ``index/faiss_hnsw.index``.

``ef_search`` is not stored in the FAISS file reliably across versions; ``index_meta.json`` records the one to use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from research_job.index.base import as_f32
from research_job.index.faiss_flat import _faiss, faiss_read, faiss_write


class FaissHNSWIndex:
    """HNSW graph over inner product (params ``M``, ``ef_construction``, ``ef_search``)."""

    name: ClassVar[str] = "faiss-hnsw"
    library: ClassVar[str] = "faiss"
    type_name: ClassVar[str] = "IndexHNSWFlat"
    file_name: ClassVar[str] = "faiss_hnsw.index"
    exact: ClassVar[bool] = False

    def __init__(self, index: Any) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict[str, Any]) -> FaissHNSWIndex:
        faiss = _faiss()
        x = as_f32(vectors)
        index = faiss.IndexHNSWFlat(x.shape[1], int(params.get("M", 16)), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params.get("ef_construction", 200))
        index.hnsw.efSearch = int(params.get("ef_search", 64))
        index.add(x)
        return cls(index)

    @classmethod
    def load(cls, path: Path, dim: int) -> FaissHNSWIndex:
        return cls(faiss_read(path))

    def save(self, path: Path) -> None:
        faiss_write(self.index, path)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        s, i = self.index.search(as_f32(queries), k)
        return s, i.astype(np.int64)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = int(ef)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @staticmethod
    def library_version() -> str:
        return str(_faiss().__version__)
