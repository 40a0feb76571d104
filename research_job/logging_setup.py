"""Logging for the CLI: one format, and a ``phase`` context manager that logs each phase with its duration.

Every line the CLI logs, and the traceback of an exception nobody caught, passes through
:func:`research_job.io.database.redact_text`: the messages are redacted where they are made, and this is the
net under them (a third-party library's log line, a traceback quoting a connection string).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from types import TracebackType

from research_job.io.database import redact_text

LOG = logging.getLogger("research_job")


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message, traceback and stack included) has every credential hidden."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _redacting_excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """Print an uncaught exception's traceback as Python does, with every credential hidden."""
    sys.stderr.write(redact_text("".join(traceback.format_exception(kind, value, tb))))


def setup_logging(verbose: bool = False) -> None:
    """Log ``HH:MM:SS level name: message`` to stderr (INFO, or DEBUG when ``verbose``), redacted, and print
    uncaught tracebacks redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    )
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    sys.excepthook = _redacting_excepthook


@contextlib.contextmanager
def phase(name: str, logger: logging.Logger = LOG) -> Iterator[None]:
    """Log ``<name> ...`` on entry and ``<name> done in X.XXs`` (or ``failed after``) on exit."""
    logger.info("%s ...", name)
    t0 = time.perf_counter()
    try:
        yield
    except BaseException:
        logger.info("%s failed after %.2fs", name, time.perf_counter() - t0)
        raise
    logger.info("%s done in %.2fs", name, time.perf_counter() - t0)
