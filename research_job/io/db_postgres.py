"""PostgreSQL catalogue source (psycopg 3): ``postgresql://user:pass@host:5432/db`` (RDS, or a local server).

Connection options in the URL query (``sslmode=require``, ``host=/socket/dir``) pass through to libpq.
Every driver message is scrubbed of the URL's secrets (:func:`research_job.io.database.redact_text`) before
it is re-raised, and the original exception is neither chained nor kept as context (its message could carry
the connection string).
"""

from __future__ import annotations

from typing import Any

from research_job.errors import ConfigError, MetadataError, ResearchJobError
from research_job.io.database import check_table_name, redact_text, redact_url

CONNECT_TIMEOUT_SEC = 10


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it: ``postgres://`` and SQLAlchemy's ``postgresql+psycopg://`` become
    ``postgresql://``."""
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep and scheme.lower().startswith("postgres") else url


def connect(
    url: str, *, error: type[ResearchJobError] = MetadataError, what: str = "database", **kwargs: Any
) -> Any:
    """The one way this project opens a PostgreSQL connection (psycopg 3).

    Args:
        url: a ``postgresql://`` URL; its password never reaches a message.
        error: the error class raised on failure (``MetadataError`` for the catalogue, ``StorageError`` for
            the pgvector publisher); what: the database's role in the message (``catalogue``, ...).
        kwargs: passed to ``psycopg.connect`` (``autocommit``, ...); ``connect_timeout`` defaults to 10 s
            unless the URL sets it.

    Raises:
        ``error``: naming the redacted URL and the driver's message with every secret of the URL scrubbed; the
            driver's exception is neither chained nor kept as ``__context__`` (its message could carry the
            connection string).
    """
    import psycopg

    if "connect_timeout" not in url:
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_SEC)
    try:
        return psycopg.connect(libpq_url(url), **kwargs)
    except Exception as e:  # psycopg.OperationalError, ProgrammingError (bad URL), ...
        msg = redact_text(str(e).strip(), url)
    # raised outside the except block: not even __context__ holds the driver's error (it may quote the URL)
    raise error(f"Cannot connect to {what} {redact_url(url)}: {msg}") from None


class PostgresSource:
    """Rows of a table or query from PostgreSQL, in a read-only transaction."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self._url = libpq_url(url)
        self.redacted_url = redact_url(url)

    def fetch(self, *, table: str | None = None, query: str | None = None) -> tuple[list[str], list[tuple]]:
        """See :class:`research_job.io.database.CatalogueSource`."""
        from psycopg import sql

        if (table is None) == (query is None):
            raise ConfigError("Give exactly one of table or query")
        if query is None:
            assert table is not None
            stmt: sql.SQL | sql.Composed = sql.SQL("SELECT * FROM {}").format(
                sql.Identifier(*check_table_name(table).split("."))
            )
        else:
            stmt = sql.SQL(query)  # type: ignore[arg-type]  # the operator's own query, run read-only
        conn = connect(self._url, what="catalogue")
        try:
            with conn:
                conn.read_only = True
                with conn.cursor() as cur:
                    cur.execute(stmt)
                    columns = [d.name for d in cur.description or []]
                    rows = cur.fetchall()
        except Exception as e:
            failure = redact_text(str(e).strip(), self._url)
        else:
            return columns, rows
        finally:
            conn.close()
        what = f"table {table!r}" if query is None else "query"
        raise MetadataError(f"Cannot read {what} from catalogue {self.redacted_url}: {failure}") from None
