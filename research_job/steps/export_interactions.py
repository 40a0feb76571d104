"""export-interactions: listening events (PostgreSQL, SQLite or CSV) -> ``interactions/interactions.csv``.

Reads a table (``SELECT * FROM <table>``, default ``listening_events``) or a custom query, or a CSV, and
optionally merges the Node API's feedback table (``feedback_events``, what ``POST /feedback`` stores). The
known tracks are those of ``metadata/tracks_metadata.csv`` (run export-metadata first). Bad rows are dropped
and counted by reason (:mod:`research_job.interactions`), never kept; if none survives the step fails. Writes
``interactions/interactions.csv`` and ``interactions/interactions_report.json`` atomically. Passwords in the
database URLs appear only redacted, in logs, errors and the report. Not part of ``research-job run``: train-recs
needs it, the similarity pipeline does not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_job.config import CommonConfig, option
from research_job.errors import ArtifactError, ConfigError, MetadataError
from research_job.interactions import (
    SourceRows,
    normalize_events,
    nothing_survived_message,
    summarize,
    write_interactions_csv,
)
from research_job.io.database import check_table_name, open_catalogue, scheme_of
from research_job.layout import ArtifactLayout
from research_job.metadata import read_source_csv, read_tracks_csv
from research_job.provenance import code_version, sha256_file, utc_now
from research_job.schema import write_artifact
from research_job.steps import Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportInteractionsConfig:
    """export-interactions: listening events (database or CSV) -> interactions/interactions.csv."""

    common: CommonConfig = field(default_factory=CommonConfig)
    database_url: str | None = option(
        None, "database of the listening events: postgresql://user@host/db or sqlite:///path (or --csv-path)"
    )
    table: str = option("listening_events", "table of listening events (SELECT *); ignored with --query")
    query: str | None = option(
        None, "a SELECT returning user_id, track_id, event, ts [, duration_sec, origin]"
    )
    csv_path: Path | None = option(None, "read the listening events from this CSV instead of a database")
    feedback_database_url: str | None = option(
        None, "also merge the Node API's feedback table from this database (FEEDBACK_DATABASE_URL)"
    )
    feedback_table: str = option("feedback_events", "table of the feedback events (POST /feedback)")


def check(cfg: ExportInteractionsConfig) -> None:
    """Refuse a config that cannot export, before anything is read or written.

    Raises:
        ConfigError: neither or both of ``database_url`` and ``csv_path``; an unknown URL scheme; a bad table
            name; a missing CSV file.
    """
    if (cfg.database_url is None) == (cfg.csv_path is None):
        raise ConfigError("export-interactions needs exactly one of database_url or csv_path")
    if cfg.database_url is not None:
        scheme_of(cfg.database_url)
        if cfg.query is None:
            check_table_name(cfg.table)
    if cfg.csv_path is not None and not Path(cfg.csv_path).is_file():
        raise ConfigError(f"csv_path {str(cfg.csv_path)!r} is not a file")
    if cfg.feedback_database_url is not None:
        scheme_of(cfg.feedback_database_url)
        check_table_name(cfg.feedback_table)


def known_track_ids(layout: ArtifactLayout) -> list[str]:
    """The track ids of the version folder's ``metadata/tracks_metadata.csv``.

    Raises:
        ArtifactError: the file is missing (run export-metadata first).
        MetadataError: the file is malformed.
    """
    if not layout.tracks_csv.is_file():
        raise ArtifactError(
            f"{layout.tracks_csv} not found: export-interactions keeps only known tracks; "
            "run `research-job export-metadata` for this version folder first"
        )
    return [r.track_id for r in read_tracks_csv(layout.tracks_csv)]


def _read_main(cfg: ExportInteractionsConfig) -> tuple[SourceRows, dict[str, Any]]:
    """The main source's rows, and its description for the report (URL redacted)."""
    if cfg.database_url is not None:
        db = open_catalogue(cfg.database_url)
        query = cfg.query
        table = None if query is not None else cfg.table
        log.info(
            "export-interactions: reading %s from %s",
            f"table {table!r}" if table else "query",
            db.redacted_url,
        )
        columns, rows = db.fetch(table=table, query=query)
        desc = {"kind": db.kind, "url": db.redacted_url, "table": table, "query": query}
        return SourceRows("events", db.redacted_url, columns, rows), desc
    assert cfg.csv_path is not None
    where = str(cfg.csv_path)
    log.info("export-interactions: reading CSV %s", where)
    columns, records = read_source_csv(cfg.csv_path)
    rows = [tuple(rec.get(c) for c in columns) for rec in records]
    return SourceRows("events", where, columns, rows), {
        "kind": "csv",
        "url": where,
        "table": None,
        "query": None,
    }


def _read_feedback(cfg: ExportInteractionsConfig) -> tuple[SourceRows, dict[str, Any]] | None:
    """The feedback table's rows (origin ``feedback`` where blank), or None when no feedback database is set."""
    if cfg.feedback_database_url is None:
        return None
    db = open_catalogue(cfg.feedback_database_url)
    log.info("export-interactions: reading feedback table %r from %s", cfg.feedback_table, db.redacted_url)
    columns, rows = db.fetch(table=cfg.feedback_table)
    where = f"{db.redacted_url} table {cfg.feedback_table}"
    desc = {"kind": db.kind, "url": db.redacted_url, "table": cfg.feedback_table}
    return SourceRows("feedback", where, columns, rows, default_origin="feedback"), desc


def run(cfg: ExportInteractionsConfig) -> dict[str, Any]:
    """Export the listening events to ``interactions/interactions.csv`` and write its report.

    Raises:
        ConfigError: a bad source option (see :func:`check`).
        ArtifactError: no ``metadata/tracks_metadata.csv`` (run export-metadata first).
        MetadataError: a source cannot be read (unknown table, missing column), or no row survives the checks.
    """
    check(cfg)
    layout = cfg.common.layout
    t0 = time.perf_counter()
    known = known_track_ids(layout)
    main, source = _read_main(cfg)
    fb = _read_feedback(cfg)
    sources = [main] if fb is None else [main, fb[0]]
    t_read = time.perf_counter()
    result = normalize_events(sources, known)
    if not result.rows:
        where = main.where + (f" and {fb[0].where}" if fb is not None else "")
        raise MetadataError(nothing_survived_message(result, where))
    t_norm = time.perf_counter()
    out = layout.path("interactions_csv")
    write_interactions_csv(out, result.rows)
    t_write = time.perf_counter()
    summary = summarize(result.rows)
    source["rows_read"] = result.rows_read_by_source["events"]
    if fb is not None:
        source["feedback"] = {**fb[1], "rows_read": result.rows_read_by_source["feedback"]}
    else:
        source["feedback"] = None
    report: dict[str, Any] = {
        "schema_version": "1.0",
        "artifact_version": layout.version_dir.name,
        "source": source,
        "counts": {
            "rows_read": result.rows_read,
            "rows_written": len(result.rows),
            "users": summary["users"],
            "tracks": summary["tracks"],
            "known_tracks": result.known_tracks,
            "ts_assumed_utc": result.ts_assumed_utc,
            "by_event": summary["by_event"],
            "by_origin": summary["by_origin"],
        },
        "dropped": result.dropped,
        "examples": result.examples,
        "span": summary["span"],
        "synthetic": summary["synthetic"],
        "output": {"file": out.name, "sha256": sha256_file(out)},
        "timings_sec": {
            "read": round(t_read - t0, 6),
            "normalize": round(t_norm - t_read, 6),
            "write": round(t_write - t_norm, 6),
            "total": round(time.perf_counter() - t0, 6),
        },
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    write_artifact(layout.path("interactions_report"), "interactions_report", report)
    dropped = {r: n for r, n in result.dropped.items() if n}
    if dropped:
        log.warning(
            "export-interactions: dropped %d of %d rows: %s (examples in %s)",
            sum(dropped.values()),
            result.rows_read,
            ", ".join(f"{r}={n}" for r, n in dropped.items()),
            layout.path("interactions_report"),
        )
    log.info(
        "export-interactions: %d events (%d users, %d tracks, %s .. %s) -> %s in %.2fs",
        len(result.rows),
        summary["users"],
        summary["tracks"],
        summary["span"]["first_ts"],
        summary["span"]["last_ts"],
        out,
        report["timings_sec"]["total"],
    )
    return report


STEP = Step(
    name="export_interactions",
    config=ExportInteractionsConfig,
    summary="Export listening events (database or CSV, plus feedback) to interactions/interactions.csv.",
    example="research-job export-interactions --config configs/demo.yaml",
    run=run,
    check=check,
    pipeline=None,
)
