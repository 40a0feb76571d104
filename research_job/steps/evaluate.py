"""evaluate: composer retrieval over all tracks -> ``eval/eval_results.json``, ``sample_top5.json`` / ``.md``.

Each track is a query; candidates are all other tracks (self excluded by track id), ranked by the exact
reference ranking of :mod:`research_job.search`; a candidate is relevant iff it has the same standardised
composer. Reported: Precision@k, HitRate@k, NDCG@k, MRR (full ranking), their exact expectation under a random
ranking, a seeded bootstrap CI, a per-composer breakdown, and the same metrics with every same-album candidate
excluded (the album effect). Queries with a missing composer or with no other track by their composer are not
scored, only counted.

The computation is :func:`research_job.evaluation.evaluate_folder` (validate recomputes the written figures
with it); this step maps its options to :class:`~research_job.evaluation.LabelEval` and writes the files.

Scaling: queries are processed in batches; one float32 BLAS product per batch gives candidate scores, and only
the candidates that can matter (top k + margin, and a band around the best relevant score for MRR) are re-scored
in float64, so the result equals brute force while the cost is one N x N float32 product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from research_job import evaluation, schema
from research_job.augment import CHAINS
from research_job.config import CommonConfig, option
from research_job.errors import ConfigError
from research_job.evaluation import LABELS, LabelEval
from research_job.io.atomic import write_text
from research_job.layout import ArtifactLayout
from research_job.rerank import RerankOptions
from research_job.retrieval import TRACK_SETS, Scored
from research_job.steps import Step

LOG = logging.getLogger(__name__)

TASKS = ("label", "excerpt")


@dataclass(frozen=True)
class EvaluateConfig(RerankOptions):
    """evaluate: embeddings + metadata -> eval/eval_results.json, sample top-5 lists, a printed table."""

    common: CommonConfig = field(default_factory=CommonConfig)
    k: int = option(5, "cut-off of Precision@k, HitRate@k and NDCG@k (1..100)")
    bootstrap_resamples: int = option(
        1000, "bootstrap resamples of the queries for the 95% confidence intervals"
    )
    n_samples: int = option(10, "queries whose top-k lists are written to eval/sample_top5.{json,md}")
    seed: int = option(0, "seed of the bootstrap and of the sampled queries")
    batch_size: int = option(1024, "queries scored per matrix product (memory vs speed)")
    label: str = option("composer", "metadata column whose equality makes a hit relevant", choices=LABELS)
    tracks: str = option(
        "all",
        "queries and candidates: all tracks, or only those of albums holding several label values (e.g. the "
        "soundtracks with several artists)",
        choices=TRACK_SETS,
    )
    clustering: bool = option(True, "also report silhouette (cosine) and KMeans NMI / ARI (scikit-learn)")
    task: str = option(
        "label",
        "label: retrieval of same-label tracks (eval_results.json); excerpt: augmented excerpts find their own "
        "track (excerpt_results.json)",
        choices=TASKS,
    )
    excerpt_sec: float = option(10.0, "excerpt task: length of each query excerpt, seconds")
    excerpt_chain: str = option(
        "query", "excerpt task: augmentation of the queries (research_job.augment)", choices=CHAINS
    )
    excerpts_per_track: int = option(1, "excerpt task: query excerpts per track")
    excerpt_tracks: int | None = option(
        None, "excerpt task: query at most this many tracks (seeded sample); unset = all"
    )


def check(cfg: EvaluateConfig) -> None:
    """Refuse a cut-off or counts out of range.

    Raises:
        ConfigError: naming the bad value.
    """
    if not 1 <= cfg.k <= 100:
        raise ConfigError(f"k must be in 1..100, got {cfg.k}")
    if cfg.bootstrap_resamples < 1:
        raise ConfigError(f"bootstrap_resamples must be >= 1, got {cfg.bootstrap_resamples}")
    if (
        cfg.excerpt_sec <= 0
        or cfg.excerpts_per_track < 1
        or (cfg.excerpt_tracks is not None and cfg.excerpt_tracks < 1)
    ):
        raise ConfigError(
            f"excerpt_sec must be > 0, excerpts_per_track >= 1 and excerpt_tracks >= 1 or unset; got "
            f"{cfg.excerpt_sec}, {cfg.excerpts_per_track}, {cfg.excerpt_tracks}"
        )
    if cfg.n_samples < 0 or cfg.batch_size < 1:
        raise ConfigError(
            f"n_samples must be >= 0 and batch_size >= 1, got {cfg.n_samples}, {cfg.batch_size}"
        )


def params(cfg: EvaluateConfig) -> LabelEval:
    """The :class:`~research_job.evaluation.LabelEval` parameters of ``cfg``."""
    return LabelEval(k=cfg.k, label=cfg.label, tracks=cfg.tracks, rerank=cfg.rerank_spec,
                     resamples=cfg.bootstrap_resamples, seed=cfg.seed, n_samples=cfg.n_samples,
                     clustering=cfg.clustering, batch_size=cfg.batch_size)  # fmt: skip


def score_vectors(
    vectors: np.ndarray, ids: list[str], label_values: list[Any], album_values: list[str], cfg: EvaluateConfig
) -> Scored:
    """:func:`research_job.evaluation.score_vectors` with the parameters of ``cfg``."""
    return evaluation.score_vectors(vectors, ids, label_values, album_values, params(cfg))


def evaluate(cfg: EvaluateConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute ``eval_results`` and ``sample_topk`` dicts (nothing written)."""
    check(cfg)
    return evaluation.evaluate_folder(cfg.common.layout, params(cfg))


def format_table(results: dict[str, Any]) -> str:
    """Plain-text table of the headline metrics, random baseline and CI, for the terminal."""
    k = results["k"]
    names = {
        "precision_at_k": f"Precision@{k}",
        "hit_rate_at_k": f"HitRate@{k}",
        "ndcg_at_k": f"NDCG@{k}",
        "mrr": "MRR",
    }
    what = {"same_standardized_composer": "Composer", "same_album_id": "Album"}.get(
        results["relevance"], "Label"
    )
    out = [
        f"{what} retrieval, model {results['model']}, {results['n_tracks']} tracks",
        f"{'metric':<14}{'all':>9}{'95% CI':>17}{'random':>9}{'no album':>10}{'random, no album':>18}",
    ]
    o, a = (
        results["overall"],
        results["exclude_same_album"] or {"metrics": None, "random_baseline": None, "n_queries": 0},
    )
    for key, label in names.items():

        def f(block: dict[str, Any] | None, key: str = key) -> str:
            return f"{block[key]:.4f}" if block else "n/a"

        ci = o["confidence_intervals"]
        ci_s = f"[{ci[key]['low']:.3f}, {ci[key]['high']:.3f}]" if ci else "n/a"
        out.append(
            f"{label:<14}{f(o['metrics']):>9}{ci_s:>17}{f(o['random_baseline']):>9}"
            f"{f(a['metrics']):>10}{f(a['random_baseline']):>18}"
        )
    qp = results["query_policy"]
    out.append(
        f"queries scored {o['n_queries']} (no album: {a['n_queries']}); excluded: "
        f"{qp['n_excluded_no_other_track']} with no other track by their composer, "
        f"{qp['n_excluded_missing_composer']} with composer missing"
    )
    hc = results.get("head_comparison")
    if hc:
        out.append(
            f"on the head's test split ({hc['split']}, {hc['n_test']} tracks), queries and candidates:"
        )
        for which in ("head", "frozen"):
            o2 = hc[which]["overall"]
            if o2["metrics"]:
                ci2 = o2["confidence_intervals"]["precision_at_k"]
                out.append(
                    f"  {which:<7}P@{k} {o2['metrics']['precision_at_k']:.4f} [{ci2['low']:.3f}, {ci2['high']:.3f}]"
                    f"  HitRate@{k} {o2['metrics']['hit_rate_at_k']:.4f}  MRR {o2['metrics']['mrr']:.4f}"
                    f"  (random P@{k} {o2['random_baseline']['precision_at_k']:.4f})"
                )
    c = results.get("clustering")
    if c:
        out.append(
            f"clustering of {c['n_tracks']} tracks into {c['n_labels']} labels: silhouette (cosine) "
            f"{c['silhouette_cosine']:.3f}, KMeans NMI {c['kmeans_nmi']:.3f}, ARI {c['kmeans_ari']:.3f}"
        )
    return "\n".join(out)


def run_excerpt(cfg: EvaluateConfig) -> dict[str, Any]:
    """The excerpt task (:mod:`research_job.excerpt`) on the folder; writes ``eval/excerpt_results.json``."""
    from research_job.excerpt import evaluate_excerpts

    layout = cfg.common.layout
    result = evaluate_excerpts(
        layout,
        seconds=cfg.excerpt_sec,
        chain=cfg.excerpt_chain,
        per_track=cfg.excerpts_per_track,
        max_tracks=cfg.excerpt_tracks,
        seed=cfg.seed,
        resamples=cfg.bootstrap_resamples,
        rows=_test_rows(layout),
    )
    schema.write_artifact(layout.path("excerpt_results"), "excerpt_results", result)
    return result


def _test_rows(layout: ArtifactLayout) -> list[int] | None:
    """For a head folder, the rows of its test split (the tracks the head never saw); else None (all rows)."""
    try:
        from research_job.heads import is_head_folder, test_rows
    except ImportError:
        return None
    rows = test_rows(layout) if is_head_folder(layout) else []
    return rows or None  # a head trained with no test split: every track is queried


def _show(cfg: EvaluateConfig, result: dict[str, Any]) -> str:
    if cfg.task == "excerpt":
        from research_job.excerpt import format_excerpt

        return format_excerpt(result)
    return format_table(result)


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    """Evaluate and write ``eval_results.json``, ``sample_top5.json`` and ``sample_top5.md`` (task ``label``) or
    ``excerpt_results.json`` (task ``excerpt``).

    Returns:
        the result dict written.
    """
    check(cfg)
    if cfg.task == "excerpt":
        return run_excerpt(cfg)
    layout = cfg.common.layout
    results, sample = evaluate(cfg)
    schema.validate("sample_topk", sample, source=layout.sample_top5_json)
    schema.write_artifact(layout.eval_results, "eval_results", results)
    schema.write_artifact(layout.sample_top5_json, "sample_topk", sample)
    write_text(layout.sample_top5_md, evaluation.sample_markdown(sample))
    return results


STEP = Step(
    name="evaluate",
    config=EvaluateConfig,
    summary="Composer-retrieval evaluation with exact search; writes eval/ and prints a table.",
    example="research-job evaluate --k 5 --bootstrap-resamples 1000",
    run=run,
    check=check,
    show=_show,
    pipeline=60,
)
