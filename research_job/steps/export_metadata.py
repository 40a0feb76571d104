"""export-metadata: catalogue (PostgreSQL, SQLite or CSV) -> ``metadata/tracks_metadata.csv``.

Reads a table (``SELECT * FROM <table>``) or a custom query, checks every row (ids safe as path components,
unique ``track_id``, numbers that parse), standardises composers, and writes the CSV and
``metadata/export_report.json`` atomically. Any bad row fails the export, and the error lists every problem.
Passwords in the database URL appear only redacted, in logs, errors and the report.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from research_job.config import ExportMetadataConfig
from research_job.errors import ConfigError
from research_job.io.database import open_catalogue
from research_job.metadata import load_aliases, normalize_records, read_source_csv, write_tracks_csv
from research_job.schema import write_artifact
from research_job.steps import code_version, utc_now

log = logging.getLogger(__name__)


def run(cfg: ExportMetadataConfig) -> dict[str, Any]:
    """Export the catalogue to ``metadata/tracks_metadata.csv`` and write ``metadata/export_report.json``.

    Raises:
        ConfigError: neither or both of ``database_url`` and ``csv_path``; a bad table name or URL.
        MetadataError: the catalogue cannot be read, or any row is bad (all problems listed).
    """
    layout = cfg.common.layout
    if (cfg.database_url is None) == (cfg.csv_path is None):
        raise ConfigError("export-metadata needs exactly one of database_url or csv_path")
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
            "sha256": hashlib.sha256(layout.tracks_csv.read_bytes()).hexdigest(),
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
