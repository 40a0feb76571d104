"""The columnar metadata sidecar: ``index/tracks_columns.json`` + ``index/tracks_columns.bin``.

The Node API used to parse ``metadata/tracks_metadata.csv`` at every start-up, type every cell and check every row
with ajv (7 s of a 15 s start at 1M tracks). This sidecar holds the same metadata of the *embedded* tracks, in
embeddings row order (row i is ``track_ids.json[i]``, so the track id itself is not stored), as a few typed arrays
the server maps without parsing. The CSV stays the human-readable record; the sidecar is derived from it and
records the CSV's sha256 (a CSV rewritten after it is detected as stale), the ids' sha256 (the row order it follows)
and its binary file's size and sha256.

Binary layout (little-endian; every section starts at a multiple of 8 bytes, so a typed array can view it):

- ``dictionary`` columns (album_id, composer, composer_raw): ``codes`` int32 per row (-1 = null), the distinct
  values in first-appearance order as ``offsets`` uint32 (values + 1) into ``data`` (UTF-8 bytes);
- ``utf8`` columns (title, audio_s3_key): ``offsets`` uint32 (rows + 1) into ``data``;
- ``float64`` columns (track_no, duration_sec): ``values``, NaN = null;
- ``bool8`` columns (composer_missing): ``values`` uint8, 0 or 1.

Each section is ``{"offset": <byte offset>, "length": <elements>}``; ``tracks_columns.schema.json`` is the contract.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.errors import ArtifactError
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import code_version, sha256_bytes, sha256_file, utc_now

SCHEMA = "tracks_columns"
#: column name -> encoding (the order of the sections in the binary file)
COLUMNS: dict[str, str] = {
    "album_id": "dictionary",
    "composer": "dictionary",
    "composer_raw": "dictionary",
    "title": "utf8",
    "audio_s3_key": "utf8",
    "track_no": "float64",
    "duration_sec": "float64",
    "composer_missing": "bool8",
}
_ALIGN = 8
_MAX_OFFSET = 2**32 - 1


class _Writer:
    """Appends 8-byte aligned sections to one byte buffer and describes each."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, arr: np.ndarray) -> dict[str, int]:
        data = arr.tobytes()
        section = {"offset": self.size, "length": int(arr.size)}
        pad = (-len(data)) % _ALIGN
        self.parts.append(data + b"\0" * pad)
        self.size += len(data) + pad
        return section

    def strings(self, values: list[str], column: str) -> dict[str, dict[str, int]]:
        encoded = [v.encode("utf-8") for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        if offsets[-1] > _MAX_OFFSET:
            raise ArtifactError(
                f"column {column}: {offsets[-1]} bytes of text, more than uint32 offsets reach"
            )
        return {
            "offsets": self.add(offsets.astype("<u4")),
            "data": self.add(np.frombuffer(b"".join(encoded), np.uint8)),
        }


def _dictionary(values: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """int32 codes (-1 = None) and the distinct values in first-appearance order."""
    index: dict[str, int] = {}
    codes = np.empty(len(values), dtype="<i4")
    for i, v in enumerate(values):
        codes[i] = -1 if v is None else index.setdefault(v, len(index))
    return codes, list(index)


def encode(rows: list[TrackRow]) -> tuple[bytes, dict[str, Any]]:
    """The binary file and the ``columns`` object of the header for ``rows`` (in row order)."""
    w = _Writer()
    columns: dict[str, Any] = {}
    for name, encoding in COLUMNS.items():
        values = [getattr(r, name) for r in rows]
        if encoding == "dictionary":
            codes, distinct = _dictionary(values)
            columns[name] = {"encoding": encoding, "codes": w.add(codes), **w.strings(distinct, name)}
        elif encoding == "utf8":
            columns[name] = {"encoding": encoding, **w.strings(values, name)}
        elif encoding == "float64":
            arr = np.array([math.nan if v is None else float(v) for v in values], dtype="<f8")
            columns[name] = {"encoding": encoding, "values": w.add(arr)}
        else:
            columns[name] = {"encoding": encoding, "values": w.add(np.array(values, dtype=np.uint8))}
    return b"".join(w.parts), columns


def write(
    layout: ArtifactLayout, track_ids: list[str], track_ids_sha256: str, artifact_version: str
) -> dict[str, Any] | None:
    """Write the sidecar of ``track_ids`` (the embeddings' rows) from the version folder's CSV.

    Returns:
        the header (``tracks_columns.json``) as written; None when the folder has no CSV (embeddings only):
        then any earlier sidecar is removed, since it would describe metadata that is gone.

    Raises:
        ArtifactError: a track id without a CSV row; research_job.errors.MetadataError: a bad CSV.
    """
    csv_path = layout.tracks_csv
    if not csv_path.is_file():
        for p in (layout.tracks_columns, layout.tracks_columns_bin):
            p.unlink(missing_ok=True)
        return None
    csv_rows = read_tracks_csv(csv_path)
    by_id = {r.track_id: r for r in csv_rows}
    absent = [t for t in track_ids if t not in by_id]
    if absent:
        raise ArtifactError(f"{csv_path}: {len(absent)} embedded track ids have no row, e.g. {absent[:3]}")
    data, columns = encode([by_id[t] for t in track_ids])
    bin_path = layout.tracks_columns_bin
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(bin_path, data)
    header = {
        "schema_version": "1.0",
        "artifact_version": artifact_version,
        "count": len(track_ids),
        "csv_rows": len(csv_rows),
        "track_ids_sha256": track_ids_sha256,
        "csv_sha256": sha256_file(csv_path),
        "file": bin_path.name,
        "byte_order": "little",
        "size_bytes": len(data),
        "sha256": sha256_bytes(data),
        "columns": columns,
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    schema.write_artifact(layout.tracks_columns, SCHEMA, header)
    return header


def _section(data: bytes, s: dict[str, int], dtype: str) -> np.ndarray:
    item = np.dtype(dtype).itemsize
    if s["offset"] % _ALIGN or s["offset"] + s["length"] * item > len(data):
        raise ArtifactError(
            f"section {s} ({dtype}) lies outside the {len(data)} bytes or is not 8-byte aligned"
        )
    return np.frombuffer(data, dtype=dtype, count=s["length"], offset=s["offset"])


def _strings(data: bytes, col: dict[str, Any]) -> list[str]:
    offsets = _section(data, col["offsets"], "<u4").astype(np.int64)
    text = _section(data, col["data"], np.uint8).tobytes()
    if offsets.size == 0 or offsets[0] != 0 or offsets[-1] != len(text) or np.any(np.diff(offsets) < 0):
        raise ArtifactError("string offsets are not 0 .. len(data), non-decreasing")
    return [text[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def decode(data: bytes, header: dict[str, Any], track_ids: list[str]) -> list[TrackRow]:
    """The rows the sidecar holds (row i has track id ``track_ids[i]``).

    Raises:
        ArtifactError: a section out of bounds, bad offsets or codes, a column of the wrong length.
    """
    n = len(track_ids)
    cols: dict[str, list[Any]] = {}
    for name, encoding in COLUMNS.items():
        col = header["columns"][name]
        if encoding == "dictionary":
            codes = _section(data, col["codes"], "<i4")
            distinct = _strings(data, col)
            if codes.size and (codes.min() < -1 or codes.max() >= len(distinct)):
                raise ArtifactError(f"column {name}: a code outside -1 .. {len(distinct) - 1}")
            values: list[Any] = [None if c < 0 else distinct[c] for c in codes.tolist()]
        elif encoding == "utf8":
            values = _strings(data, col)
        elif encoding == "float64":
            arr = _section(data, col["values"], "<f8").tolist()
            values = [None if math.isnan(v) else (int(v) if name == "track_no" else v) for v in arr]
        else:
            values = [bool(v) for v in _section(data, col["values"], np.uint8).tolist()]
        if len(values) != n:
            raise ArtifactError(f"column {name} has {len(values)} rows, expected {n}")
        cols[name] = values
    return [TrackRow(track_id=t, **{c: cols[c][i] for c in COLUMNS}) for i, t in enumerate(track_ids)]


def differences(layout: ArtifactLayout, track_ids: list[str]) -> list[str]:
    """Why the sidecar is not the CSV's metadata of ``track_ids`` in row order (empty when it is).

    The header's own schema is checked by validate's listing; here: the binary file's size and sha256, the sha256
    of track_ids.json and of the CSV (as the Node API checks them), the count, and every decoded row equal to its
    CSV row.
    """
    header_path, bin_path = layout.tracks_columns, layout.tracks_columns_bin
    try:
        header = schema.read_artifact(header_path, SCHEMA)
    except Exception as e:  # noqa: BLE001 (any unreadable header is one problem line)
        return [str(e)]
    problems = []
    if header["count"] != len(track_ids):
        problems.append(f"{header_path}: count {header['count']} != {len(track_ids)} track ids")
    if bin_path.name != header["file"]:
        problems.append(f"{header_path}: file {header['file']!r} != {bin_path.name!r}")
    if not bin_path.is_file():
        return [*problems, f"{bin_path}: missing (described by {header_path})"]
    data = bin_path.read_bytes()
    if len(data) != header["size_bytes"]:
        problems.append(f"{bin_path}: {len(data)} bytes, {header_path} records {header['size_bytes']}")
    if sha256_bytes(data) != header["sha256"]:
        problems.append(f"{bin_path}: sha256 differs from {header_path}")
    if layout.track_ids_json.is_file() and sha256_file(layout.track_ids_json) != header["track_ids_sha256"]:
        problems.append(
            f"{header_path}: track_ids_sha256 is not {layout.track_ids_json}'s (another row order: rerun build-index)"
        )
    if layout.tracks_csv.is_file() and sha256_file(layout.tracks_csv) != header["csv_sha256"]:
        problems.append(f"{header_path}: csv_sha256 is not {layout.tracks_csv}'s (stale: rerun build-index)")
    if problems:
        return problems
    try:
        rows = decode(data, header, track_ids)
        by_id = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    except Exception as e:  # noqa: BLE001 (a malformed file or CSV is one problem line)
        return [f"{bin_path}: {e}"]
    bad = [i for i, r in enumerate(rows) if by_id.get(r.track_id) != r]
    if bad:
        i = bad[0]
        want = by_id.get(rows[i].track_id)
        problems.append(
            f"{bin_path}: {len(bad)} rows differ from {layout.tracks_csv}, first row {i}: "
            f"{asdict(rows[i])} != {None if want is None else asdict(want)}"
        )
    return problems


def exists(layout: ArtifactLayout) -> bool:
    """Whether the version folder holds the sidecar (either file)."""
    return any(Path(p).exists() for p in (layout.tracks_columns, layout.tracks_columns_bin))
