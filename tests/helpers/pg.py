"""A real PostgreSQL server for tests: pgserver (bundled postgres binaries) in a temporary directory.

:func:`start_postgres` initialises a cluster in a fresh ``/tmp/rj-pg-*`` directory and returns the running
:class:`Postgres`; its ``uri`` connects over a unix socket (no TCP port is opened). ``stop()`` shuts the
server down and removes the directory.

Why not pytest's ``tmp_path``: run as root, pgserver runs postgres as an unprivileged user and needs every
parent directory to be traversable, but each pytest session (ours or a concurrent one) resets
``/tmp/pytest-of-<user>`` to mode 0700, which can make ``initdb`` fail half-way.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any


class Postgres:
    """A running pgserver cluster; ``uri`` is a ``postgresql://`` URL psycopg accepts."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver

        self.data_dir = data_dir
        self._server: Any = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        self.uri: str = self._server.get_uri()
        self.socket_dir = self.uri.split("host=", 1)[1].split("&", 1)[0]

    def url_with_password(self, password: str, database: str = "postgres") -> str:
        """The same server as a URL that carries a password (pgserver trusts local connections)."""
        return f"postgresql://postgres:{password}@/{database}?host={self.socket_dir}"

    def execute(self, sql: str, params: Any = None) -> None:
        """Run one statement in autocommit mode."""
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement for each row, in one transaction."""
        import psycopg

        with psycopg.connect(self.uri) as conn, conn.cursor() as cur:
            cur.executemany(sql, rows)

    def stop(self) -> None:
        """Stop the server and remove its data directory."""
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_postgres(attempts: int = 2) -> Postgres:
    """Start pgserver in a fresh temporary directory (one retry: initdb can trip over a busy machine).

    Raises:
        RuntimeError: with initdb's output, when every attempt failed.
    """
    last: subprocess.CalledProcessError | None = None
    for _ in range(attempts):
        data_dir = Path(tempfile.mkdtemp(prefix="rj-pg-"))
        try:
            return Postgres(data_dir)
        except subprocess.CalledProcessError as e:
            last = e
            shutil.rmtree(data_dir, ignore_errors=True)
    assert last is not None
    raise RuntimeError(f"pgserver failed to start: {last}\nstdout: {last.stdout}\nstderr: {last.stderr}")
