"""The scoring reference (research_job.recs.scoring) against hand computations, and the evaluation's metrics.

Small artifacts built in memory with known numbers: cf, content and hybrid against a brute-force loop over the
formulas of the spec; exclusions, the score-then-row tie-break, unknown listeners, listeners without positives,
cold items; Recall / NDCG / MRR on a hand-worked ranking; the bootstrap CI around the mean.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from research_job.recs import evaluation, popularity, scoring
from research_job.recs.data import Events, confidence_matrix


def _arts(seed: int = 0, cf_weight: float = 0.6, light: float = 3.0) -> scoring.RecsArtifacts:
    rng = np.random.default_rng(seed)
    n, d, f = 9, 4, 3
    e = rng.standard_normal((n, d))
    e = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
    items = rng.standard_normal((n, f)).astype(np.float32)
    items[8] = 0.0  # a cold item
    users = rng.standard_normal((3, f)).astype(np.float32)
    # u0: positives 1 (w 5) and 4 (w 1), negative 2; u1: only a negative; u2: positives 0, 3, 6
    indptr = np.array([0, 3, 4, 7], dtype=np.int64)
    indices = np.array([1, 2, 4, 5, 0, 3, 6], dtype=np.int32)
    weights = np.array([5, -1, 1, -4, 1, 2, 4], dtype=np.float32)
    trend = np.array([0, 3.0, 0, 2.0, 0, 2.0, 0, 0, 1.0])
    return scoring.RecsArtifacts(
        user_ids=["a", "b", "c"],
        track_ids=[f"t{i}" for i in range(n)],
        user_factors=users,
        item_factors=items,
        embeddings=e,
        indptr=indptr,
        indices=indices,
        weights=weights,
        trending=trend,
        popular=trend,
        cf_weight=cf_weight,
        light_user_events=light,
    )


def _brute(arts: scoring.RecsArtifacts, u: int, model: str) -> np.ndarray:
    """The spec's formulas, one track at a time."""
    n = arts.n_tracks
    cf = [
        sum(float(arts.user_factors[u, k]) * float(arts.item_factors[i, k]) for k in range(3))
        for i in range(n)
    ]
    lo, hi = arts.indptr[u], arts.indptr[u + 1]
    pos = [(int(j), float(w)) for j, w in zip(arts.indices[lo:hi], arts.weights[lo:hi], strict=True) if w > 0]
    if model == "cf":
        return np.array(cf)
    if not pos:
        return arts.trending.copy()
    p = sum(w * arts.embeddings[j].astype(np.float64) for j, w in pos)
    p = p / math.sqrt(float(p @ p))
    content = [float(p @ arts.embeddings[i].astype(np.float64)) for i in range(n)]
    if model == "content":
        return np.array(content)
    s = max(abs(c) for c in cf) or 1.0
    b = arts.cf_weight * len(pos) / (len(pos) + arts.light_user_events)
    return np.array([b * cf[i] / s + (1 - b) * content[i] for i in range(n)])


@pytest.mark.parametrize("model", ["cf", "content", "hybrid"])
@pytest.mark.parametrize("user", ["a", "b", "c"])
def test_scores_are_the_formulas(model: str, user: str) -> None:
    arts = _arts()
    got = scoring.score(arts, user, model)
    np.testing.assert_allclose(got, _brute(arts, arts.user_row[user], model), rtol=1e-12, atol=1e-12)


def test_cold_item_gets_content_only_in_the_hybrid() -> None:
    arts = _arts()
    cf = scoring.score(arts, "c", "cf")
    assert cf[8] == 0.0
    content = scoring.score(arts, "c", "content")
    b = 0.6 * 3 / (3 + 3.0)
    assert scoring.score(arts, "c", "hybrid")[8] == pytest.approx((1 - b) * content[8], abs=1e-15)


def test_recommend_excludes_history_and_the_request_and_breaks_ties_by_row() -> None:
    arts = _arts()
    picks = scoring.recommend(arts, "a", 9, model="popularity", exclude=["t3"])
    ids = [p["track_id"] for p in picks]
    assert not {"t1", "t2", "t4", "t3"} & set(ids)
    # trending: t5 (2.0), t8 (1.0), then the zero scores by row: t0, t6, t7
    assert ids == ["t5", "t8", "t0", "t6", "t7"]
    assert [p["score"] for p in picks] == [2.0, 1.0, 0.0, 0.0, 0.0]
    assert {p["source"] for p in picks} == {"popularity"}
    top = scoring.recommend(arts, "c", 3, model="cf")
    full = _brute(arts, 2, "cf")
    cand = [i for i in range(9) if i not in (0, 3, 6)]
    want = sorted(cand, key=lambda i: (-full[i], i))[:3]
    assert [p["track_id"] for p in top] == [f"t{i}" for i in want]
    assert {p["source"] for p in top} == {"cf"}


def test_unknown_listener_and_listener_without_positives_get_popularity() -> None:
    arts = _arts()
    cold = scoring.recommend(arts, "nobody", 3)
    assert [p["track_id"] for p in cold] == ["t1", "t3", "t5"]
    assert {p["source"] for p in cold} == {"popularity"}
    neg_only = scoring.recommend(arts, "b", 2, model="hybrid")
    assert [p["track_id"] for p in neg_only] == ["t1", "t3"] and neg_only[0]["source"] == "popularity"
    assert scoring.recommend(arts, "b", 1, model="cf")[0]["source"] == "cf"


def test_bad_arguments_are_named() -> None:
    arts = _arts()
    with pytest.raises(ValueError, match="Unknown model 'als'"):
        scoring.score(arts, "a", "als")
    with pytest.raises(ValueError, match="'t99'"):
        scoring.recommend(arts, "a", 3, exclude=["t99"])
    with pytest.raises(ValueError, match="k must be"):
        scoring.recommend(arts, "a", 0)


def test_top_k_ties_and_exclusions() -> None:
    s = np.array([1.0, 3.0, 3.0, -np.inf, 3.0, 0.5])
    assert scoring.top_k(s, 2).tolist() == [1, 2]
    assert scoring.top_k(s, 10).tolist() == [1, 2, 4, 0, 5]
    assert scoring.top_k(np.full(3, -np.inf), 2).tolist() == []


def test_metrics_on_a_hand_worked_ranking() -> None:
    # ranking by score: rows 4, 0, 2, 1, 3 (row 5 excluded); relevant: 2 and 3
    s = np.array([0.8, 0.3, 0.5, 0.1, 0.9, -np.inf])
    recall, ndcg, rr = evaluation.user_metrics(s, np.array([2, 3]), k=3)
    assert recall == 0.5
    assert ndcg == pytest.approx((1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert rr == pytest.approx(1 / 3)
    # nothing relevant in the top 2: MRR from the full ranking (row 3 is 5th), tie broken by row
    assert evaluation.user_metrics(s, np.array([3]), k=2) == (0.0, 0.0, pytest.approx(1 / 5))
    tied = np.array([0.5, 0.5, 0.5, 0.5])
    assert evaluation.user_metrics(tied, np.array([2]), k=1)[2] == pytest.approx(1 / 3)


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_users() -> None:
    rng = np.random.default_rng(1)
    small = rng.random((40, 3))
    big = rng.random((4000, 3))
    lo, hi = evaluation.bootstrap(small, 500, seed=0)
    assert (lo <= small.mean(axis=0)).all() and (small.mean(axis=0) <= hi).all()
    blo, bhi = evaluation.bootstrap(big, 500, seed=0)
    assert ((bhi - blo) < (hi - lo)).all()
    again = evaluation.bootstrap(small, 500, seed=0)
    assert np.array_equal(again[0], lo) and np.array_equal(again[1], hi)


def _events(users: list[int], tracks: list[int], kinds: list[str], ts: list[int]) -> Events:
    from research_job.recs.data import EVENT_WEIGHTS

    return Events(
        user_ids=[f"u{i}" for i in range(max(users) + 1)],
        users=np.array(users, dtype=np.int32),
        tracks=np.array(tracks, dtype=np.int32),
        weights=np.array([EVENT_WEIGHTS[k] for k in kinds], dtype=np.float32),
        ts=np.array(ts, dtype=np.int64),
        n_tracks=5,
        rows_read=len(users),
        rows_unembedded=0,
        synthetic=True,
    )


def test_confidence_popularity_and_test_set() -> None:
    day = 86400
    ev = _events(
        [0, 0, 0, 0, 1, 1, 1, 1],
        [1, 1, 2, 2, 1, 3, 4, 0],
        ["play", "like", "play", "skip", "dislike", "play", "play", "play"],
        [0, 0, day, day, 2 * day, 3 * day, 10 * day, 10 * day],
    )
    conf = confidence_matrix(ev)
    assert conf.toarray().tolist() == [[0, 5, 0, 0, 0], [1, -4, 0, 1, 1]]  # (0, 2) sums to 0: left out
    assert popularity.global_scores(ev).tolist() == [1, 2, 1, 1, 1]
    trend = popularity.trending_scores(ev, 10 * day, half_life_days=5.0)
    assert trend[1] == pytest.approx(5 * 0.5**2)
    assert trend[4] == pytest.approx(1.0)
    assert popularity.top_rows(np.array([0.0, 2.0, 1.0, 2.0]), 2).tolist() == [1, 3]
    train = ev.ts < 5 * day
    tests = evaluation.test_set(ev, train, ~train)
    assert tests.users.tolist() == [1] and tests.relevant[0].tolist() == [0, 4]


def test_rank_based_metrics_equal_reading_the_top_k() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        s = np.round(rng.standard_normal(40), 1)  # many ties
        s[rng.choice(40, 5, replace=False)] = -np.inf
        cand = np.flatnonzero(np.isfinite(s))
        rel = np.sort(rng.choice(cand, int(rng.integers(1, 8)), replace=False))
        order = scoring.top_k(s, 40).tolist()
        pos = sorted(order.index(int(r)) + 1 for r in rel)
        top = [p for p in pos if p <= 10]
        want = (
            len(top) / rel.size,
            sum(1 / math.log2(p + 1) for p in top)
            / sum(1 / math.log2(i + 2) for i in range(min(rel.size, 10))),
            1 / pos[0],
        )
        assert evaluation.user_metrics(s, rel, 10) == pytest.approx(want, abs=1e-12)
