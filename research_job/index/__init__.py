"""Cosine indexes over L2-normalised embeddings: one backend per file behind :class:`~research_job.index.base.VectorIndex`.

``BACKENDS`` maps the ``index_meta.json`` name to its class; heavy libraries are imported inside the backends.
"""

from __future__ import annotations

from research_job.index.base import VectorIndex
from research_job.index.faiss_flat import FaissFlatIndex
from research_job.index.faiss_hnsw import FaissHNSWIndex
from research_job.index.hnswlib_index import HnswlibIndex

BACKENDS: dict[str, type[VectorIndex]] = {
    FaissFlatIndex.name: FaissFlatIndex,
    FaissHNSWIndex.name: FaissHNSWIndex,
    HnswlibIndex.name: HnswlibIndex,
}

__all__ = ["BACKENDS", "FaissFlatIndex", "FaissHNSWIndex", "HnswlibIndex", "VectorIndex"]
