"""SQLite catalogue source (``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite``).

The file is opened read-only: a wrong path is an error, never a new empty database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlsplit

from research_job.errors import ConfigError, MetadataError
from research_job.io.database import check_table_name, redact_url


def sqlite_path(url: str) -> Path:
    """The file path of a ``sqlite:///...`` URL (three slashes: relative, four: absolute).

    Raises:
        ConfigError: no path, or a host part (``sqlite://host/x`` is not a thing).
    """
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            f"Bad SQLite URL {redact_url(url)!r}: expected sqlite:///relative/path or sqlite:////abs/path"
        )
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ConfigError(f"Bad SQLite URL {redact_url(url)!r}: no file path")
    return Path(path)


class SqliteSource:
    """Rows of a table or query from a SQLite file."""

    kind = "sqlite"

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self.redacted_url = redact_url(url)  # SQLite has no credentials, but a pasted URL may still hold one

    def fetch(self, *, table: str | None = None, query: str | None = None) -> tuple[list[str], list[tuple]]:
        """See :class:`research_job.io.database.CatalogueSource`."""
        if (table is None) == (query is None):
            raise ConfigError("Give exactly one of table or query")
        if not self.path.is_file():
            raise MetadataError(f"SQLite catalogue not found: {self.path} (from {self.redacted_url})")
        if query is None:
            assert table is not None
            sql = "SELECT * FROM " + ".".join(f'"{p}"' for p in check_table_name(table).split("."))
        else:
            sql = query
        try:
            conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True)
        except sqlite3.Error as e:
            raise MetadataError(f"Cannot open SQLite catalogue {self.path}: {e}") from None
        try:
            cur = conn.execute(sql)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        except sqlite3.Error as e:
            what = f"table {table!r}" if query is None else "query"
            raise MetadataError(f"Cannot read {what} from SQLite catalogue {self.path}: {e}") from None
        finally:
            conn.close()
        return columns, rows
