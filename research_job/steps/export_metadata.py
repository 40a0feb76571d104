"""export-metadata: catalogue (PostgreSQL, SQLite or CSV) -> ``metadata/tracks_metadata.csv``.

Reads a table (``SELECT * FROM <table>``) or a custom query, checks every row (ids safe as path components,
unique ``track_id``, numbers that parse), standardises composers, and writes the CSV and
``metadata/export_report.json`` atomically. Any bad row fails the export, and the error lists every problem.
Passwords in the database URL appear only redacted, in logs, errors and the report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_job.config import CommonConfig, option
from research_job.errors import ConfigError
from research_job.io.database import check_table_name, open_catalogue, scheme_of
from research_job.metadata import load_aliases, normalize_records, read_source_csv, write_tracks_csv
from research_job.provenance import code_version, sha256_file, utc_now
from research_job.schema import write_artifact
from research_job.steps import Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportMetadataConfig:
    """export-metadata: catalogue database (or CSV) -> metadata/tracks_metadata.csv."""

    common: CommonConfig = field(default_factory=CommonConfig)
    database_url: str | None = option(
        None, "catalogue database: postgresql://user@host/db or sqlite:///path.sqlite (or give --csv-path)"
    )
    table: str = option("tracks", "table to export (SELECT *); ignored with --query")
    query: str | None = option(None, "a SELECT returning the seven catalogue columns, instead of --table")
    csv_path: Path | None = option(None, "export a CSV file with the catalogue columns instead of a database")
    composer_aliases: Path | None = option(
        None, "YAML/JSON mapping of composer spellings to canonical names, applied while standardising"
    )


def check(cfg: ExportMetadataConfig) -> None:
    """Refuse a config that cannot export, before anything is read or written.

    Raises:
        ConfigError: neither or both of ``database_url`` and ``csv_path``; an unknown URL scheme; a bad table
            name; a missing CSV or alias file.
    """
    if (cfg.database_url is None) == (cfg.csv_path is None):
        raise ConfigError("export-metadata needs exactly one of database_url or csv_path")
    if cfg.database_url is not None:
        scheme_of(cfg.database_url)
        if cfg.query is None:
            check_table_name(cfg.table)
    if cfg.csv_path is not None and not Path(cfg.csv_path).is_file():
        raise ConfigError(f"csv_path {str(cfg.csv_path)!r} is not a file")
    if cfg.composer_aliases is not None and not Path(cfg.composer_aliases).is_file():
        raise ConfigError(f"composer_aliases {str(cfg.composer_aliases)!r} is not a file")


def run(cfg: ExportMetadataConfig) -> dict[str, Any]:
    """Export the catalogue to ``metadata/tracks_metadata.csv`` and write ``metadata/export_report.json``.

    Raises:
        ConfigError: neither or both of ``database_url`` and ``csv_path``; a bad table name or URL.
        MetadataError: the catalogue cannot be read, or any row is bad (all problems listed).
    """
    check(cfg)
    layout = cfg.common.layout
    t0 = time.perf_counter()
    aliases = load_aliases(cfg.composer_aliases)
    table: str | None = None
    query: str | None = None
    if cfg.database_url is not None:
        source = open_catalogue(cfg.database_url)
        kind, where = source.kind, source.redacted_url
        query = cfg.query
        table = None if query is not None else cfg.table
        log.info("export-metadata: reading %s from %s", f"table {table!r}" if table else "query", where)
        columns, tuples = source.fetch(table=table, query=query)
        records = [dict(zip(columns, t, strict=True)) for t in tuples]
    else:
        assert cfg.csv_path is not None
        kind, where = "csv", str(cfg.csv_path)
        log.info("export-metadata: reading CSV %s", where)
        columns, records = read_source_csv(cfg.csv_path)
    t_read = time.perf_counter()
    rows, stats = normalize_records(columns, records, source=where, aliases=aliases)
    if table is not None:  # SELECT * has no order: make the export deterministic
        rows.sort(key=lambda r: r.track_id)
    t_norm = time.perf_counter()
    write_tracks_csv(layout.tracks_csv, rows)
    t_write = time.perf_counter()
    report: dict[str, Any] = {
        "schema_version": "1.0",
        "artifact_version": layout.version_dir.name,
        "source": {
            "kind": kind,
            "url": where,
            "table": table,
            "query": query,
            "composer_aliases": str(cfg.composer_aliases) if cfg.composer_aliases is not None else None,
        },
        "counts": {
            "rows_read": stats.rows_read,
            "rows_written": len(rows),
            "composer_missing": stats.composer_missing,
            "composers": stats.composers,
            "albums": stats.albums,
            "aliases_applied": stats.aliases_applied,
        },
        "output": {
            "file": layout.tracks_csv.name,
            "sha256": sha256_file(layout.tracks_csv),
        },
        "timings_sec": {
            "read": round(t_read - t0, 6),
            "normalize": round(t_norm - t_read, 6),
            "write": round(t_write - t_norm, 6),
            "total": round(time.perf_counter() - t0, 6),
        },
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    write_artifact(layout.export_report, "export_report", report)
    log.info(
        "export-metadata: %d rows (%d composers, %d missing composer, %d albums) -> %s in %.2fs",
        len(rows),
        stats.composers,
        stats.composer_missing,
        stats.albums,
        layout.tracks_csv,
        report["timings_sec"]["total"],
    )
    return report


STEP = Step(
    name="export_metadata",
    config=ExportMetadataConfig,
    summary="Export the catalogue (database or CSV) to metadata/tracks_metadata.csv.",
    example="research-job export-metadata --database-url sqlite:///.cache/demo_corpus/catalogue.sqlite",
    run=run,
    check=check,
    pipeline=10,
)
