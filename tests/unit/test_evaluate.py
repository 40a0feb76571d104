"""evaluate: hand-worked corpus, agreement with a naive brute-force evaluation, album effect, artifacts."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from research_job import metrics as M
from research_job import retrieval, schema
from research_job.config import CommonConfig
from research_job.search import exact_scores
from research_job.steps import evaluate
from research_job.steps.evaluate import EvaluateConfig
from tests.unit._core_corpus import row, write_csv, write_embeddings


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _setup(tmp_path: Path, vectors: np.ndarray, rows: list[dict]) -> EvaluateConfig:
    common = CommonConfig(artifacts_root=tmp_path, version_dir=tmp_path / "v1_model_test")
    write_csv(common.layout, rows)
    write_embeddings(common.layout, vectors, [r["track_id"] for r in rows])
    return EvaluateConfig(common=common, k=2, bootstrap_resamples=200, n_samples=3)


def test_hand_worked_corpus(tmp_path: Path) -> None:
    # 2-d unit vectors at angles 0, 10, 20, 90, 100 degrees; composers A A B B -, albums x x y y z
    ang = np.deg2rad([0, 10, 20, 90, 100])
    v = _unit(np.stack([np.cos(ang), np.sin(ang)], axis=1))
    rows = [
        row("a1", "x", "A"),
        row("a2", "x", "A"),
        row("b1", "y", "B"),
        row("b2", "y", "B"),
        row("m", "z", None),
    ]
    cfg = _setup(tmp_path, v, rows)
    res = evaluate.run(cfg)
    # Rankings (cosine = cos of angle difference), k = 2:
    #  a1: a2(10), b1(20), b2(90), m(100) -> rel [1,0], first rank 1; R = 1
    #  a2: a1(10)=b1(10) tie -> lower row a1 first -> [1,0]; rank 1
    #  b1: a2(10), a1(20), b2(70) -> [0,0]; first rank 3
    #  b2: m(10), b1(70), a2(80) -> [0,1]; rank 2
    #  m: missing composer -> excluded.
    # P@2 = (1/2 + 1/2 + 0 + 1/2) / 4 = 0.375; Hit = 3/4; MRR = (1 + 1 + 1/3 + 1/2)/4 = 0.708333
    # NDCG: IDCG(R=1) = 1; a1: 1, a2: 1, b1: 0, b2: 1/log2(3) -> (2 + 0.63093) / 4 = 0.657732
    o = res["overall"]
    assert o["n_queries"] == 4
    assert o["metrics"]["precision_at_k"] == pytest.approx(0.375)
    assert o["metrics"]["hit_rate_at_k"] == pytest.approx(0.75)
    assert o["metrics"]["mrr"] == pytest.approx((1 + 1 + 1 / 3 + 1 / 2) / 4)
    assert o["metrics"]["ndcg_at_k"] == pytest.approx((2 + 1 / math.log2(3)) / 4)
    # random baseline: each query has n = 4 candidates, R = 1: P@2 = 2*(1/4)/2 = 0.25, Hit = 1 - C(3,2)/C(4,2) = 0.5
    assert o["random_baseline"]["precision_at_k"] == pytest.approx(0.25)
    assert o["random_baseline"]["hit_rate_at_k"] == pytest.approx(0.5)
    qp = res["query_policy"]
    assert qp["n_excluded_missing_composer"] == 1 and qp["n_excluded_no_other_track"] == 0
    # every same-composer pair shares an album here: nothing left to score without the album
    assert res["exclude_same_album"]["n_queries"] == 0 and res["exclude_same_album"]["metrics"] is None
    assert [p["composer"] for p in res["per_composer"]] == ["A", "B"]
    assert res["per_composer"][0]["precision_at_k"] == pytest.approx(0.5)
    sample = schema.read_artifact(cfg.common.layout.sample_top5_json, "sample_topk")
    assert len(sample["samples"]) == 3
    assert "| rank |" in cfg.common.layout.sample_top5_md.read_text()
    assert "Precision@2" in evaluate.format_table(res)


def _naive_eval(
    x: np.ndarray, labels: np.ndarray, albums: np.ndarray, k: int, drop_album: bool
) -> np.ndarray:
    """Plain per-query loop over a full float64 score matrix."""
    s = exact_scores(x, x)
    n = x.shape[0]
    out = []
    for q in range(n):
        if labels[q] < 0:
            continue
        cand = [j for j in range(n) if j != q and not (drop_album and albums[j] == albums[q])]
        cand.sort(key=lambda j: (-s[q, j], j))
        rel = [labels[j] == labels[q] for j in cand]
        if not any(rel):
            continue
        top = rel[:k] + [False] * max(0, k - len(rel))
        first = rel.index(True) + 1
        out.append(M.per_query(np.array([top]), np.array([sum(rel)]), np.array([float(first)]), k)[0])
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_rank_all_agrees_with_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 150
    base = _unit(rng.standard_normal((60, 6)))
    x = base[rng.integers(0, 60, size=n)]  # duplicates -> exact ties
    labels = rng.integers(-1, 12, size=n)
    albums = rng.integers(0, 40, size=n)
    ids = [f"t{i}" for i in range(n)]
    k = 5
    for drop, v in zip(
        (False, True), retrieval.rank_all(x, ids, labels, albums, k, batch_size=37), strict=True
    ):
        scored = (labels >= 0) & (v.n_relevant >= 1)
        qi = np.nonzero(scored)[0]
        top = v.rows[qi]
        rel = (top >= 0) & (labels[np.maximum(top, 0)] == labels[qi, None])
        got = M.per_query(rel, v.n_relevant[qi], v.first_rank[qi], k)
        np.testing.assert_allclose(got, _naive_eval(x, labels, albums, k, drop), atol=1e-12)


def test_album_effect_is_visible(tmp_path: Path) -> None:
    # composer C has two albums; within an album tracks are near-identical, across albums far apart
    v = _unit(np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [0, 1, 0.01], [0, 0, 1], [0.01, 0, 1]], float))
    rows = [row(f"t{i}", f"al{i // 2}", "C" if i < 4 else "D") for i in range(6)]
    res = evaluate.run(_setup(tmp_path, v, rows))
    assert res["overall"]["metrics"]["mrr"] == pytest.approx(1.0)
    assert res["exclude_same_album"]["n_queries"] == 4  # D has a single album: excluded without it
    assert res["exclude_same_album"]["metrics"]["mrr"] < 1.0


HOSTILE_TITLES = [
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "![x](https://evil.example/p.png) <img src=x onerror=alert(1)>",
    "two\nlines | and a pipe\r\n| rank | forged |",
    "https://evil.example and www.evil.example and a@evil.example",
    "`code` *em* _u_ ~~s~~ $x$ &amp; \\| # h",
]


def test_sample_markdown_keeps_every_title_inert(tmp_path: Path) -> None:
    from markdown_it import MarkdownIt

    rng = np.random.default_rng(1)
    n = len(HOSTILE_TITLES)
    rows = [row(f"t{i}", f"al{i % 2}", "A" if i % 2 else "B") for i in range(n)]
    for r, title in zip(rows, HOSTILE_TITLES, strict=True):
        r["title"] = title
        r["composer_raw"] = title  # the composer cell shows it too
    cfg = _setup(tmp_path, _unit(rng.standard_normal((n, 4))), rows)
    evaluate.run(replace(cfg, n_samples=n, k=n - 1))
    md = cfg.common.layout.sample_top5_md.read_text()
    for needle in ("<script", "<img", "](", "javascript:", "https://", "www.evil", "a@evil", "\r"):
        assert needle not in md, needle
    html = MarkdownIt("commonmark").enable("table").enable("strikethrough").render(md)
    for tag in ("<a ", "<img", "<script", "<code", "<em", "<s>", "<h3"):
        assert tag not in html, tag
    # one table per query, one row per hit, six cells each: no title broke a row or added one
    assert html.count("<table>") == n and html.count("<tr>") == n * n
    assert all(r.count("<td") == 6 for r in html.split("<tr>")[1:] if "<td" in r)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the text is shown as it is, escaped
    assert "two lines | and a pipe | rank | forged |" in html
