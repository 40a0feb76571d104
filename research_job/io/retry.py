"""Retrying object-store requests: exponential backoff with jitter, shared by pull-audio and the store reader.

Only :class:`~research_job.io.storage.TransientStorageError` (throttling, 5xx, timeouts, short reads) is retried;
a missing object or a refused credential is not, since asking again cannot change the answer.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from research_job.io.storage import TransientStorageError

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: longest single backoff delay, seconds
MAX_BACKOFF_SEC = 30.0


def backoff_delay(attempt: int, base: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)`` capped, times U(0.5, 1.5)."""
    r = rng.random() if rng is not None else random.random()
    return min(MAX_BACKOFF_SEC, base * 2 ** (attempt - 1)) * (0.5 + r)


class Attempts:
    """Counts the requests made for one object and retries transient errors with backoff."""

    def __init__(self, max_attempts: int, backoff_sec: float) -> None:
        self.max_attempts, self.backoff_sec, self.count = max_attempts, backoff_sec, 0

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, called again after a backoff on each transient error, at most ``max_attempts`` times.

        Raises:
            TransientStorageError: the last attempt's, when every attempt failed transiently.
        """
        for attempt in range(1, self.max_attempts + 1):
            self.count += 1
            try:
                return fn()
            except TransientStorageError as e:
                if attempt == self.max_attempts:
                    raise
                delay = backoff_delay(attempt, self.backoff_sec)
                LOG.debug(
                    "transient error (attempt %d/%d), retry in %.2fs: %s",
                    attempt,
                    self.max_attempts,
                    delay,
                    e,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")
