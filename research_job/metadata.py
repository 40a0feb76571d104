"""Track metadata: composer standardisation, id safety checks, and ``tracks_metadata.csv`` I/O.

The export step turns raw catalogue records (dicts from a database or a CSV) into :class:`TrackRow` objects
with :func:`normalize_records`, which checks every row and reports *all* problems at once (missing columns,
duplicate ``track_id`` with every duplicated row, ids unsafe as path components, bad numbers). Every later step
reads the result with :func:`read_tracks_csv`, which validates each row against
``artifact_schema/tracks_metadata_row.schema.json``.

Composer standardisation (:func:`standardize_composer`): Unicode NFKC, format characters (zero-width space,
BOM, ...) dropped, whitespace (NBSP too) collapsed, casefolded, ``Last, First`` -> ``First Last``, then an
optional alias table (variant -> canonical, both sides normalised the same way). A missing, blank or placeholder
composer (``NULL``, ``None``, ``N/A``, ``-``) is kept, marked ``composer_missing``, and never guessed.

``tracks_metadata.csv`` is a machine contract, read back by this module and by the Node API
(``node_api/src/lib/csv.ts``): every cell holds the exact value (a title ``=1+1`` stays ``=1+1``), with no
spreadsheet formula escaping, which would change the data both readers see. It is not a report for people; open
it in a spreadsheet with formulas disabled (import as text).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from research_job.errors import MetadataError, SchemaValidationError
from research_job.io.atomic import write_text
from research_job.schema import load_schema, validate

#: column order of ``tracks_metadata.csv`` (from the row schema, the single source of truth)
CSV_COLUMNS: tuple[str, ...] = tuple(load_schema("tracks_metadata_row")["x-csv-columns"])
#: columns the catalogue must provide
REQUIRED_SOURCE_COLUMNS: tuple[str, ...] = ("track_id", "album_id", "title", "composer", "audio_s3_key")
#: columns the catalogue may provide (null when absent)
OPTIONAL_SOURCE_COLUMNS: tuple[str, ...] = ("track_no", "duration_sec")
MAX_ID_LENGTH = 256
#: how many problems a :class:`MetadataError` message lists before summarising the rest
MAX_LISTED_PROBLEMS = 200

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class TrackRow:
    """One row of ``tracks_metadata.csv`` (see the row schema for the meaning of each field)."""

    track_id: str
    album_id: str
    track_no: int | None
    title: str
    composer: str | None
    audio_s3_key: str
    duration_sec: float | None
    composer_raw: str | None
    composer_missing: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def composer_display(self) -> str | None:
        """The composer as a person reads it: the catalogue's spelling as exported (``composer_raw``), else the
        standardised key; None when the composer is missing."""
        if self.composer is None:
            return None
        raw = (self.composer_raw or "").strip()
        return raw or self.composer

    @property
    def audio_ext(self) -> str:
        """Extension of the audio object (from the key), used for ``audio_cache/<album>/<track>.<ext>``."""
        return key_extension(self.audio_s3_key)


def key_extension(key: str) -> str:
    """Lower-case extension of an object key without the dot (``a/b.M4A`` -> ``m4a``); ``bin`` if none."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not ext or not re.fullmatch(r"[A-Za-z0-9]{1,10}", ext):
        return "bin"
    return ext.lower()


# --- ids -------------------------------------------------------------------------------------------------


def unsafe_id_reason(value: object) -> str | None:
    """Why ``value`` cannot be used as a path component (track/album id), or ``None`` if it is safe."""
    if value is None:
        return "is missing"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if value == "":
        return "is empty"
    if value in {".", ".."}:
        return f"is {value!r}"
    if "/" in value or "\\" in value:
        return "contains a path separator ('/' or '\\')"
    if _CONTROL.search(value):
        return "contains a control character"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    return None


def check_safe_id(kind: str, value: object) -> str:
    """Return ``value`` if it is safe as a path component, else raise.

    Raises:
        MetadataError: naming the id and why it is unsafe.
    """
    reason = unsafe_id_reason(value)
    if reason is not None:
        raise MetadataError(f"{kind} {value!r} {reason}: unsafe as a path component")
    assert isinstance(value, str)
    return value


# --- composers -------------------------------------------------------------------------------------------


#: what a catalogue writes for "no composer": compared with everything but letters and digits removed, so
#: ``NULL``, ``(null)``, ``None``, ``N/A``, ``n.a.``, ``NaN`` and ``nil`` are all missing, never a composer
PLACEHOLDER_COMPOSERS = frozenset({"null", "none", "nil", "nan", "na"})
_NOT_ALNUM = re.compile(r"[\W_]+")


def _basic_normalize(s: str) -> str:
    """NFKC, Unicode format characters (category Cf: zero-width space and joiners, BOM, soft hyphen, direction
    marks) removed, every run of whitespace (NBSP, thin and ideographic spaces included) one space, stripped,
    casefolded, NFKC again (casefolding may denormalise)."""
    s = unicodedata.normalize("NFKC", s)
    s = "".join(c for c in s if unicodedata.category(c) != "Cf")
    s = _WS.sub(" ", s).strip().casefold()
    return unicodedata.normalize("NFKC", s)


def _is_placeholder(key: str) -> bool:
    """A normalised composer that names nobody: no letter or digit at all, or a :data:`PLACEHOLDER_COMPOSERS`."""
    bare = _NOT_ALNUM.sub("", key)
    return not bare or bare in PLACEHOLDER_COMPOSERS


def normalize_composer(raw: str | None) -> str | None:
    """The composer key: :func:`_basic_normalize` (NFKC, format characters dropped, whitespace collapsed,
    casefolded), ``Last, First`` -> ``First Last``; blank or a placeholder (``NULL``, ``None``, ``N/A``, ``-``,
    see :func:`_is_placeholder`) -> ``None``.

    This is the one place composer keys are made (the export step's rows, the alias table). Only a single comma
    with text on both sides is reordered (``Bach, Johann Sebastian``); strings with several commas are left in
    their order (they are usually lists or suffixes, not ``Last, First``).
    """
    if raw is None:
        return None
    s = _basic_normalize(str(raw))
    if not s or _is_placeholder(s):
        return None
    parts = [p.strip() for p in s.split(",")]
    if len(parts) == 2 and parts[0] and parts[1]:
        s = f"{parts[1]} {parts[0]}"
    elif len(parts) == 2:  # trailing or leading comma: drop it
        s = parts[0] or parts[1]
    s = _WS.sub(" ", s).strip()
    return s or None


def standardize_composer(raw: str | None, aliases: Mapping[str, str] | None = None) -> str | None:
    """The standardised composer used for relevance: :func:`normalize_composer`, then the alias table.

    Args:
        raw: the catalogue's composer string (``None``/blank -> ``None``: missing, never guessed).
        aliases: normalised variant -> normalised canonical, as returned by :func:`load_aliases`.
    """
    name = normalize_composer(raw)
    if name is None or not aliases:
        return name
    return aliases.get(name, name)


def parse_aliases(data: object, source: str = "<aliases>") -> dict[str, str]:
    """Check and normalise an alias mapping (variant -> canonical), both sides via :func:`normalize_composer`.

    Raises:
        MetadataError: not a mapping, a non-string or blank entry, or one variant mapped to two canonicals.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise MetadataError(f"Composer alias file {source} must hold a mapping variant -> canonical")
    out: dict[str, str] = {}
    problems: list[str] = []
    for variant, canonical in data.items():
        if not isinstance(variant, str) or not isinstance(canonical, str):
            problems.append(f"{variant!r}: {canonical!r} (both must be strings)")
            continue
        v, c = normalize_composer(variant), normalize_composer(canonical)
        if v is None or c is None:
            problems.append(f"{variant!r}: {canonical!r} (blank)")
            continue
        if v in out and out[v] != c:
            problems.append(f"{variant!r} normalises to {v!r}, already mapped to {out[v]!r}, now to {c!r}")
            continue
        out[v] = c
    if problems:
        raise MetadataError(f"Bad entries in composer alias file {source}: " + "; ".join(problems))
    return out


def load_aliases(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) alias file; ``None`` -> no aliases.

    Raises:
        MetadataError: missing file, unknown extension, parse error or bad entries.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise MetadataError(f"Composer alias file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        elif p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise MetadataError(f"Composer alias file {p} must end in .yaml, .yml or .json, not {p.suffix!r}")
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise MetadataError(f"Cannot parse composer alias file {p}: {e}") from e
    return parse_aliases(data, str(p))


# --- record normalisation --------------------------------------------------------------------------------


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a numeric id column read as float
    return str(value)


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise ValueError(value)
        return int(value)
    return int(str(value).strip())


def _as_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    f = float(value) if isinstance(value, (int, float, Decimal)) else float(str(value).strip())
    if not math.isfinite(f):
        raise ValueError(value)
    return f


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


@dataclass(frozen=True)
class NormalizeStats:
    """Counts of a :func:`normalize_records` run (for the export report)."""

    rows_read: int
    composer_missing: int
    composers: int
    albums: int
    aliases_applied: int


def _format_problems(source: str, problems: Sequence[str]) -> str:
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    tail = f"\n  ... and {more} more" if more else ""
    return f"{len(problems)} problem(s) in {source}:\n  - " + "\n  - ".join(listed) + tail


def check_columns(columns: Iterable[str], source: str) -> None:
    """Raise if a required catalogue column is missing.

    Raises:
        MetadataError: listing the missing columns and the columns found.
    """
    found = list(columns)
    missing = [c for c in REQUIRED_SOURCE_COLUMNS if c not in found]
    if missing:
        raise MetadataError(
            f"Missing required column(s) in {source}: {', '.join(missing)}. "
            f"Found: {', '.join(found) if found else '(none)'}. "
            f"Required: {', '.join(REQUIRED_SOURCE_COLUMNS)}; optional: {', '.join(OPTIONAL_SOURCE_COLUMNS)}"
        )


def normalize_records(
    columns: Sequence[str],
    records: Iterable[Mapping[str, object]],
    *,
    source: str,
    aliases: Mapping[str, str] | None = None,
) -> tuple[list[TrackRow], NormalizeStats]:
    """Check and normalise raw catalogue records into :class:`TrackRow` objects (input order kept).

    Row numbers in messages are 1-based data rows (the header of a CSV is not counted).

    Args:
        columns: the column names the source returned (checked before any row).
        records: one mapping per row, column -> value.
        source: a description for messages (a redacted URL or a CSV path).
        aliases: see :func:`load_aliases`.

    Raises:
        MetadataError: listing *every* problem: missing columns; duplicate ``track_id`` (each with all its
            rows); unsafe ``track_id``/``album_id``; empty ``audio_s3_key``; bad ``track_no``/``duration_sec``.
    """
    check_columns(columns, source)
    problems: list[str] = []
    rows: list[TrackRow] = []
    raw_rows: list[Mapping[str, object]] = []
    by_id: dict[str, list[int]] = {}
    aliases_applied = 0
    n = 0
    for n, rec in enumerate(records, start=1):
        row_problems: list[str] = []
        track_id, album_id = _as_text(rec.get("track_id")), _as_text(rec.get("album_id"))
        for kind, value in (("track_id", track_id), ("album_id", album_id)):
            reason = unsafe_id_reason(value)
            if reason is not None:
                row_problems.append(f"row {n}: {kind} {value!r} {reason}: unsafe as a path component")
        key = _as_text(rec.get("audio_s3_key"))
        if _blank(key):
            row_problems.append(f"row {n} (track_id {track_id!r}): audio_s3_key is empty")
        track_no: int | None = None
        if not _blank(rec.get("track_no")):
            try:
                track_no = _as_int(rec.get("track_no"))
                if track_no < 0:
                    raise ValueError(track_no)
            except (TypeError, ValueError):
                row_problems.append(
                    f"row {n} (track_id {track_id!r}): track_no {rec.get('track_no')!r} "
                    "is not a non-negative integer"
                )
        duration: float | None = None
        if not _blank(rec.get("duration_sec")):
            try:
                duration = _as_float(rec.get("duration_sec"))
                if duration < 0:
                    raise ValueError(duration)
            except (TypeError, ValueError):
                row_problems.append(
                    f"row {n} (track_id {track_id!r}): duration_sec {rec.get('duration_sec')!r} "
                    "is not a non-negative number"
                )
        raw_composer = _as_text(rec.get("composer"))
        composer = standardize_composer(raw_composer, aliases)
        if composer is not None and aliases and normalize_composer(raw_composer) != composer:
            aliases_applied += 1
        if track_id is not None:
            by_id.setdefault(track_id, []).append(n)
        raw_rows.append(rec)
        if row_problems:
            problems.extend(row_problems)
            continue
        assert track_id is not None and album_id is not None and key is not None
        rows.append(
            TrackRow(
                track_id=track_id,
                album_id=album_id,
                track_no=track_no,
                title=_as_text(rec.get("title")) or "",
                composer=composer,
                audio_s3_key=key.strip(),
                duration_sec=duration,
                composer_raw=raw_composer,
                composer_missing=composer is None,
            )
        )
    for tid, where in by_id.items():
        if len(where) > 1:
            shown = "; ".join(f"row {i}: {_short(raw_rows[i - 1], columns)}" for i in where)
            problems.append(f"duplicate track_id {tid!r} in {len(where)} rows: {shown}")
    problems.extend(_file_name_clashes(rows))
    if problems:
        raise MetadataError(_format_problems(source, problems))
    stats = NormalizeStats(
        rows_read=n,
        composer_missing=sum(r.composer_missing for r in rows),
        composers=len({r.composer for r in rows if r.composer is not None}),
        albums=len({r.album_id for r in rows}),
        aliases_applied=aliases_applied,
    )
    return rows, stats


def _file_name_clashes(rows: Sequence[TrackRow]) -> list[str]:
    """Distinct track ids whose per-track files would share a name (an id written as another, too long id's
    hashed name, :func:`research_job.layout.id_file_name`)."""
    from research_job.layout import id_file_name

    by_name: dict[str, str] = {}
    out: list[str] = []
    for r in rows:
        name = id_file_name(r.track_id)
        other = by_name.setdefault(name, r.track_id)
        if other != r.track_id:
            out.append(
                f"track_id {r.track_id!r} and track_id {other!r} would share the audio file name {name!r}"
            )
    return out


def _short(rec: Mapping[str, object], columns: Sequence[str]) -> str:
    return "{" + ", ".join(f"{c}={rec.get(c)!r}" for c in columns) + "}"


# --- CSV I/O ---------------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def tracks_csv_text(rows: Iterable[TrackRow]) -> str:
    """Serialise rows as ``tracks_metadata.csv`` text (header + one line per row, ``\\n`` line ends).

    Cells are the exact values, quoted by RFC 4180 rules only (:func:`_csv_field`): no formula escaping (``=``,
    ``+``, ``-``, ``@`` stay as they are), since this file is a contract that Python and Node read back (see the
    module docstring).
    """
    lines = [",".join(CSV_COLUMNS)]
    for r in rows:
        d = r.to_dict()
        lines.append(",".join(_csv_field(_cell(d[c])) for c in CSV_COLUMNS))
    return "\n".join(lines) + "\n"


def _csv_field(text: str) -> str:
    """``text`` as one RFC 4180 field: quoted (quotes doubled) when it holds a comma, a quote, LF *or CR*.

    The csv module quotes only the characters of its own line terminator (``\\n`` here), so a bare CR in a title
    was written unquoted and read back as a line break, splitting the row.
    """
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def write_tracks_csv(path: str | os.PathLike[str], rows: Sequence[TrackRow]) -> None:
    """Validate every row against the row schema and write ``tracks_metadata.csv`` atomically.

    Raises:
        MetadataError: a row does not match the schema (listing all such rows).
    """
    problems = []
    for i, r in enumerate(rows, start=1):
        try:
            validate("tracks_metadata_row", r.to_dict())
        except SchemaValidationError as e:
            problems.append(f"row {i}: {e}")
    if problems:
        raise MetadataError(_format_problems(str(path), problems))
    write_text(path, tracks_csv_text(rows))


def _parse_cell(column: str, text: str) -> object:
    if column == "title":
        return text
    if text == "":
        return None
    if column == "track_no":
        return int(text)
    if column == "duration_sec":
        return float(text)
    if column == "composer_missing":
        if text not in {"true", "false"}:
            raise ValueError(f"composer_missing must be 'true' or 'false', not {text!r}")
        return text == "true"
    return text


#: the row schema's id pattern (track_id, album_id): not "." or "..", no slash, backslash or control character
_ID_RE = re.compile(r"^(?!\.\.?$)[^/\\\x00-\x1f\x7f]+$")


def _row_surely_valid(obj: dict[str, object]) -> bool:
    """A fast, conservative check of one parsed row against ``tracks_metadata_row``: True only when the schema
    would accept it (jsonschema costs ~0.1 ms a row, most of the load time of a 100k-row CSV); a row this
    rejects is still judged, and explained, by the schema itself."""
    tid, aid, no, dur = obj["track_id"], obj["album_id"], obj["track_no"], obj["duration_sec"]
    composer = obj["composer"]
    return (
        type(tid) is str
        and 0 < len(tid) <= 256
        and _ID_RE.match(tid) is not None
        and type(aid) is str
        and 0 < len(aid) <= 256
        and _ID_RE.match(aid) is not None
        and (no is None or (type(no) is int and no >= 0))
        and type(obj["title"]) is str
        and (composer is None or (type(composer) is str and len(composer) >= 1))
        and type(obj["audio_s3_key"]) is str
        and len(obj["audio_s3_key"]) >= 1  # type: ignore[arg-type]
        and (dur is None or (type(dur) is float and math.isfinite(dur) and dur >= 0))
        and (obj["composer_raw"] is None or type(obj["composer_raw"]) is str)
        and type(obj["composer_missing"]) is bool
        and (composer is None) == obj["composer_missing"]  # the schema's if/then/else
    )


def read_tracks_csv(path: str | os.PathLike[str]) -> list[TrackRow]:
    """Read ``metadata/tracks_metadata.csv`` and validate every row against the row schema.

    Raises:
        MetadataError: missing file, wrong header, a row that does not parse or validate, or duplicate
            track ids; all bad rows are listed (line numbers count the header as line 1).
    """
    p = Path(path)
    if not p.is_file():
        raise MetadataError(f"Track metadata not found: {p} (run export-metadata first)")
    with open(p, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != CSV_COLUMNS:
            raise MetadataError(f"{p}: header is {header!r}, expected {', '.join(CSV_COLUMNS)}")
        rows: list[TrackRow] = []
        problems: list[str] = []
        seen: dict[str, int] = {}
        for line_no, cells in enumerate(reader, start=2):
            if len(cells) != len(CSV_COLUMNS):
                problems.append(f"line {line_no}: {len(cells)} cells, expected {len(CSV_COLUMNS)}")
                continue
            try:
                obj = {c: _parse_cell(c, v) for c, v in zip(CSV_COLUMNS, cells, strict=True)}
                if not _row_surely_valid(obj):
                    validate("tracks_metadata_row", obj)
            except (ValueError, SchemaValidationError) as e:
                problems.append(f"line {line_no}: {e}")
                continue
            tid = str(obj["track_id"])
            if tid in seen:
                problems.append(f"line {line_no}: duplicate track_id {tid!r} (first on line {seen[tid]})")
                continue
            seen[tid] = line_no
            rows.append(TrackRow(**obj))  # type: ignore[arg-type]
    if problems:
        raise MetadataError(_format_problems(str(p), problems))
    return rows


def read_source_csv(path: str | os.PathLike[str]) -> tuple[list[str], list[dict[str, object]]]:
    """Read a catalogue given as CSV (header row, any column order): ``(columns, records)``.

    Empty cells become ``None`` so they go through the same checks as database NULLs.

    Raises:
        MetadataError: missing file or no header row.
    """
    p = Path(path)
    if not p.is_file():
        raise MetadataError(f"Catalogue CSV not found: {p}")
    with open(p, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise MetadataError(f"Catalogue CSV {p} is empty (no header row)")
        columns = [c.strip() for c in reader.fieldnames]
        records: list[dict[str, object]] = []
        for rec in reader:
            records.append(
                {c.strip(): (None if v is None or v == "" else v) for c, v in rec.items() if c is not None}
            )
    return columns, records
