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
from research_job.rerank import Rerank, scores, topk, track_stats
from research_job.search import pair_scores, search

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
    """What is wrong with a table's values (empty when it is well-formed), by the rules the Node API loads it
    with: each row lists exactly ``min(k, count - 1)`` rows, then only -1 (padding only when ``count - 1 < k``);
    no row out of range, a track listed as its own neighbour, or a row listed twice."""
    out: list[str] = []
    count, k = table.shape
    listed = min(k, max(count - 1, 0))
    bad = np.nonzero((table < -1) | (table >= count))
    if bad[0].size:
        i, j = int(bad[0][0]), int(bad[1][0])
        out.append(f"{bad[0].size} values outside [-1, {count}), e.g. row {i} column {j}: {int(table[i, j])}")
    own = np.nonzero(table == np.arange(count)[:, None])
    if own[0].size:
        out.append(f"{own[0].size} rows list themselves, e.g. row {int(own[0][0])}")
    pad = table < 0
    after_pad = pad[:, :-1] & ~pad[:, 1:]
    early = np.nonzero(pad[:, :listed])
    if after_pad.any():
        out.append(f"-1 padding followed by a row in row {int(np.nonzero(after_pad.any(axis=1))[0][0])}")
    elif early[0].size:
        out.append(
            f"-1 padding in row {int(early[0][0])} column {int(early[1][0])}, before the row's {listed} "
            f"neighbours (padding only when count - 1 < k)"
        )
    late = np.nonzero(table[:, listed:] != -1)
    if late[0].size:
        i, j = int(late[0][0]), int(late[1][0]) + listed
        out.append(
            f"row {i} column {j} holds {int(table[i, j])} but only {listed} other tracks exist: padding must be -1"
        )
    srt = np.sort(np.where(pad, -np.arange(1, k + 1), table), axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
    if dup.any():
        out.append(f"a row listed twice in row {int(np.nonzero(dup)[0][0])}")
    return out


#: largest rise allowed between consecutive listed cosine scores (float64 sums in another order differ by ~1e-16);
#: the Node API's ORDER_TOLERANCE
ORDER_TOLERANCE = 1e-12


def order_problem(table: np.ndarray, vectors: np.ndarray, batch: int = 4096) -> str | None:
    """The first listed pair whose cosine (the reference score of :mod:`research_job.search`) rises above the
    one before it by more than :data:`ORDER_TOLERANCE` (a plain table is best first), or None. O(count x k x D)."""
    count, k = table.shape
    listed = min(k, max(count - 1, 0))
    if listed < 2:
        return None
    for start in range(0, count, batch):
        t = table[start : start + batch, :listed].astype(np.int64)
        rows = np.repeat(np.arange(start, start + t.shape[0]), listed)
        s = pair_scores(vectors[rows], vectors[np.maximum(t.reshape(-1), 0)]).reshape(t.shape)
        rise = np.nonzero(s[:, 1:] > s[:, :-1] + ORDER_TOLERANCE)
        if rise[0].size:
            i, j = int(rise[0][0]), int(rise[1][0]) + 1
            return (
                f"row {start + i} column {j} lists row {int(t[i, j])} with score {float(s[i, j])!r}, above column "
                f"{j - 1}'s {float(s[i, j - 1])!r}: lists must be best first"
            )
    return None


def spot_check(
    table: np.ndarray, vectors: np.ndarray, ids: Sequence[str], rows: np.ndarray, rerank: Rerank | None = None
) -> str | None:
    """The first entry of the sampled ``rows`` where the table differs from a fresh exact ranking, or None.

    A plain table is compared with :func:`research_job.search.search` (float64 cosine, ties by row), a re-ranked
    one with the exact ranking of its :mod:`research_job.rerank` method; a different row is accepted only where
    its score equals the expected one within :data:`ORDER_TOLERANCE` (a tie). Cost: len(rows) exact searches
    over all N rows (a re-ranked table adds one N x N pass for the method's statistics).
    """
    count, k = table.shape
    listed = min(k, max(count - 1, 0))
    rows = np.asarray(rows, dtype=np.int64)
    if listed == 0 or rows.size == 0:
        return None
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if rerank is None or rerank.method == "none":
        want = search(x, ids, x[rows], [ids[int(r)] for r in rows], listed)
        want_rows, want_scores = want.rows, want.scores
        got_scores = pair_scores(
            np.repeat(x[rows], listed, axis=0), x[np.maximum(table[rows, :listed], 0).reshape(-1)]
        )
        got_scores = got_scores.reshape(rows.size, listed)
    else:
        c = scores(x, rows, rerank, track_stats(x, rerank))
        want_rows = np.lexsort((np.broadcast_to(np.arange(count), c.shape), -c), axis=1)[:, :listed]
        want_scores = np.take_along_axis(c, want_rows, axis=1)
        got_scores = np.take_along_axis(c, np.maximum(table[rows, :listed], 0).astype(np.int64), axis=1)
    got_rows = table[rows, :listed]
    off = (got_rows != want_rows) & ~(np.abs(got_scores - want_scores) <= ORDER_TOLERANCE)
    bad = np.nonzero(off)
    if not bad[0].size:
        return None
    i, j = int(bad[0][0]), int(bad[1][0])
    what = (
        "exact search" if rerank is None or rerank.method == "none" else f"exact {rerank.method} re-ranking"
    )
    return (
        f"row {int(rows[i])} column {j} lists row {int(got_rows[i, j])} (score {float(got_scores[i, j])!r}) but {what} "
        f"ranks row {int(want_rows[i, j])} (score {float(want_scores[i, j])!r}) there"
    )
