"""The excerpt task: ranks with the documented tie-break, the exact random floor, and an end-to-end run on a small
real-audio corpus embedded with the DSP baseline (dsp-stats: no weights), where clean excerpts find their track."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research_job import excerpt
from research_job.steps import embed, evaluate
from research_job.steps.embed import EmbedConfig
from research_job.steps.evaluate import EvaluateConfig
from tests.unit._audio_corpus import make_audio_corpus


def test_target_rank_counts_higher_scores_and_lower_rows_on_ties() -> None:
    corpus = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # query 0 -> target row 1 ties row 0 (lower row ahead): rank 2; query 1 -> row 0: rank 1;
    # query 2 -> row 3 (0.8) behind row 2 (1.0): rank 2
    assert excerpt.target_ranks(q, corpus, np.array([1, 0, 3])).tolist() == [2, 1, 2]


def test_random_floor_is_exact() -> None:
    n = 7
    base = excerpt.random_baseline(n)
    ranks = np.arange(1, n + 1)
    vals = excerpt.per_query(ranks).mean(axis=0)
    assert base == pytest.approx(dict(zip(excerpt.METRICS, vals, strict=True)))
    assert base["recall_at_1"] == pytest.approx(1 / 7) and base["recall_at_100"] == 1.0


def test_excerpt_task_end_to_end(tmp_path: Path) -> None:
    common = make_audio_corpus(tmp_path, n=9, seconds=4.0, model="dsp-stats")
    embed.run(EmbedConfig(common=common))
    res = evaluate.run(
        EvaluateConfig(
            common=common, task="excerpt", excerpt_sec=2.0, excerpt_chain="none", bootstrap_resamples=50
        )
    )
    assert res["n_queries"] == 9 and res["n_candidates"] == 9 and res["frozen"] is None
    # clean 2 s excerpts of distinct tones find their own track far more often than chance (1/9)
    assert res["metrics"]["recall_at_1"] >= 0.5 > res["random_baseline"]["recall_at_1"]
    assert common.layout.path("excerpt_results").is_file()
    again = evaluate.run(
        EvaluateConfig(
            common=common, task="excerpt", excerpt_sec=2.0, excerpt_chain="none", bootstrap_resamples=50
        )
    )
    assert again["metrics"] == res["metrics"], "seeded queries give the same figures"
    hard = excerpt.evaluate_excerpts(common.layout, seconds=1.0, chain="query", resamples=50, seed=3)
    assert hard["query"]["chain"] == "query" and hard["query"]["augmentation"]["transforms"]
