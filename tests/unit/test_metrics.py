"""Metrics: hand-worked values, agreement with a naive per-query reference, random expectation vs Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from research_job import metrics as M


def test_hand_worked_example() -> None:
    # k = 5, ranked relevance of one query: [0, 1, 0, 1, 0], R = 3 other relevant tracks, first relevant at rank 2.
    # Precision@5 = 2/5 = 0.4; HitRate@5 = 1.
    # DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
    # IDCG (min(R, k) = 3) = 1 + 1/log2(3) + 1/log2(4) = 1 + 0.630930 + 0.5 = 2.130930
    # NDCG = 1.061606 / 2.130930 = 0.498188; MRR = 1/2.
    v = M.per_query(np.array([[0, 1, 0, 1, 0]], bool), np.array([3]), np.array([2.0]), 5)[0]
    assert v[0] == pytest.approx(0.4)
    assert v[1] == 1.0
    assert v[2] == pytest.approx(1.0616063 / 2.1309298, abs=1e-6)
    assert v[3] == 0.5
    # second query: nothing relevant in the top 5, first relevant at rank 8, R = 1:
    # P = 0, Hit = 0, NDCG = 0, MRR = 1/8
    v = M.per_query(np.zeros((1, 5), bool), np.array([1]), np.array([8.0]), 5)[0]
    assert list(v) == [0.0, 0.0, 0.0, 0.125]
    # R = 7 > k: IDCG is capped at k terms; all five relevant -> NDCG = 1
    v = M.per_query(np.ones((1, 5), bool), np.array([7]), np.array([1.0]), 5)[0]
    assert list(v) == [1.0, 1.0, 1.0, 1.0]


def test_random_expectation_hand_worked() -> None:
    # n = 4 candidates, R = 1 relevant, k = 2.
    # P@2 = 2 * (1/4) / 2 = 0.25; Hit@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    # NDCG@2 = (1/4) * (1 + 1/log2 3) / IDCG(1) = 0.25 * 1.630930 = 0.4077325
    # MRR = (1/4) * (1 + 1/2 + 1/3 + 1/4) = 25/48 = 0.5208333
    e = M.random_expectation(np.array([4]), np.array([1]), 2)[0]
    assert e[0] == pytest.approx(0.25)
    assert e[1] == pytest.approx(0.5)
    assert e[2] == pytest.approx(0.25 * (1 + 1 / math.log2(3)))
    assert e[3] == pytest.approx(25 / 48)
    # n = 5, R = 2: P(first at 1) = 2/5, at 2 = 3/5*2/4 = 3/10, at 3 = 3/5*2/4*2/3 = 1/5, at 4 = 1/10
    # MRR = 2/5 + 3/20 + 1/15 + 1/40 = 0.641666...
    assert M.random_expectation(np.array([5]), np.array([2]), 5)[0, 3] == pytest.approx(
        0.4 + 0.15 + 1 / 15 + 0.025
    )


def _naive(order: list[int], relevant: set[int], k: int) -> tuple[float, float, float, float]:
    """Deliberately plain reference: walk the ranking once per metric."""
    top = order[:k]
    hits = [1 if c in relevant else 0 for c in top]
    p = sum(hits) / k
    h = 1.0 if sum(hits) > 0 else 0.0
    dcg = 0.0
    for i, g in enumerate(hits):
        dcg += g / math.log2(i + 2)
    ideal = 0.0
    for i in range(min(len(relevant), k)):
        ideal += 1 / math.log2(i + 2)
    rr = 0.0
    for i, c in enumerate(order):
        if c in relevant:
            rr = 1 / (i + 1)
            break
    return p, h, dcg / ideal, rr


def test_agrees_with_naive_reference_on_random_rankings() -> None:
    rng = np.random.default_rng(42)
    k = 5
    rels, nrel, first, expect = [], [], [], []
    for _ in range(300):
        n = int(rng.integers(2, 30))
        r = int(rng.integers(1, n + 1))
        relevant = set(rng.choice(n, size=r, replace=False).tolist())
        order = rng.permutation(n).tolist()
        expect.append(_naive(order, relevant, k))
        row = [c in relevant for c in order[:k]] + [False] * max(0, k - n)
        rels.append(row)
        nrel.append(r)
        first.append(next(i + 1 for i, c in enumerate(order) if c in relevant))
    got = M.per_query(np.array(rels), np.array(nrel), np.array(first, float), k)
    np.testing.assert_allclose(got, np.array(expect), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("n", "r", "k"), [(12, 3, 5), (7, 1, 5), (4, 4, 5), (30, 6, 3)])
def test_random_expectation_vs_monte_carlo(n: int, r: int, k: int) -> None:
    rng = np.random.default_rng(7)
    trials = 20000
    relevant = set(range(r))
    acc = np.zeros(4)
    for _ in range(trials):
        acc += _naive(rng.permutation(n).tolist(), relevant, k)
    mc = acc / trials
    exact = M.random_expectation(np.array([n]), np.array([r]), k)[0]
    # 20k trials: standard error <= 0.5 / sqrt(20000) = 0.0035; 5 sigma
    np.testing.assert_allclose(exact, mc, atol=0.018)
    assert exact[1] == pytest.approx(M.hypergeom_hit(n, r, k))


def test_expected_rr_large_n_against_closed_form_r1() -> None:
    # R = 1: the relevant item is uniform over n ranks -> E[1/rank] = H_n / n
    n = 100_000
    h = float(np.sum(1.0 / np.arange(1, n + 1)))
    assert M.random_expectation(np.array([n]), np.array([1]), 5)[0, 3] == pytest.approx(h / n, rel=1e-9)


def test_bootstrap_ci_seeded_and_brackets_mean() -> None:
    rng = np.random.default_rng(0)
    vals = rng.random((200, 4))
    a = M.bootstrap_ci(vals, n_resamples=300, seed=5)
    b = M.bootstrap_ci(vals, n_resamples=300, seed=5)
    assert a == b
    assert a is not None
    for i, name in enumerate(M.METRICS):
        ci = a[name]
        assert ci["low"] < vals[:, i].mean() < ci["high"]  # type: ignore[index]
        # the CI width of a mean of uniforms: about 2 * 1.96 * 0.29 / sqrt(200) = 0.08
        assert 0.04 < ci["high"] - ci["low"] < 0.12  # type: ignore[index]
    assert M.bootstrap_ci(np.zeros((0, 4))) is None
