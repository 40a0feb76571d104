"""The exact search reference equals brute force, including ties, duplicates and self-exclusion by id."""

from __future__ import annotations

import numpy as np
import pytest

from research_job.search import brute_force, exact_scores, search


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_scores_is_sequential_float64_sum() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 7)).astype(np.float32)
    b = rng.standard_normal((4, 7)).astype(np.float32)
    s = exact_scores(a, b)
    for i in range(3):
        for j in range(4):
            acc = 0.0
            for d in range(7):
                acc += float(a[i, d]) * float(b[j, d])
            assert s[i, j] == acc  # bit-identical to a plain loop


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_matches_brute_force_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = _unit(rng.standard_normal((300, 16)))
    ids = [f"t{i}" for i in range(300)]
    got = search(x, ids, x, ids, 7, batch_size=64, margin=2)
    ref = brute_force(x, ids, x, ids, 7)
    np.testing.assert_array_equal(got.rows, ref.rows)
    np.testing.assert_array_equal(got.scores, ref.scores)


def test_ties_by_ascending_row_and_duplicates() -> None:
    rng = np.random.default_rng(3)
    base = _unit(rng.standard_normal((5, 8)))
    # 40 rows drawn from 5 distinct vectors: many exact ties, more than k + margin per query
    pick = rng.integers(0, 5, size=40)
    x = base[pick]
    ids = [f"id{i}" for i in range(40)]
    got = search(x, ids, x, ids, 10, margin=1)
    ref = brute_force(x, ids, x, ids, 10)
    np.testing.assert_array_equal(got.rows, ref.rows)
    for q in range(40):
        r, s = got.rows[q], got.scores[q]
        for a in range(9):  # score desc, ties by ascending row
            assert s[a] > s[a + 1] or (s[a] == s[a + 1] and r[a] < r[a + 1])


def test_self_excluded_by_track_id_not_position() -> None:
    v = _unit(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    ids = ["a", "b", "c", "d"]
    # query "a" must get "b" (identical vector, other track) first and never itself
    res = search(v, ids, v[:1], ["a"], 3)
    assert list(res.rows[0]) == [1, 3, 2]
    # the same vector queried as "b" gets "a"
    res = search(v, ids, v[:1], ["b"], 3)
    assert list(res.rows[0]) == [0, 3, 2]
    # an outside query (id not in the corpus) excludes nothing: ties go to the lower row
    res = search(v, ids, v[:1], ["zzz"], 2)
    assert list(res.rows[0]) == [0, 1]


def test_fewer_candidates_than_k_pads() -> None:
    v = _unit(np.eye(3))
    res = search(v, ["a", "b", "c"], v, ["a", "b", "c"], 5)
    assert (res.rows[:, 2:] == -1).all()
    assert set(res.rows[0, :2]) == {1, 2}
