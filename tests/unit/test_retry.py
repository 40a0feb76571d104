"""io.retry: transient store errors are retried with capped, jittered backoff; the others are not."""

from __future__ import annotations

import random

import pytest

from research_job.io import retry
from research_job.io.retry import MAX_BACKOFF_SEC, Attempts, backoff_delay
from research_job.io.storage import ObjectNotFound, TransientStorageError


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(0)
    for attempt, base in ((1, 0.5), (2, 0.5), (3, 0.5)):
        d = backoff_delay(attempt, base, rng)
        assert 0.5 * base * 2 ** (attempt - 1) <= d <= 1.5 * base * 2 ** (attempt - 1)
    assert backoff_delay(20, 1.0, rng) <= 1.5 * MAX_BACKOFF_SEC


def test_transient_errors_are_retried_until_success(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    answers = [TransientStorageError("503"), TransientStorageError("slow down"), "bytes"]

    def flaky() -> str:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    tries = Attempts(max_attempts=3, backoff_sec=0.1)
    assert tries.call(flaky) == "bytes" and tries.count == 3 and len(slept) == 2


def test_the_last_transient_error_is_raised_and_others_are_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retry.time, "sleep", lambda _s: None)
    tries = Attempts(max_attempts=2, backoff_sec=0.0)

    def always_503() -> None:
        raise TransientStorageError(f"503 #{tries.count}")

    with pytest.raises(TransientStorageError, match="503 #2"):
        tries.call(always_503)
    missing = Attempts(max_attempts=5, backoff_sec=0.0)

    def gone() -> None:
        raise ObjectNotFound("no such key: a/b.mp3")

    with pytest.raises(ObjectNotFound):
        missing.call(gone)
    assert missing.count == 1
