"""The Node API's seeded row samples (``node_api/src/lib/random.ts``: mulberry32, partial Fisher-Yates), bit for
bit, so that validate checks at least the rows the API checks at load (the HNSW vectors of ``sample_rows(n, 64,
1)``, the neighbour-table rows of ``sample_rows(n, 8, 2)``) and refuses every folder the API refuses."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_M32 = 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    """JavaScript's ``Math.imul`` as an unsigned 32-bit result."""
    return (a * b) & _M32


def mulberry32(seed: int) -> Callable[[], float]:
    """A generator of floats in [0, 1) from a 32-bit seed (the same sequence as the TypeScript one)."""
    state = seed & _M32

    def nxt() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & _M32
        t = state
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & _M32
        return ((t ^ (t >> 14)) & _M32) / 4294967296

    return nxt


def sample_rows(n: int, m: int, seed: int) -> np.ndarray:
    """``min(m, n)`` distinct rows of [0, n), ascending: the TypeScript ``sampleRows(n, m, seed)``."""
    rnd = mulberry32(seed)
    take = min(m, n)
    pool = np.arange(n, dtype=np.int64)
    for i in range(take):
        j = i + int(rnd() * (n - i))
        pool[i], pool[j] = pool[j], pool[i]
    return np.sort(pool[:take])
