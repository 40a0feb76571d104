"""Catalogue databases behind one small protocol, chosen by URL.

``postgresql://user:pass@host:5432/db`` (what RDS runs; :mod:`research_job.io.db_postgres`, psycopg 3) or
``sqlite:///relative.sqlite`` / ``sqlite:////abs/path.sqlite`` (the embedded default;
:mod:`research_job.io.db_sqlite`). A source answers one question: the rows of a table or of a query, with
their column names.

Passwords never leave this module: :func:`redact_text` is the project's one redaction (any message, any
URL shape, malformed ones included), :func:`redact_url` is what logs, errors and artifacts show of a URL, and
every driver message is passed through :func:`redact_text` before it is re-raised.
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import quote, unquote

from research_job.errors import ConfigError, unknown_choice

REDACTED = "***"
# scheme://user:password@ -- the password runs to the last "@" of the token (it may hold a raw / # ?)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#'\"]*):(?P<pw>[^\s'\"]*)@")
# a secret parameter: ?password=x &sslpassword=x (query), password='a b' (libpq keyword), 'password': 'x'
_PARAM = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|signature))"
    r"(?P<eq>[ \t]*=[ \t]*|['\"][ \t]*:[ \t]*)"
    # an already redacted value (*** before a delimiter) is kept as it is: redacting twice changes nothing
    r"(?P<val>\*\*\*(?=[\s&'\"]|[:;,.)](?:\s|$)|$)|'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&'\"]*)",
    re.IGNORECASE,
)
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


def redact_text(text: str, url: str | None = None) -> str:
    """The one redaction of this project: ``text`` with every credential it may carry replaced by ``***``.

    Hidden wherever they appear in ``text`` (a URL on its own, or inside a longer message such as a driver's
    error): the password of ``scheme://user:password@`` (any scheme: postgresql, s3, http; up to the token's
    last ``@``, so a raw ``/``, ``#`` or ``?`` in it stays hidden, at the cost of hiding a little more of an
    odd URL than needed), and the value of every secret parameter (``password``, ``sslpassword``, ``...token``,
    ``...secret``, ``X-Amz-Signature``, any case) written as a URL query (``?password=x``, ``&password=x``), a
    libpq keyword (``password=x``, ``password = 'with space'``) or a mapping (``'password': 'x'``). No parser
    is involved, so a malformed URL (``postgresql://u:pw@[::1:1/c``) is redacted too.

    Args:
        text: any message, log line or URL.
        url: the connection string a driver's message is about, if known: each of its secrets (raw and
            percent-decoded) is also hidden where it appears on its own (``password "p@ss" rejected``).
            Give it for a driver's message only: a short password would also hide the same word elsewhere.
    """
    out = _USERINFO.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    out = _PARAM.sub(lambda m: f"{m['key']}{m['eq']}{REDACTED}", out)
    for secret in sorted(_secrets_of(url), key=len, reverse=True) if url else ():
        out = out.replace(secret, REDACTED)
    return out


def redact_url(url: str) -> str:
    """``postgresql://u:secret@h/db?password=x`` -> ``postgresql://u:***@h/db?password=***`` (see
    :func:`redact_text`: the form logs, errors and artifacts show of a URL)."""
    return redact_text(url)


def _secrets_of(url: str) -> set[str]:
    """The secret strings of a connection string: passwords and secret parameters, raw, percent-decoded and
    re-encoded, quotes and escapes removed."""
    raw = [m["pw"] for m in _USERINFO.finditer(url)]
    for m in _PARAM.finditer(url):
        value = m["val"]
        if value[:1] in ("'", '"'):  # a quoted libpq value: quotes off, \' and \\ unescaped
            value = re.sub(
                r"\\(.)", r"\1", value[1:-1] if len(value) > 1 and value[-1] == value[0] else value[1:]
            )
        raw.append(value)
    out: set[str] = set()
    for s in raw:
        out |= {s, unquote(s), quote(unquote(s), safe="")}
    return {s for s in out if s and s != REDACTED}


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
        # a libpq keyword string has no scheme, and what precedes a ":" may be part of one: redacted too
        raise ConfigError(unknown_choice("database URL scheme", redact_url(scheme or url), SCHEMES))
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
