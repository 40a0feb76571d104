"""Time-split evaluation of the recommenders, ranked with :mod:`research_job.recs.scoring`.

cutoff = the 80th percentile (lower) of the event timestamps; train = events with ts < cutoff. A test user has
>= 1 training positive and >= 1 test positive on a track outside their training pairs; those tracks are relevant.
Each model ranks every track except the user's training pairs. Per user: Recall@K = hits in the top K / |rel|,
NDCG@K with binary gains (ideal = min(|rel|, K) hits), MRR = 1 / rank of the first relevant track in the full
ranking. Means carry a 95 % percentile bootstrap over test users (seeded; the same resamples for every model,
so the differences to the floor are paired).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from research_job.recs import scoring
from research_job.recs.data import Events, confidence_matrix

#: evaluated model -> (scoring model, popularity vector used) ; "popularity" is the global-count floor
EVAL_MODELS = ("popularity", "trending", "als", "content", "hybrid")
FLOOR = "popularity"
SPLIT_QUANTILE = 0.8
#: listeners scored per matrix block (bounded by memory: block x tracks float64)
_BLOCK_CELLS = 4_000_000


def cutoff_of(ts: np.ndarray, quantile: float = SPLIT_QUANTILE) -> int:
    """The split time: the ``quantile`` (lower) of the event timestamps."""
    return int(np.quantile(ts, quantile, method="lower"))


@dataclass(frozen=True)
class TestSet:
    """Test users (rows) and each one's relevant track rows."""

    users: np.ndarray
    relevant: list[np.ndarray]


def test_set(events: Events, train: np.ndarray, test: np.ndarray) -> TestSet:
    """The test users of a split (boolean masks over the events) and their relevant tracks."""
    tr = confidence_matrix(events, train)
    te = confidence_matrix(events, test)
    users, relevant = [], []
    for u in range(events.n_users):
        lo, hi = tr.indptr[u], tr.indptr[u + 1]
        if not (tr.data[lo:hi] > 0).any():
            continue
        seen = tr.indices[lo:hi]
        tl, th = te.indptr[u], te.indptr[u + 1]
        pos = te.indices[tl:th][te.data[tl:th] > 0]
        rel = np.setdiff1d(pos, seen)
        if rel.size:
            users.append(u)
            relevant.append(rel.astype(np.int64))
    return TestSet(np.asarray(users, dtype=np.int64), relevant)


def ranks(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """1-based positions of ``rows`` in the ranking of ``scores`` by score descending, then row ascending (the
    order of :func:`research_job.recs.scoring.top_k`); -inf rows (excluded) never come first."""
    s = scores[rows]
    above = (scores[None, :] > s[:, None]).sum(axis=1)
    tied = (scores[None, :] == s[:, None]).sum(axis=1)
    before = np.zeros_like(above)
    for j in np.flatnonzero(tied > 1):  # rare with continuous scores: only then count the ties by row
        before[j] = int((scores[: rows[j]] == s[j]).sum())
    return above + before + 1


def user_metrics(scores: np.ndarray, relevant: np.ndarray, k: int) -> tuple[float, float, float]:
    """(Recall@k, NDCG@k, reciprocal rank) of one ranking (-inf = excluded) against the relevant rows.

    Computed from the relevant tracks' ranks (O(|rel| N), no sort): the same numbers as reading the top k of
    :func:`research_job.recs.scoring.top_k`.
    """
    r = ranks(scores, relevant)
    hit = r <= k
    recall = float(hit.sum()) / relevant.size
    ideal = float((1.0 / np.log2(np.arange(2, min(relevant.size, k) + 2))).sum())
    ndcg = float((1.0 / np.log2(r[hit] + 1.0)).sum()) / ideal
    return recall, ndcg, 1.0 / float(r.min())


def rank_users(
    arts: scoring.RecsArtifacts,
    tests: TestSet,
    k: int,
    blocks: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    models: tuple[str, ...] = EVAL_MODELS,
    hybrid_params: list[tuple[float, float]] | None = None,
) -> dict[Any, np.ndarray]:
    """Per-user metrics [Q, 3] of each evaluated model (or, with ``hybrid_params``, of each hybrid setting)."""
    q = tests.users.size
    keys: list[Any] = list(hybrid_params) if hybrid_params is not None else list(models)
    out = {key: np.zeros((q, 3)) for key in keys}
    step = max(1, _BLOCK_CELLS // max(1, arts.n_tracks))
    for s in range(0, q, step):
        users = tests.users[s : s + step]
        blocks_by_key = _blocks(arts, users, keys, hybrid_params is not None)
        for key, block in blocks_by_key.items():
            for j, u in enumerate(users):
                row = block[j].copy()
                row[scoring.history(arts, int(u))[0]] = -np.inf
                out[key][s + j] = user_metrics(row, tests.relevant[s + j], k)
    return out


def _blocks(
    arts: scoring.RecsArtifacts, users: np.ndarray, keys: list[Any], grid: bool
) -> dict[Any, np.ndarray]:
    """The score blocks of ``users`` for each key, sharing the cf and content products between models."""
    out: dict[Any, np.ndarray] = {}
    need_cf = grid or "als" in keys or "hybrid" in keys
    need_content = grid or "content" in keys or "hybrid" in keys
    cf = scoring.cf_block(arts, users) if need_cf else None
    content, has = scoring.content_block(arts, users) if need_content else (None, None)
    for key in keys:
        if grid:
            cw, light = key
            assert cf is not None and content is not None
            out[key] = scoring.hybrid_block(cf, content, arts.n_pos[users], cw, light)
        elif key == "popularity":
            out[key] = np.broadcast_to(arts.popular, (users.size, arts.n_tracks))
        elif key == "trending":
            out[key] = np.broadcast_to(arts.trending, (users.size, arts.n_tracks))
        elif key == "als":
            assert cf is not None
            out[key] = cf
        elif key == "content":
            assert content is not None
            out[key] = content
        elif key == "hybrid":
            assert cf is not None and content is not None
            out[key] = scoring.hybrid_block(
                cf, content, arts.n_pos[users], arts.cf_weight, arts.light_user_events
            )
    if has is not None and not has.all():  # test users always have a profile; kept for safety
        for key, block in out.items():
            if key in ("content", "hybrid") or grid:
                block = block.copy()
                block[~has] = arts.trending
                out[key] = block
    return out


def bootstrap(
    values: np.ndarray, resamples: int, seed: int, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap (resampling rows with replacement) of each column's mean: (low [M], high [M])."""
    q = values.shape[0]
    rng = np.random.default_rng(seed)
    boot = np.empty((resamples, values.shape[1]))
    step = max(1, 2_000_000 // max(q, 1))
    for s in range(0, resamples, step):
        e = min(resamples, s + step)
        idx = rng.integers(0, q, size=(e - s, q))
        boot[s:e] = values[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    return np.quantile(boot, a, axis=0), np.quantile(boot, 1.0 - a, axis=0)


def summary(values: np.ndarray, k: int, resamples: int, seed: int) -> dict[str, Any]:
    """``{n_users, recall_at_<k>, ndcg_at_<k>, mrr}`` with ``{mean, ci_low, ci_high}`` each (null without users)."""
    names = (f"recall_at_{k}", f"ndcg_at_{k}", "mrr")
    out: dict[str, Any] = {"n_users": int(values.shape[0])}
    if values.shape[0] == 0:
        out.update({n: None for n in names})
        return out
    lo, hi = bootstrap(values, resamples, seed)
    mean = values.mean(axis=0)
    for j, n in enumerate(names):
        out[n] = {"mean": float(mean[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j])}
    return out


@dataclass(frozen=True)
class EvalConfig:
    """Parameters of the evaluation (recorded in recs_eval.json)."""

    k: int
    resamples: int
    seed: int
    half_life_days: float
    cf_weights: tuple[float, ...]
    light_grid: tuple[float, ...]
    validation_users: int


def _split(events: Events, keep: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    cutoff = cutoff_of(events.ts[keep])
    return cutoff, keep & (events.ts < cutoff), keep & (events.ts >= cutoff)


def select_hybrid(
    events: Events,
    track_ids: list[str],
    embeddings: np.ndarray,
    params: Any,
    cfg: EvalConfig,
    train: np.ndarray,
) -> dict[str, Any]:
    """Choose cf_weight / light_user_events on the last 20 % (by time) of the training events, by NDCG@k."""
    from research_job.recs.fit import fit_all

    default = (
        sorted(cfg.cf_weights)[len(cfg.cf_weights) // 2],
        sorted(cfg.light_grid)[len(cfg.light_grid) // 2],
    )
    cutoff, inner, val = _split(events, train)
    tests = test_set(events, inner, val)
    sampled = tests.users.size
    if tests.users.size > cfg.validation_users:
        pick = np.sort(
            np.random.default_rng(cfg.seed).choice(tests.users.size, cfg.validation_users, replace=False)
        )
        tests = TestSet(tests.users[pick], [tests.relevant[i] for i in pick])
    grid = [(float(c), float(light)) for c in cfg.cf_weights for light in cfg.light_grid]
    rows: list[dict[str, Any]] = []
    choice, reason = default, "default: the validation split has no test users (the grids' middle values)"
    if tests.users.size and inner.any():
        fitted = fit_all(events, track_ids, embeddings, params, cfg.half_life_days, *default, mask=inner)
        per = rank_users(fitted.arts, tests, cfg.k, hybrid_params=grid)
        best = -1.0
        for key in grid:
            ndcg = float(per[key][:, 1].mean())
            rows.append({"cf_weight": key[0], "light_user_events": key[1], f"ndcg_at_{cfg.k}": ndcg})
            if ndcg > best:
                best, choice = ndcg, key
        reason = f"best mean ndcg_at_{cfg.k} on the validation split (first in grid order on a tie)"
    return {
        "cutoff": _iso(cutoff),
        "test_users": int(sampled),
        "scored_users": int(tests.users.size),
        "metric": f"ndcg_at_{cfg.k}",
        "grid": rows,
        "cf_weight": choice[0],
        "light_user_events": choice[1],
        "reason": reason,
    }


def _iso(ts: int) -> str:
    from research_job.recs.data import iso

    return iso(ts)


def evaluate(
    events: Events, track_ids: list[str], embeddings: np.ndarray, params: Any, cfg: EvalConfig
) -> dict[str, Any]:
    """The evaluation table (recs_eval.json without its provenance keys); see the module docstring."""
    from research_job.recs.fit import fit_all

    everything = np.ones(events.ts.size, dtype=bool)
    cutoff, train, test = _split(events, everything)
    selection = select_hybrid(events, track_ids, embeddings, params, cfg, train)
    cw, light = selection["cf_weight"], selection["light_user_events"]
    tests = test_set(events, train, test)
    models: dict[str, Any] = {}
    segments: list[dict[str, Any]] = []
    vs_floor: dict[str, Any] = {}
    if tests.users.size and train.any():
        fitted = fit_all(events, track_ids, embeddings, params, cfg.half_life_days, cw, light, mask=train)
        per = rank_users(fitted.arts, tests, cfg.k)
        n_pos = fitted.arts.n_pos[tests.users]
    else:
        per = {m: np.zeros((0, 3)) for m in EVAL_MODELS}
        n_pos = np.zeros(0, dtype=np.int64)
    for m in EVAL_MODELS:
        models[m] = summary(per[m], cfg.k, cfg.resamples, cfg.seed)
        if m != FLOOR:
            vs_floor[m] = summary(per[m] - per[FLOOR], cfg.k, cfg.resamples, cfg.seed)
    light_mask = n_pos <= light
    for name, mask, rule in (
        ("light", light_mask, f"n_u <= {light:g}"),
        ("heavy", ~light_mask, f"n_u > {light:g}"),
    ):
        segments.append(
            {
                "segment": name,
                "rule": rule,
                "models": {m: summary(per[m][mask], cfg.k, cfg.resamples, cfg.seed) for m in EVAL_MODELS},
            }
        )
    return {
        "k": cfg.k,
        "split": {
            "method": "time",
            "quantile": SPLIT_QUANTILE,
            "cutoff": _iso(cutoff),
            "train_events": int(train.sum()),
            "test_events": int(test.sum()),
            "test_users": int(tests.users.size),
        },
        "bootstrap": {"resamples": cfg.resamples, "level": 0.95, "seed": cfg.seed, "unit": "test user"},
        "floor": FLOOR,
        "models": models,
        "vs_floor": vs_floor,
        "segments": segments,
        "hybrid_selection": selection,
    }
