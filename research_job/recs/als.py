"""Implicit-feedback matrix factorisation: alternating least squares from the ``implicit`` package (CPU).

The confidence matrix goes in as it is (implicit reads a negative entry as preference 0 with confidence |c|),
scaled by ``alpha``. OpenBLAS / MKL run single-threaded inside the fit (implicit's advice; its own solver threads
over users, each user's solve independent of the others), so a seed gives the same factors on every rerun. A track
with no positive in the fitted data gets an all-zero factor row (a cold item: cf = 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

LIBRARY = "implicit"


@dataclass(frozen=True)
class AlsParams:
    """The fit's hyper-parameters (recorded in recs_meta.json)."""

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 2.0
    seed: int = 0
    #: implicit's solver threads (0: all cores)
    threads: int = 0


def library_version() -> str:
    """The installed ``implicit`` version."""
    import implicit

    return str(implicit.__version__)


def fit(conf: sp.csr_matrix, params: AlsParams) -> tuple[np.ndarray, np.ndarray]:
    """Fit ALS on the confidence matrix [n_users, n_tracks] -> (float32 user factors, float32 item factors)."""
    from implicit.cpu.als import AlternatingLeastSquares

    n_users, n_tracks = conf.shape
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            dtype=np.float32,
            num_threads=params.threads,
            random_state=params.seed,
        )
        model.fit(conf.astype(np.float32), show_progress=False)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32).reshape(n_users, params.factors)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32).reshape(n_tracks, params.factors)
    has_positive = np.zeros(n_tracks, dtype=bool)
    has_positive[conf.indices[conf.data > 0]] = True
    items[~has_positive] = 0.0
    if not (np.isfinite(users).all() and np.isfinite(items).all()):
        raise FloatingPointError("ALS produced non-finite factors (try a larger regularization)")
    return users, items
