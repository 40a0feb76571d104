"""research_job.io.prefetch: ordered results, caught vs propagated errors, bounded read-ahead, real overlap."""

from __future__ import annotations

import threading

import pytest

from research_job.io.prefetch import prefetched


class Boom(Exception):
    pass


def test_results_in_input_order_with_caught_errors() -> None:
    def load(i: int) -> int:
        if i == 3:
            raise Boom(f"bad item {i}")
        return i * i

    for ahead in (0, 1, 4):
        got = list(prefetched(range(7), load, ahead, catch=(Boom,)))
        assert [g.item for g in got] == list(range(7))
        assert [g.value for g in got] == [0, 1, 4, None, 16, 25, 36]
        assert isinstance(got[3].error, Boom) and "bad item 3" in str(got[3].error)
        assert all(g.seconds >= 0 for g in got)


def test_uncaught_errors_propagate_at_their_item() -> None:
    def load(i: int) -> int:
        if i == 2:
            raise KeyError(i)
        return i

    it = prefetched(range(5), load, 2, catch=(Boom,))
    assert [next(it).value, next(it).value] == [0, 1]
    with pytest.raises(KeyError):
        next(it)


def test_read_ahead_is_bounded_and_runs_while_the_caller_works() -> None:
    started: list[int] = []

    def load(i: int) -> int:
        started.append(i)
        return i

    it = prefetched(range(10), load, 3)
    first = next(it)
    assert first.item == 0
    # while the caller holds item 0, the thread loads the next 3, and no more
    deadline = threading.Event()
    for _ in range(200):
        if len(started) >= 4:
            break
        deadline.wait(0.01)  # bounded poll of the background thread's progress
    assert sorted(started) == [0, 1, 2, 3]
    assert [g.item for g in it] == list(range(1, 10))


def test_negative_lookahead_is_refused() -> None:
    with pytest.raises(ValueError, match="lookahead must be >= 0, got -1"):
        list(prefetched([1], lambda x: x, -1))
