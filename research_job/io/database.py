"""Catalogue databases behind one small protocol, chosen by URL.

``postgresql://user:pass@host:5432/db`` (what RDS runs; :mod:`research_job.io.db_postgres`, psycopg 3) or
``sqlite:///relative.sqlite`` / ``sqlite:////abs/path.sqlite`` (the embedded default;
:mod:`research_job.io.db_sqlite`). A source answers one question: the rows of a table or of a query, with
their column names.

Passwords never leave this module: :func:`redact_url` is what logs, errors and artifacts show, and
:func:`redact_text` scrubs the password out of any driver message before it is re-raised.
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from research_job.errors import ConfigError, unknown_choice

REDACTED = "***"
_SECRET_PARAMS = {"password", "passwd", "pwd", "sslpassword", "secret", "token"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "sqlite": "sqlite"}


class CatalogueSource(Protocol):
    """A catalogue database: returns rows of a table or a query."""

    #: ``postgresql`` or ``sqlite``
    kind: str
    #: the URL with any password replaced by ``***``
    redacted_url: str

    def fetch(self, *, table: str | None = None, query: str | None = None) -> tuple[list[str], list[tuple]]:
        """Return ``(column names, rows)`` of ``SELECT * FROM table`` or of ``query`` (exactly one given).

        Raises:
            MetadataError: cannot connect, no such table, or the query fails (password redacted).
        """
        ...


def redact_url(url: str) -> str:
    """``postgresql://u:secret@h/db?password=x`` -> ``postgresql://u:***@h/db?password=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="/*"
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    # built by hand: urlunsplit drops the empty authority of sqlite:///path-style URLs
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def url_secrets(url: str) -> list[str]:
    """The secret strings of a URL (the password, raw and percent-decoded, and secret query params)."""
    out: set[str] = set()
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if ":" in userinfo:
        pw = userinfo.split(":", 1)[1]
        out |= {pw, unquote(pw), quote(unquote(pw), safe="")}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k.lower() in _SECRET_PARAMS:
            out |= {v, quote(v, safe="")}
    return sorted((s for s in out if s), key=len, reverse=True)


def redact_text(text: str, url: str) -> str:
    """Replace every secret of ``url`` (see :func:`url_secrets`) in ``text`` with ``***``."""
    for secret in url_secrets(url):
        text = text.replace(secret, REDACTED)
    return text


def check_table_name(table: str) -> str:
    """Return ``table`` if it is a plain identifier or ``schema.table``.

    Raises:
        ConfigError: anything else (it is interpolated into SQL as a quoted identifier).
    """
    if not _IDENT.match(table):
        raise ConfigError(
            f"Bad table name {table!r}: expected an identifier or schema.identifier "
            "(letters, digits, underscores); use `query` for anything else"
        )
    return table


def scheme_of(url: str) -> str:
    """The normalised scheme of a catalogue URL (``postgresql`` or ``sqlite``).

    Raises:
        ConfigError: unknown scheme, listing the known ones.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    scheme = scheme.split("+", 1)[0]  # postgresql+psycopg:// as SQLAlchemy writes it
    if scheme not in SCHEMES:
        raise ConfigError(unknown_choice("database URL scheme", scheme or redact_url(url), SCHEMES))
    return SCHEMES[scheme]


def open_catalogue(url: str) -> CatalogueSource:
    """Return the catalogue source for ``url`` (``postgresql://...`` or ``sqlite:///...``).

    Raises:
        ConfigError: unknown scheme or a malformed URL.
    """
    kind = scheme_of(url)
    if kind == "postgresql":
        from research_job.io.db_postgres import PostgresSource

        return PostgresSource(url)
    from research_job.io.db_sqlite import SqliteSource

    return SqliteSource(url)
