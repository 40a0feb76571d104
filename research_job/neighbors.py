"""The precomputed neighbour table ``index/neighbors.i32``: every track's exact top-k other tracks.

Most nearest-neighbour queries a catalogue serves are about its own tracks ("tracks like this one"), and their
answers do not change until the embeddings do; computing them once, exactly, in the batch job turns each such
request into a lookup (the Node API serves ``k <= K`` from the table and falls back to its index otherwise).

Format (``artifact_schema/index_meta.schema.json``, property ``neighbors``): little-endian int32, row-major
``[count, K]``; row i lists the rows of the K nearest other tracks of row i by the reference ranking of
:mod:`research_job.search` (float64 score descending, ties by row ascending, the track itself never listed),
best first; ``-1`` pads a row when ``count - 1 < K``. Computing it is one exact all-pairs search: O(N^2 D)
(~30 s at N = 100k, D = 200 on 2 cores; ~100x that at 1M), which is why ``neighbors_k = 0`` turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from research_job.errors import ArtifactError
from research_job.io.atomic import write_bytes
from research_job.provenance import sha256_file
from research_job.rerank import Rerank, topk
from research_job.search import search

DTYPE = np.dtype("<i4")


def compute(vectors: np.ndarray, ids: Sequence[str], k: int, batch_size: int = 1024) -> np.ndarray:
    """The exact top-``k`` other rows of every row, int32 ``[N, min(k, ...)]`` padded with -1 to ``k`` columns.

    Raises:
        ValueError: ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"neighbors k must be >= 1, got {k}")
    if vectors.shape[0] >= 2**31:
        raise ValueError(f"{vectors.shape[0]} rows do not fit int32 row numbers")
    res = search(vectors, ids, vectors, ids, k, batch_size=batch_size)
    return res.rows.astype(DTYPE)


#: the ranking of a plain table, and of one re-ranked by research_job.rerank (recorded with its method)
COSINE_RANKING = "score_desc_float64_then_row_asc"
RERANKED = "rerank_score_desc_then_row_asc"


def write(
    path: Path, table: np.ndarray, build_sec: float, rerank: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``table`` atomically to ``path``; returns the ``index_meta.json['neighbors']`` entry (with the
    re-ranking that ordered it, when not plain cosine)."""
    data = np.ascontiguousarray(table, dtype=DTYPE)
    write_bytes(path, data.tobytes())
    return {
        "file": path.name,
        "k": int(data.shape[1]),
        "dtype": "int32",
        "byte_order": "little",
        "exact": True,
        "ranking": COSINE_RANKING if rerank is None else RERANKED,
        **({"rerank": rerank} if rerank is not None else {}),
        "self_excluded": True,
        "build_sec": round(build_sec, 4),
        "size_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def build(
    vectors: np.ndarray, ids: Sequence[str], k: int, path: Path, rerank: Rerank | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Compute and write the table (exact cosine, or the exact ranking of a :mod:`research_job.rerank` method);
    returns it and its ``index_meta.json`` entry."""
    t0 = time.perf_counter()
    if rerank is None or rerank.method == "none":
        table = compute(vectors, ids, k)
        return table, write(path, table, time.perf_counter() - t0)
    if len(set(ids)) != len(ids):
        raise ArtifactError("track ids of the embeddings are not unique")
    table = topk(vectors, k, rerank)[0].astype(DTYPE)
    return table, write(path, table, time.perf_counter() - t0, rerank.to_json())


def read(path: Path, count: int, k: int) -> np.ndarray:
    """Read a table of ``count`` rows and ``k`` columns.

    Raises:
        ArtifactError: missing file or a size that is not ``count * k * 4`` bytes.
    """
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (listed in index_meta.json)")
    size = path.stat().st_size
    if size != count * k * DTYPE.itemsize:
        raise ArtifactError(f"{path}: {size} bytes, expected count {count} x k {k} x 4 = {count * k * 4}")
    return np.fromfile(path, dtype=DTYPE).reshape(count, k)


def problems(table: np.ndarray) -> list[str]:
    """What is wrong with a table's values (empty when it is well-formed): rows out of range, a track listed as
    its own neighbour, a row listed twice, or -1 padding followed by a real row."""
    out: list[str] = []
    count = table.shape[0]
    bad = np.nonzero((table < -1) | (table >= count))
    if bad[0].size:
        i, j = int(bad[0][0]), int(bad[1][0])
        out.append(f"{bad[0].size} values outside [-1, {count}), e.g. row {i} column {j}: {int(table[i, j])}")
    own = np.nonzero(table == np.arange(count)[:, None])
    if own[0].size:
        out.append(f"{own[0].size} rows list themselves, e.g. row {int(own[0][0])}")
    pad = table < 0
    after_pad = pad[:, :-1] & ~pad[:, 1:]
    if after_pad.any():
        out.append(f"-1 padding followed by a row in row {int(np.nonzero(after_pad.any(axis=1))[0][0])}")
    srt = np.sort(np.where(pad, -np.arange(1, table.shape[1] + 1), table), axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
    if dup.any():
        out.append(f"a row listed twice in row {int(np.nonzero(dup)[0][0])}")
    return out
