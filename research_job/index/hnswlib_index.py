"""Approximate cosine index: hnswlib ``Index(space='ip')`` -> ``index/hnsw.index`` (ids = row numbers).

The hnswlib file stores neither the space nor the dimension: ``index_meta.json`` is where readers (the Node
API) take them from. hnswlib's ``ip`` distance is ``1 - <a, b>``; :meth:`search` returns the similarity.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from research_job.index.base import as_f32
from research_job.io.atomic import atomic_path


def _hnswlib() -> Any:
    import hnswlib

    return hnswlib


class HnswlibIndex:
    """hnswlib HNSW over inner product (params ``M``, ``ef_construction``, ``ef_search``; single thread)."""

    name: ClassVar[str] = "hnswlib"
    library: ClassVar[str] = "hnswlib"
    type_name: ClassVar[str] = "hnswlib.Index"
    artifact: ClassVar[str] = "hnsw_index"
    exact: ClassVar[bool] = False

    def __init__(self, index: Any) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict[str, Any]) -> HnswlibIndex:
        x = as_f32(vectors)
        index = _hnswlib().Index(space="ip", dim=x.shape[1])
        index.init_index(
            max_elements=max(1, x.shape[0]),
            M=int(params.get("M", 16)),
            ef_construction=int(params.get("ef_construction", 200)),
            random_seed=int(params.get("seed", 100)),
        )
        index.set_num_threads(1)  # deterministic graph
        if x.shape[0]:
            index.add_items(x, np.arange(x.shape[0]))
        index.set_ef(int(params.get("ef_search", 64)))
        return cls(index)

    @classmethod
    def load(cls, path: Path, dim: int) -> HnswlibIndex:
        index = _hnswlib().Index(space="ip", dim=int(dim))
        index.load_index(str(path))
        return cls(index)

    def save(self, path: Path) -> None:
        # hnswlib writes to a path: a temp file in the same folder, renamed onto ``path`` when complete
        with atomic_path(path) as tmp:
            self.index.save_index(os.fspath(tmp))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_f32(queries)
        n = self.ntotal
        kk = min(k, n)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        if kk == 0:
            return scores, ids
        self.index.set_ef(max(self.index.ef, kk))
        labels, dist = self.index.knn_query(q, k=kk)
        ids[:, :kk] = labels.astype(np.int64)
        scores[:, :kk] = 1.0 - dist
        return scores, ids

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(int(ef))

    @property
    def ntotal(self) -> int:
        return int(self.index.get_current_count())

    @property
    def dim(self) -> int:
        return int(self.index.dim)

    @staticmethod
    def simd() -> str | None:
        """hnswlib picks its distance kernels at build time of the wheel; not reported by the library."""
        return None

    @staticmethod
    def library_version() -> str:
        import importlib.metadata

        try:
            return importlib.metadata.version("hnswlib")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
