"""Exact cosine index: FAISS ``IndexFlatIP`` on normalised vectors -> ``index/faiss.index``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from research_job.index.base import as_f32
from research_job.index.faiss_common import FaissBacked, faiss_module


class FaissFlatIndex(FaissBacked):
    """Brute-force inner product (FAISS's float32 BLAS; the float64 reference ranking is ``search.py``)."""

    name: ClassVar[str] = "faiss-flat"
    type_name: ClassVar[str] = "IndexFlatIP"
    artifact: ClassVar[str] = "faiss_index"
    exact: ClassVar[bool] = True

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict[str, Any]) -> FaissFlatIndex:
        x = as_f32(vectors)
        index = faiss_module().IndexFlatIP(x.shape[1])
        index.add(x)
        return cls(index)

    def set_ef(self, ef: int) -> None:
        return None
