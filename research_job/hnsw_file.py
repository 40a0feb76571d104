"""Bounds-check an hnswlib 0.8.0 index file before any native code reads it (the checks of the Node API's
``node_api/src/lib/hnswFile.ts``, so that validate refuses every file the API refuses).

hnswlib trusts every offset, link and level in the file: a link past the element count, an entry point above
the graph or an upper-level link to an element without that level makes ``load_index`` / a search read outside
its buffers (a crash, not an exception), and a large ``max_elements`` makes it allocate that many elements. A
sha256 only proves the file is the recorded one, so the structure is checked here, over the file's bytes.

File layout (little-endian; size_t is 8 bytes):
  header (96 bytes): offset_level0, max_elements, cur_element_count, size_data_per_element, label_offset,
    offset_data (size_t x 6), maxlevel (int32), enterpoint_node (uint32), maxM, maxM0, M (size_t x 3),
    mult (double), ef_construction (size_t)
  level 0, count x size_data_per_element: per element [link count (uint16) | flags (uint8) | pad (uint8)]
    [maxM0 x uint32 links] [dim x float32] [label (size_t)]
  upper levels, per element: uint32 byte size L (0: on level 0 only), then L bytes =
    level x ([link count (uint16) | 2 bytes] [maxM x uint32 links])

Cost: one pass over the file's bytes (numpy over level 0; a Python loop over the elements' upper-level sizes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from research_job.errors import ArtifactError

HEADER_BYTES = 96
_HEADER = struct.Struct("<6QiI3QdQ")
#: hnswlib's DELETE_MARK in the flags byte of an element's level-0 list header
_DELETE_MARK = 0x01
#: hnswlib draws levels as floor(-ln(u) * mult), u > 0 a double: no file it writes reaches this
_MAX_LEVEL = 64


@dataclass(frozen=True)
class HnswHeader:
    """The header fields the checks and the callers use."""

    max_elements: int
    count: int
    size_data_per_element: int
    data_size: int  # bytes of vector data per element = label offset - data offset
    offset_data: int  # where an element's vector starts (hnswlib reads it from the file)
    label_offset: int  # where an element's label starts (hnswlib reads it from the file)
    max_level: int
    entry_point: int
    max_m: int
    max_m0: int
    m: int
    ef_construction: int


def read_header(buf: bytes) -> HnswHeader | None:
    """The header of ``buf``; None when it is too short or not an hnswlib header (offset_level0 != 0)."""
    if len(buf) < HEADER_BYTES:
        return None
    f = _HEADER.unpack_from(buf, 0)
    offset_level0, max_elements, count, size_data, label_offset, offset_data = f[:6]
    max_level, entry_point, max_m, max_m0, m, _mult, ef_construction = f[6:]
    if offset_level0 != 0:
        return None
    return HnswHeader(max_elements, count, size_data, label_offset - offset_data, offset_data, label_offset,
                      max_level, entry_point, max_m, max_m0, m, ef_construction)  # fmt: skip


def check_file(path: Path, n: int, dim: int) -> HnswHeader:
    """Check that ``path`` is an hnswlib index of exactly ``n`` elements of dimension ``dim`` ('ip' space) that
    hnswlib can load and search without reading outside its buffers: the header's sizes agree with each other,
    with ``dim`` and with the file length; ``max_elements`` equals the count; every link of every level names an
    element that exists and has that level; link counts fit their lists; the entry point exists and sits on the
    top level; no element is marked deleted; the labels are the row indices 0..n-1.

    Raises:
        ArtifactError: naming the file and the first problem (numbers only, never the file's content).
    """
    buf = path.read_bytes()
    try:
        return check_bytes(buf, n, dim)
    except _FormatError as e:
        raise ArtifactError(f"{path}: {e} (not handed to hnswlib)") from None


class _FormatError(Exception):
    pass


def check_bytes(buf: bytes, n: int, dim: int) -> HnswHeader:
    """:func:`check_file` over bytes; raises ``_FormatError`` (a private type; :func:`check_file` names the file)."""
    h = read_header(buf)
    if h is None:
        raise _FormatError(
            f"is not an hnswlib index (header of {HEADER_BYTES} bytes unreadable or out of range)"
        )
    _check_header(h, n, dim)
    size_links0, size_links = 4 + 4 * h.max_m0, 4 + 4 * h.max_m
    level0_bytes = h.count * h.size_data_per_element
    if HEADER_BYTES + level0_bytes > len(buf):
        raise _FormatError(
            f"is {len(buf)} bytes, shorter than its header and {h.count} level-0 elements of "
            f"{h.size_data_per_element} bytes"
        )
    levels, upper_at = _upper_sizes(buf, h, HEADER_BYTES + level0_bytes, size_links)
    if h.count > 0 and levels[h.entry_point] != h.max_level:
        raise _FormatError(
            f"entry point {h.entry_point} has level {levels[h.entry_point]}, but the search starts at "
            f"maxlevel {h.max_level}"
        )
    _check_level0(buf, h, n, size_links0)
    _check_upper(buf, h, levels, upper_at, size_links)
    return h


def _check_header(h: HnswHeader, n: int, dim: int) -> None:
    if h.count != n:
        raise _FormatError(f"holds {h.count} elements, expected {n}")
    if h.max_elements != h.count:
        raise _FormatError(
            f"has max_elements {h.max_elements}, expected its element count {h.count} (the research job "
            "writes a full index)"
        )
    if h.m < 1 or h.max_m != h.m or h.max_m0 < h.m or h.max_m0 > 0xFFFF:
        raise _FormatError(
            f"has M {h.m}, maxM {h.max_m}, maxM0 {h.max_m0}; expected M >= 1, maxM = M and M <= maxM0 <= 65535"
        )
    label_offset = 4 + 4 * h.max_m0 + h.data_size
    if h.data_size != dim * 4:
        raise _FormatError(
            f"stores {h.data_size} bytes per vector (dim {h.data_size / 4:g}), expected dim {dim}"
        )
    # hnswlib reads vectors and labels at these offsets from the file: each must sit where the layout puts it
    if h.offset_data != 4 + 4 * h.max_m0 or h.label_offset != label_offset:
        raise _FormatError(
            f"has offset_data {h.offset_data} and label_offset {h.label_offset}, expected {4 + 4 * h.max_m0} "
            f"and {label_offset} (links 4 + 4 x {h.max_m0}, then the vector)"
        )
    if h.size_data_per_element != label_offset + 8:
        raise _FormatError(
            f"has {h.size_data_per_element} bytes per element, expected {label_offset + 8} (links 4 + 4 x "
            f"{h.max_m0}, vector {h.data_size}, label 8)"
        )
    if not 0 <= h.max_level <= _MAX_LEVEL:
        raise _FormatError(f"has maxlevel {h.max_level}, outside [0, {_MAX_LEVEL}]")
    if h.count > 0 and h.entry_point >= h.count:
        raise _FormatError(f"has entry point {h.entry_point}, outside [0, {h.count})")


def _upper_sizes(buf: bytes, h: HnswHeader, start: int, size_links: int) -> tuple[np.ndarray, np.ndarray]:
    """Each element's level and the offset of its upper-level lists; the lists must end the file exactly."""
    levels = np.zeros(h.count, np.int64)
    upper_at = np.zeros(h.count, np.int64)
    o, end = start, len(buf)
    for i in range(h.count):
        if o + 4 > end:
            raise _FormatError(f"ends inside the upper-level list size of element {i}")
        size = int.from_bytes(buf[o : o + 4], "little")
        o += 4
        if size % size_links:
            raise _FormatError(
                f"element {i} has upper-level lists of {size} bytes, not a multiple of {size_links} "
                f"(4 + 4 x maxM {h.max_m})"
            )
        level = size // size_links
        if level > h.max_level:
            raise _FormatError(f"element {i} has level {level}, above the index's maxlevel {h.max_level}")
        if o + size > end:
            raise _FormatError(f"ends inside the upper-level lists of element {i}")
        levels[i], upper_at[i] = level, o
        o += size
    if o != end:
        raise _FormatError(f"has {end - o} bytes after the last element's lists")
    return levels, upper_at


def _check_level0(buf: bytes, h: HnswHeader, n: int, size_links0: int) -> None:
    """Level-0 list of every element (count, links, delete mark) and its label (a permutation of 0..n-1)."""
    if h.count == 0:
        return
    el = np.frombuffer(buf, np.uint8, h.count * h.size_data_per_element, HEADER_BYTES).reshape(h.count, -1)
    links = el[:, 0].astype(np.int64) | (el[:, 1].astype(np.int64) << 8)
    deleted = np.nonzero(el[:, 2] & _DELETE_MARK)[0]
    if deleted.size:
        raise _FormatError(f"element {int(deleted[0])} is marked deleted (the research job never deletes)")
    over = np.nonzero(links > h.max_m0)[0]
    if over.size:
        i = int(over[0])
        raise _FormatError(f"element {i} lists {int(links[i])} links at level 0, more than maxM0 {h.max_m0}")
    to = np.ascontiguousarray(el[:, 4:size_links0]).view("<u4").astype(np.int64)
    used = np.arange(h.max_m0)[None, :] < links[:, None]
    bad = np.nonzero(used & (to >= h.count))
    if bad[0].size:
        i, j = int(bad[0][0]), int(bad[1][0])
        raise _FormatError(f"element {i} links to {int(to[i, j])} at level 0, outside [0, {h.count})")
    at = h.label_offset
    labels = np.ascontiguousarray(el[:, at : at + 8]).view("<u8")[:, 0]
    out = np.nonzero(labels >= n)[0]
    if out.size:
        i = int(out[0])
        raise _FormatError(f"element {i} has label {int(labels[i])}, outside the row indices [0, {n})")
    counts = np.bincount(labels.astype(np.int64), minlength=n)
    twice = np.nonzero(counts > 1)[0]
    if twice.size:
        lab = int(twice[0])
        i = int(np.nonzero(labels == lab)[0][1])
        raise _FormatError(
            f"label {lab} appears twice (element {i}); labels must be the row indices 0..{n - 1}"
        )


def _check_upper(
    buf: bytes, h: HnswHeader, levels: np.ndarray, upper_at: np.ndarray, size_links: int
) -> None:
    """Every upper-level list: its link count fits maxM, every link exists and has at least that level."""
    raw = np.frombuffer(buf, np.uint8)
    for i in np.nonzero(levels > 0)[0]:
        lv = int(levels[i])
        block = raw[int(upper_at[i]) : int(upper_at[i]) + lv * size_links].reshape(lv, size_links)
        links = block[:, 0].astype(np.int64) | (block[:, 1].astype(np.int64) << 8)
        over = np.nonzero(links > h.max_m)[0]
        if over.size:
            raise _FormatError(
                f"element {int(i)} lists {int(links[over[0]])} links at level {int(over[0]) + 1}, more than "
                f"maxM {h.max_m}"
            )
        to = np.ascontiguousarray(block[:, 4:]).view("<u4").astype(np.int64)
        used = np.arange(h.max_m)[None, :] < links[:, None]
        rr, jj = np.nonzero(used)
        t, lvl = to[rr, jj], rr + 1  # link targets and the level of each link
        outside = t >= h.count
        bad = np.nonzero(outside | (levels[np.where(outside, 0, t)] < lvl))[0]
        if bad.size:
            b = int(bad[0])
            tb, lb = int(t[b]), int(lvl[b])
            if outside[b]:
                raise _FormatError(f"element {int(i)} links to {tb} at level {lb}, outside [0, {h.count})")
            raise _FormatError(
                f"element {int(i)} links to {tb} at level {lb}, but element {tb} has level {int(levels[tb])}"
            )
