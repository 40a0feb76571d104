"""Reading ``metadata/tracks_metadata.csv`` for the embed/evaluate/validate steps.

Uses :func:`research_job.metadata.read_tracks_csv` when it exists. The fallback below is a private stop-gap
until that module is merged; TODO(merge): replace ``_fallback_read`` by ``read_tracks_csv``.
"""

from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_job.errors import ArtifactError

COLUMNS = [
    "track_id",
    "album_id",
    "track_no",
    "title",
    "composer",
    "audio_s3_key",
    "duration_sec",
    "composer_raw",
    "composer_missing",
]


@dataclass(frozen=True)
class _Row:
    track_id: str
    album_id: str
    track_no: int | None
    title: str
    composer: str | None
    audio_s3_key: str
    duration_sec: float | None
    composer_raw: str | None
    composer_missing: bool


def parse_row(raw: dict[str, str]) -> dict[str, Any]:
    """One CSV row -> the typed dict that ``tracks_metadata_row.schema.json`` describes (empty cell -> None)."""
    out: dict[str, Any] = {}
    for c in COLUMNS:
        v = raw.get(c)
        out[c] = None if v is None or v == "" else v
    if out["track_no"] is not None:
        with contextlib.suppress(ValueError):  # left as a string: the schema check reports it
            out["track_no"] = int(out["track_no"])
    if out["duration_sec"] is not None:
        with contextlib.suppress(ValueError):
            out["duration_sec"] = float(out["duration_sec"])
    cm = (raw.get("composer_missing") or "").strip().lower()
    out["composer_missing"] = {"true": True, "1": True, "false": False, "0": False}.get(cm, cm)
    if out["title"] is None:
        out["title"] = ""
    return out


def _fallback_read(path: Path) -> list[_Row]:
    if not path.is_file():
        raise ArtifactError(f"Metadata CSV not found: {path} (run export-metadata first)")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ArtifactError(f"{path}: missing columns {missing}; expected {COLUMNS}")
        return [_Row(**parse_row(r)) for r in reader]


def read_tracks(path: Path) -> list[Any]:
    """Rows of the metadata CSV in file order (objects with the nine column attributes)."""
    try:
        from research_job.metadata import read_tracks_csv  # type: ignore[attr-defined]
    except ImportError:
        return _fallback_read(Path(path))
    return list(read_tracks_csv(path))
