"""Listening events: check and normalise source rows, write and read ``interactions/interactions.csv``.

The export step hands :func:`normalize_events` the raw rows of one or two sources (the catalogue's
``listening_events`` table or a CSV, and optionally the Node API's ``feedback_events`` table). Every row is
checked; a row that fails is *dropped and counted* under the first reason it fails, in this order, with up to
:data:`MAX_EXAMPLES` examples (row number, column, offending value) per reason:

``unsafe_id``      user_id or track_id missing, not text, empty, ``.``/``..``, a ``/`` or ``\\``, a control
                   character, or longer than 256 characters (the rule of track ids everywhere)
``unknown_track``  track_id not in ``metadata/tracks_metadata.csv``
``bad_event``      event not one of :data:`EVENTS` (case and surrounding spaces are forgiven)
``bad_timestamp``  not ISO 8601 nor a unix epoch number of seconds, before 2000-01-01 or more than a day ahead
                   of now; a timestamp without an offset is read as UTC (SQLite's and ``timestamp``'s own
                   convention) and counted in ``ts_assumed_utc``
``bad_duration``   duration_sec present but not a finite number >= 0
``bad_origin``     origin present but not a label of at most 64 of ``A-Z a-z 0-9 _ . : -``
``duplicate``      same (user_id, track_id, event, ts) as an earlier row (sources in order, rows in fetch order):
                   the first is kept

Timestamps are normalised to UTC with second precision (fractions are cut): ``YYYY-MM-DDTHH:MM:SSZ``. The
surviving rows are sorted by (ts, user_id, track_id, event) and written atomically by
:func:`write_interactions_csv`; every later step reads them with :func:`read_interactions`, which checks the
file against ``artifact_schema/interactions_row.schema.json`` and the sort order.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from research_job.errors import ArtifactError, MetadataError, SchemaValidationError
from research_job.io.atomic import write_bytes
from research_job.metadata import unsafe_id_reason
from research_job.provenance import sha256_bytes, utc_now
from research_job.schema import load_schema, validate

if TYPE_CHECKING:
    import pandas as pd

#: column order of ``interactions.csv`` (from the row schema, the single source of truth)
CSV_COLUMNS: tuple[str, ...] = tuple(load_schema("interactions_row")["x-csv-columns"])
#: columns a source must provide
REQUIRED_SOURCE_COLUMNS: tuple[str, ...] = ("user_id", "track_id", "event", "ts")
#: columns a source may provide (empty when absent); any other column is ignored
OPTIONAL_SOURCE_COLUMNS: tuple[str, ...] = ("duration_sec", "origin")
EVENTS: tuple[str, ...] = ("play", "like", "skip", "dislike")
#: why a row is dropped, in the order the checks run
DROP_REASONS: tuple[str, ...] = (
    "unsafe_id",
    "unknown_track",
    "bad_event",
    "bad_timestamp",
    "bad_duration",
    "bad_origin",
    "duplicate",
)
MAX_EXAMPLES = 5
MAX_EXAMPLE_CHARS = 300
MAX_ORIGIN_LENGTH = 64
#: the earliest timestamp kept
MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
#: how far ahead of now a timestamp may be (clock skew between the database and this machine)
MAX_FUTURE = timedelta(days=1)
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ORIGIN = re.compile(r"^[A-Za-z0-9_.:-]+$")
_ID = re.compile(r"^(?!\.\.?$)[^/\\\x00-\x1f\x7f]+$")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_MAX_LISTED = 20


# --- parsing one value -------------------------------------------------------------------------------------


def _id_text(value: object) -> str | None:
    """A database id as text: ints (and integral floats) become their digits; anything else stays as it is."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def parse_timestamp(value: object) -> tuple[int, bool] | None:
    """Seconds since the epoch (UTC, fraction cut) of an ISO 8601 string, a datetime or a unix epoch number.

    Returns ``(seconds, assumed_utc)``, ``assumed_utc`` True when the value carried no offset, or None when it is
    not a timestamp at all. The range (2000 .. now + 1 day) is checked by the caller.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return _from_epoch(value)
    if isinstance(value, datetime):
        return _from_datetime(value)
    if isinstance(value, date):
        return _from_datetime(datetime(value.year, value.month, value.day))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _NUMBER.match(text):
        return _from_epoch(Decimal(text))
    try:
        return _from_datetime(datetime.fromisoformat(text))
    except ValueError:
        return None


def _from_epoch(value: int | float | Decimal) -> tuple[int, bool] | None:
    try:
        if not math.isfinite(value):
            return None
        return math.floor(value), False
    except (OverflowError, ValueError):
        return None


def _from_datetime(dt: datetime) -> tuple[int, bool]:
    naive = dt.tzinfo is None or dt.utcoffset() is None
    aware = dt.replace(tzinfo=UTC) if naive else dt
    return (aware - _EPOCH) // timedelta(seconds=1), naive


def format_ts(seconds: int) -> str:
    """``seconds`` since the epoch as the file's timestamp: ``2026-01-02T03:04:05Z``."""
    return (_EPOCH + timedelta(seconds=int(seconds))).strftime(TS_FORMAT)


def _duration(value: object) -> float | None:
    """A duration in seconds (None when blank). Raises ValueError when it is not a finite number >= 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    f = float(value) if isinstance(value, (int, float, Decimal)) else float(str(value).strip())
    if not math.isfinite(f) or f < 0:
        raise ValueError(value)
    return f + 0.0  # -0.0 -> 0.0


# --- normalising rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    """One checked, normalised listening event (a row of ``interactions.csv``)."""

    user_id: str
    track_id: str
    event: str
    ts: str
    duration_sec: float | None
    origin: str | None

    def to_dict(self) -> dict[str, Any]:
        """The row as the row schema describes it."""
        return {
            "user_id": self.user_id,
            "track_id": self.track_id,
            "event": self.event,
            "ts": self.ts,
            "duration_sec": self.duration_sec,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class SourceRows:
    """The raw rows of one source, as a driver or the CSV reader returned them."""

    #: ``events`` (the main source) or ``feedback``
    name: str
    #: a description for messages: a redacted URL or a CSV path
    where: str
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    #: origin given to a row whose origin is blank (``feedback`` for the feedback table)
    default_origin: str | None = None


@dataclass
class Normalized:
    """What :func:`normalize_events` kept and dropped."""

    rows: list[EventRow]
    rows_read: int
    rows_read_by_source: dict[str, int]
    dropped: dict[str, int]
    examples: dict[str, list[dict[str, Any]]]
    ts_assumed_utc: int = 0
    known_tracks: int = 0


def check_columns(columns: Iterable[str], where: str) -> None:
    """Raise if a required column is missing.

    Raises:
        MetadataError: naming the missing columns, the columns found and the required and optional ones.
    """
    found = list(columns)
    missing = [c for c in REQUIRED_SOURCE_COLUMNS if c not in found]
    if missing:
        raise MetadataError(
            f"Missing required column(s) in {where}: {', '.join(missing)}. "
            f"Found: {', '.join(found) if found else '(none)'}. "
            f"Required: {', '.join(REQUIRED_SOURCE_COLUMNS)}; optional: {', '.join(OPTIONAL_SOURCE_COLUMNS)}"
        )


def _example_value(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 3] + "..."


@dataclass(frozen=True)
class _Drop:
    """Why one row is dropped: the reason, the column at fault and its value."""

    reason: str
    column: str
    value: object


def _check_row(
    raw: Sequence[object],
    idx: dict[str, int],
    known: set[str],
    ts_range: tuple[int, int],
    default_origin: str | None,
) -> tuple[EventRow, bool] | _Drop:
    """One source row checked in :data:`DROP_REASONS` order (all but ``duplicate``): the normalised row and
    whether its timestamp was read as UTC, or the first reason to drop it."""
    raw_user, raw_track = raw[idx["user_id"]], raw[idx["track_id"]]
    user, track = _id_text(raw_user), _id_text(raw_track)
    if user is None or unsafe_id_reason(user) is not None:
        return _Drop("unsafe_id", "user_id", raw_user)
    if track is None or unsafe_id_reason(track) is not None:
        return _Drop("unsafe_id", "track_id", raw_track)
    if track not in known:
        return _Drop("unknown_track", "track_id", track)
    raw_event = raw[idx["event"]]
    event = raw_event.strip().lower() if isinstance(raw_event, str) else None
    if event not in EVENTS:
        return _Drop("bad_event", "event", raw_event)
    raw_ts = raw[idx["ts"]]
    parsed = parse_timestamp(raw_ts)
    if parsed is None or not ts_range[0] <= parsed[0] <= ts_range[1]:
        return _Drop("bad_timestamp", "ts", raw_ts)
    raw_duration = raw[idx["duration_sec"]] if "duration_sec" in idx else None
    try:
        duration = _duration(raw_duration)
    except (TypeError, ValueError, ArithmeticError):
        return _Drop("bad_duration", "duration_sec", raw_duration)
    raw_origin = raw[idx["origin"]] if "origin" in idx else None
    origin = raw_origin.strip() if isinstance(raw_origin, str) else raw_origin
    if origin is None or origin == "":
        origin = default_origin
    elif not isinstance(origin, str) or len(origin) > MAX_ORIGIN_LENGTH or not _ORIGIN.match(origin):
        return _Drop("bad_origin", "origin", raw_origin)
    return EventRow(user, track, event, format_ts(parsed[0]), duration, origin), parsed[1]


def normalize_events(
    sources: Sequence[SourceRows], known_tracks: Iterable[str], *, now: datetime | None = None
) -> Normalized:
    """Check every row of ``sources`` (in order), drop and count the bad ones, sort the rest.

    Args:
        sources: the main source, then optionally the feedback source.
        known_tracks: the track ids of ``tracks_metadata.csv``.
        now: the time the "more than a day ahead" limit counts from (default: the current time).

    Raises:
        MetadataError: a source lacks a required column (checked before any row).
    """
    for src in sources:
        check_columns(src.columns, src.where)
    known = set(known_tracks)
    limit = (now or datetime.fromisoformat(utc_now())) + MAX_FUTURE
    ts_range = ((MIN_TS - _EPOCH) // timedelta(seconds=1), (limit - _EPOCH) // timedelta(seconds=1))
    out = Normalized([], 0, {}, {r: 0 for r in DROP_REASONS}, {r: [] for r in DROP_REASONS}, 0, len(known))
    seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}

    def drop(d: _Drop, src: SourceRows, n: int) -> None:
        out.dropped[d.reason] += 1
        if len(out.examples[d.reason]) < MAX_EXAMPLES:
            out.examples[d.reason].append(
                {"row": n, "source": src.name, "column": d.column, "value": _example_value(d.value)}
            )

    for src in sources:
        idx = {c: i for i, c in enumerate(src.columns)}
        count = 0
        for count, raw in enumerate(src.rows, start=1):
            checked = _check_row(raw, idx, known, ts_range, src.default_origin)
            if isinstance(checked, _Drop):
                drop(checked, src, count)
                continue
            row, assumed_utc = checked
            key = (row.user_id, row.track_id, row.event, row.ts)
            first = seen.get(key)
            if first is not None:
                where = f"row {first[1]}" + (f" of {first[0]}" if first[0] != src.name else "")
                drop(
                    _Drop("duplicate", "user_id,track_id,event,ts", f"{','.join(key)} (first: {where})"),
                    src,
                    count,
                )
                continue
            seen[key] = (src.name, count)
            out.ts_assumed_utc += assumed_utc
            out.rows.append(row)
        out.rows_read_by_source[src.name] = count
        out.rows_read += count
    out.rows.sort(key=lambda r: (r.ts, r.user_id, r.track_id, r.event))
    return out


def nothing_survived_message(result: Normalized, where: str) -> str:
    """The error text for an export where every row was dropped: the counts by reason and the first examples."""
    reasons = [f"{r}={n}" for r, n in result.dropped.items() if n]
    shown = []
    for r in DROP_REASONS:
        for ex in result.examples[r][:2]:
            shown.append(f"{r}: {ex['source']} row {ex['row']} {ex['column']}={ex['value']!r}")
    detail = ("; e.g. " + "; ".join(shown)) if shown else ""
    return (
        f"No listening event of {where} survived the checks ({result.rows_read} row(s) read; dropped "
        f"{', '.join(reasons) or 'none'}; {result.known_tracks} known tracks in tracks_metadata.csv){detail}"
    )


# --- writing and reading interactions.csv ------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _row_surely_valid(r: EventRow) -> bool:
    """A fast, conservative check of one row against ``interactions_row`` (True only when the schema agrees)."""
    return (
        0 < len(r.user_id) <= 256
        and _ID.match(r.user_id) is not None
        and 0 < len(r.track_id) <= 256
        and _ID.match(r.track_id) is not None
        and r.event in EVENTS
        and _TS.match(r.ts) is not None
        and (r.duration_sec is None or (math.isfinite(r.duration_sec) and r.duration_sec >= 0))
        and (r.origin is None or (len(r.origin) <= MAX_ORIGIN_LENGTH and _ORIGIN.match(r.origin) is not None))
    )


def interactions_csv_bytes(rows: Iterable[EventRow]) -> bytes:
    """``rows`` as the bytes of ``interactions.csv``: the header, one line per row, ``\\n`` line ends, UTF-8.

    Raises:
        MetadataError: a row that does not match the row schema (listing them).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # ids hold no CR/LF (control characters are unsafe)
    w.writerow(CSV_COLUMNS)
    problems = []
    for i, r in enumerate(rows, start=1):
        if not _row_surely_valid(r):
            try:
                validate("interactions_row", r.to_dict())
            except SchemaValidationError as e:
                problems.append(f"row {i}: {e}")
                continue
        w.writerow([_cell(v) for v in r.to_dict().values()])
    if problems:
        more = f" ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise MetadataError(f"{len(problems)} bad row(s): " + "; ".join(problems[:_MAX_LISTED]) + more)
    return buf.getvalue().encode("utf-8")


def write_interactions_csv(path: str | os.PathLike[str], rows: Sequence[EventRow]) -> None:
    """Write ``rows`` (already sorted) to ``path`` atomically.

    Raises:
        MetadataError: a row does not match the row schema.
    """
    write_bytes(path, interactions_csv_bytes(rows))


@dataclass(frozen=True, eq=False)
class Interactions:
    """The rows of ``interactions.csv`` as column arrays (row i of every array is line i + 2 of the file)."""

    #: fixed-width unicode arrays
    user_id: np.ndarray
    track_id: np.ndarray
    #: one of :data:`EVENTS`
    event: np.ndarray
    #: int64 seconds since the epoch (UTC)
    ts: np.ndarray
    #: float64 seconds, NaN where the cell is empty
    duration_sec: np.ndarray
    #: unicode, ``""`` where the cell is empty
    origin: np.ndarray
    #: hex sha256 of the file's bytes as read
    sha256: str
    path: Path

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame: ``ts`` as timezone-aware UTC datetimes, empty origins as None."""
        import pandas as pd

        return pd.DataFrame(
            {
                "user_id": self.user_id.astype(object),
                "track_id": self.track_id.astype(object),
                "event": self.event.astype(object),
                "ts": pd.to_datetime(self.ts, unit="s", utc=True),
                "duration_sec": self.duration_sec,
                "origin": [o or None for o in self.origin.tolist()],
            }
        )


def read_interactions(path: str | os.PathLike[str]) -> Interactions:
    """Read ``interactions/interactions.csv``: every row checked against the row schema, the sort order and
    uniqueness verified.

    Raises:
        ArtifactError: missing file (run export-interactions first), wrong header, or bad rows (listed with
            their line numbers, the header being line 1).
    """
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"Listening events not found: {p} (run research-job export-interactions first)")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArtifactError(f"{p}: not UTF-8 ({e})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise ArtifactError(f"{p}: header is {header!r}, expected {','.join(CSV_COLUMNS)}")
    cols: list[list[Any]] = [[] for _ in CSV_COLUMNS]
    problems: list[str] = []
    prev: tuple[str, str, str, str] | None = None
    for line_no, cells in enumerate(reader, start=2):
        problem = _check_cells(cells)
        if problem is None:
            user, track, event, ts, dur, origin = cells
            key = (ts, user, track, event)
            if prev is not None and key <= prev:
                problem = (
                    "duplicate of the line before"
                    if key == prev
                    else "out of (ts, user_id, track_id, event) order"
                )
            prev = key
        if problem is not None:
            problems.append(f"line {line_no}: {problem}")
            continue
        for c, v in zip(cols, cells, strict=True):
            c.append(v)
    stamps = cols[CSV_COLUMNS.index("ts")]
    seconds = None if problems else _ts_column(stamps)
    if seconds is None and not problems:
        # a date numpy refuses (2026-02-30) or reads differently from datetime: parse (and name its line) the slow way
        parsed: list[int] = []
        for i, t in enumerate(stamps):
            try:
                parsed.append(_ts_seconds(t))
            except ValueError as e:
                problems.append(f"line {i + 2}: ts {t!r} is not a real date-time ({e})")
        seconds = np.array(parsed, dtype=np.int64)
    if problems:
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise ArtifactError(
            f"{len(problems)} bad line(s) in {p}:\n  - " + "\n  - ".join(problems[:_MAX_LISTED]) + more
        )
    assert seconds is not None
    users, tracks, events, _, durations, origins = cols
    return Interactions(
        user_id=np.array(users, dtype=str),
        track_id=np.array(tracks, dtype=str),
        event=np.array(events, dtype=str),
        ts=seconds,
        duration_sec=np.array([float(d) if d else math.nan for d in durations], dtype=np.float64),
        origin=np.array(origins, dtype=str),
        sha256=sha256_bytes(data),
        path=p,
    )


def _ts_seconds(text: str) -> int:
    return (datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)


#: 0001-01-01T00:00:00Z, the first instant datetime (and so :func:`_ts_seconds`) accepts
_FIRST_SECOND = -62135596800


def _ts_column(stamps: list[str]) -> np.ndarray | None:
    """Unix seconds of ``YYYY-MM-DDTHH:MM:SSZ`` stamps (each already matched ``_TS``), parsed by numpy (10x
    faster than strptime per row); None when numpy refuses one or reads one datetime would refuse (year 0)."""
    try:
        out = np.array([t[:-1] for t in stamps], dtype="datetime64[s]").astype(np.int64)
    except ValueError:
        return None
    return None if out.size and out.min() < _FIRST_SECOND else out


def _check_cells(cells: Sequence[str]) -> str | None:
    """Why one line of ``interactions.csv`` breaks the row schema, or None."""
    if len(cells) != len(CSV_COLUMNS):
        return f"{len(cells)} cells, expected {len(CSV_COLUMNS)}"
    user, track, event, ts, dur, origin = cells
    try:
        row = EventRow(user, track, event, ts, float(dur) if dur else None, origin or None)
    except ValueError as e:
        return str(e)
    if row.duration_sec is not None and not math.isfinite(row.duration_sec):
        return f"duration_sec {dur!r} is not a finite number"
    if _row_surely_valid(row):
        return None
    try:
        validate("interactions_row", row.to_dict())
    except SchemaValidationError as e:
        return str(e)
    return None


def count_by(values: Iterable[str]) -> dict[str, int]:
    """Counts of each value, sorted by value (for the report)."""
    return dict(sorted(Counter(values).items()))


def summarize(rows: Sequence[EventRow]) -> dict[str, Any]:
    """The report's counts of the written rows: users, tracks, by_event, by_origin, span, synthetic."""
    by_event = {e: 0 for e in EVENTS}
    for r in rows:
        by_event[r.event] += 1
    return {
        "users": len({r.user_id for r in rows}),
        "tracks": len({r.track_id for r in rows}),
        "by_event": by_event,
        "by_origin": count_by(r.origin or "" for r in rows),
        "span": {"first_ts": rows[0].ts, "last_ts": rows[-1].ts} if rows else None,
        "synthetic": bool(rows) and all((r.origin or "").startswith("synthetic") for r in rows),
    }
