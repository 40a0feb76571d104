"""What the FAISS backends share: lazy import, atomic (de)serialisation, and the index-protocol methods that do
not depend on the index type (load, save, search, sizes)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from research_job.index.base import as_f32
from research_job.io.atomic import atomic_open


def faiss_module() -> Any:
    """``import faiss`` (heavy; imported on first use).

    FAISS's loader tries its fastest build first and logs each miss at INFO with a ``ModuleNotFoundError`` text,
    which reads like a failure on every command; those lines are kept at WARNING, and the SIMD level it runs at
    is recorded in ``index_meta.json`` instead (:meth:`FaissBacked.simd`).
    """
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def faiss_write(index: Any, path: Path) -> None:
    """Serialise a FAISS index and write it atomically."""
    data = faiss_module().serialize_index(index)
    with atomic_open(path, "wb") as f:
        f.write(np.asarray(data).tobytes())


def faiss_read(path: Path) -> Any:
    """Read a FAISS index file."""
    return faiss_module().read_index(str(path))


class FaissBacked:
    """Base of the FAISS backends: subclasses set the class facts and implement ``build`` and ``set_ef``."""

    library: ClassVar[str] = "faiss"

    def __init__(self, index: Any) -> None:
        self.index = index

    @classmethod
    def load(cls, path: Path, dim: int) -> Self:
        return cls(faiss_read(path))

    def save(self, path: Path) -> None:
        faiss_write(self.index, path)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        s, i = self.index.search(as_f32(queries), k)
        return s, i.astype(np.int64)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @staticmethod
    def library_version() -> str:
        return str(faiss_module().__version__)

    @staticmethod
    def simd() -> str | None:
        """The SIMD level of the FAISS build that loaded (``AVX512``, ``AVX2``, ``NEON``, ``generic``)."""
        opts = str(faiss_module().get_compile_options()).split()
        return next((o for o in ("AVX512_SPR", "AVX512", "AVX2", "SVE", "NEON") if o in opts), "generic")
