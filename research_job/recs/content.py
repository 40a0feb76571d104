"""Content-based profiles: a listener's taste as a point in the embedding space.

p_u = normalise(sum over u's positive pairs j of w_j * E[j]), E the (L2-normalised) embedding rows;
content(u, i) = dot(p_u, E[i]). A listener without a positive pair has no profile.
"""

from __future__ import annotations

import numpy as np


def profiles(
    embeddings64: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    users: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [B, D] unit profiles of ``users``, bool [B] whether each has one; rows without one are 0)."""
    out = np.zeros((users.size, embeddings64.shape[1]), dtype=np.float64)
    has = np.zeros(users.size, dtype=bool)
    for b, u in enumerate(users):
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        w = weights[lo:hi].astype(np.float64)
        pos = w > 0
        if not pos.any():
            continue
        v = w[pos] @ embeddings64[indices[lo:hi][pos]]
        norm = float(np.linalg.norm(v))
        if norm > 0:
            out[b] = v / norm
            has[b] = True
    return out, has
