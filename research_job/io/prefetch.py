"""Ordered read-ahead: run a loading function on the next items in one background thread while the caller works.

The embed step (and the extraction benchmark, to measure the same thing) decodes the next tracks while the model
runs on the current batch: PyAV's decoder and the resampler release the GIL for most of their work, so on a
multi-core machine the decode time hides behind the forward passes instead of adding to them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Loaded(Generic[T, R]):
    """One item's outcome: ``value`` or the ``error`` it raised (of the caught types), and the seconds it took."""

    __slots__ = ("item", "value", "error", "seconds")

    def __init__(self, item: T, value: R | None, error: Exception | None, seconds: float) -> None:
        self.item, self.value, self.error, self.seconds = item, value, error, seconds


def prefetched(
    items: Iterable[T],
    load: Callable[[T], R],
    lookahead: int,
    catch: tuple[type[Exception], ...] = (Exception,),
) -> Iterator[Loaded[T, R]]:
    """``load(item)`` for every item, yielded in input order, computed up to ``lookahead`` items ahead.

    Exceptions of the ``catch`` types are returned in :attr:`Loaded.error` (one bad item does not stop the rest);
    others propagate when their item is reached. While the caller holds one result, at most ``lookahead`` later
    items are loaded or loading; ``lookahead = 0`` loads inline, in the caller's thread.

    Raises:
        ValueError: ``lookahead`` < 0.
    """
    if lookahead < 0:
        raise ValueError(f"lookahead must be >= 0, got {lookahead}")

    def run(item: T) -> Loaded[T, R]:
        t0 = time.perf_counter()
        try:
            return Loaded(item, load(item), None, time.perf_counter() - t0)
        except catch as e:
            return Loaded(item, None, e, time.perf_counter() - t0)

    if lookahead == 0:
        for item in items:
            yield run(item)
        return
    it = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        queue: deque[Future[Loaded[T, R]]] = deque()
        for item in it:
            queue.append(pool.submit(run, item))
            if len(queue) >= lookahead:
                break
        while queue:
            done = queue.popleft().result()
            for item in it:
                queue.append(pool.submit(run, item))
                break
            yield done
