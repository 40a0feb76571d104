"""Logging for the CLI: one format, and a ``phase`` context manager that logs each phase with its duration."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

LOG = logging.getLogger("research_job")


def setup_logging(verbose: bool = False) -> None:
    """Log ``HH:MM:SS level name: message`` to stderr (INFO, or DEBUG when ``verbose``)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )


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
