"""Approximate cosine index: FAISS ``IndexHNSWFlat`` with METRIC_INNER_PRODUCT -> ``index/faiss_hnsw.index``.

``ef_search`` is not stored in the FAISS file reliably across versions; ``index_meta.json`` records the one to use.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from research_job.index.base import as_f32
from research_job.index.faiss_common import FaissBacked, faiss_module


class FaissHNSWIndex(FaissBacked):
    """HNSW graph over inner product (params ``M``, ``ef_construction``, ``ef_search``)."""

    name: ClassVar[str] = "faiss-hnsw"
    type_name: ClassVar[str] = "IndexHNSWFlat"
    artifact: ClassVar[str] = "faiss_hnsw_index"
    exact: ClassVar[bool] = False

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict[str, Any]) -> FaissHNSWIndex:
        faiss = faiss_module()
        x = as_f32(vectors)
        index = faiss.IndexHNSWFlat(x.shape[1], int(params.get("M", 16)), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params.get("ef_construction", 200))
        index.hnsw.efSearch = int(params.get("ef_search", 64))
        index.add(x)
        return cls(index)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = int(ef)
