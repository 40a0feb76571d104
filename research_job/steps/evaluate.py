"""evaluate: composer retrieval over all tracks -> ``eval/eval_results.json``, ``sample_top5.json`` / ``.md``.

Each track is a query; candidates are all other tracks (self excluded by track id), ranked by the exact
reference ranking of :mod:`research_job.search`; a candidate is relevant iff it has the same standardised
composer. Reported: Precision@k, HitRate@k, NDCG@k, MRR (full ranking), their exact expectation under a random
ranking, a seeded bootstrap CI, a per-composer breakdown, and the same metrics with every same-album candidate
excluded (the album effect). Queries with a missing composer or with no other track by their composer are not
scored, only counted.

Scaling: queries are processed in batches; one float32 BLAS product per batch gives candidate scores, and only
the candidates that can matter (top k + margin, and a band around the best relevant score for MRR) are re-scored
in float64, so the result equals brute force while the cost is one N x N float32 product.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from research_job import retrieval, schema
from research_job.augment import CHAINS
from research_job.config import CommonConfig, option
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError, ConfigError
from research_job.io.atomic import write_text
from research_job.layout import ArtifactLayout, artifact_version
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import code_version, utc_now
from research_job.rerank import RerankOptions, scores, track_stats
from research_job.retrieval import TRACK_SETS, Scored, clustering_scores, track_set
from research_job.steps import Step

LOG = logging.getLogger(__name__)

#: metadata columns a hit's relevance can compare, and how eval_results.json names that relevance
LABELS = ("composer", "album_id")
RELEVANCE = {"composer": "same_standardized_composer", "album_id": "same_album_id"}
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


def score_vectors(
    vectors: np.ndarray, ids: list[str], label_values: list[Any], album_values: list[str], cfg: EvaluateConfig
) -> Scored:
    """Rank every track against the others (exact cosine, or the configured re-ranking) and score the labels:
    the blocks ``overall``, ``exclude_same_album`` (None when the label is the album), ``per_composer``,
    ``clustering`` and ``query_policy`` of eval_results.json."""
    t0 = time.perf_counter()
    spec = cfg.rerank_spec
    if spec.method == "none":
        ranked = retrieval.rank(
            label_values, album_values, cfg.k, vectors=vectors, ids=ids, batch_size=cfg.batch_size
        )
    else:
        stats = track_stats(vectors, spec)
        ranked = retrieval.rank(
            label_values, album_values, cfg.k, score_rows=lambda rows: scores(vectors, rows, spec, stats)
        )
    t1 = time.perf_counter()
    scored = retrieval.score(*ranked, label_values, k=cfg.k, resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                   album_is_label=cfg.label == "album_id")  # fmt: skip
    if cfg.clustering:
        scored.block["clustering"] = clustering_scores(vectors, scored.labels, cfg.seed)
    scored.search_sec, scored.metrics_sec = t1 - t0, time.perf_counter() - t1
    return scored


def _describe(r: TrackRow) -> dict[str, Any]:
    return {
        "track_id": r.track_id,
        "title": r.title or "",
        "composer": r.composer_display,
        "composer_key": r.composer,
        "album_id": r.album_id,
    }


def _samples(scored: Scored, meta_rows: list[TrackRow], cfg: EvaluateConfig, av: str) -> dict[str, Any]:
    """The ``sample_topk`` dict: the top-k lists of a seeded sample of queries."""
    rng = np.random.default_rng(cfg.seed)
    picks = np.sort(rng.choice(len(meta_rows), size=min(cfg.n_samples, len(meta_rows)), replace=False))
    v, labels = scored.ranking, scored.labels
    samples = []
    for q in picks:
        hits = []
        for rank, (row, score) in enumerate(zip(v.rows[q], v.scores[q], strict=True), start=1):
            if row < 0:
                break
            rel = labels[q] >= 0 and labels[row] == labels[q]
            hits.append(
                {"rank": rank, **_describe(meta_rows[row]), "score": float(score), "relevant": bool(rel)}
            )
        samples.append({"query": _describe(meta_rows[q]), "hits": hits})
    return {"schema_version": "1.0", "artifact_version": av, "k": cfg.k, "samples": samples}


def _head_comparison(
    layout: ArtifactLayout,
    vectors: np.ndarray,
    ids: list[str],
    meta_rows: list[TrackRow],
    keep: np.ndarray,
    cfg: EvaluateConfig,
) -> dict[str, Any] | None:
    """For a head folder: the head's vectors and the frozen backbone's (``head/frozen.f32``) scored on the same
    tracks, its test split (queries and candidates both; the tracks the head never trained on); else None.

    Raises:
        ArtifactError: ``frozen.f32`` does not hold one row per embedded track.
    """
    from research_job.heads import is_head_folder, read_head_meta, test_rows

    if not is_head_folder(layout):
        return None
    frozen_raw = np.fromfile(layout.path("head_frozen"), dtype="<f4")
    total = int(schema.read_artifact(layout.track_ids_json, "track_ids")["count"])
    if frozen_raw.size % total:
        raise ArtifactError(f"{layout.path('head_frozen')}: {frozen_raw.size} floats is not {total} rows")
    frozen = frozen_raw.reshape(total, -1)[keep]
    pos = {int(r): i for i, r in enumerate(keep)}
    test = [pos[r] for r in test_rows(layout) if r in pos]
    if len(test) < 3:
        return None
    sel = np.asarray(sorted(test))
    sub_ids = [ids[i] for i in sel]
    labels = [getattr(meta_rows[i], cfg.label) for i in sel]
    albums = [meta_rows[i].album_id for i in sel]
    meta = read_head_meta(layout)
    return {
        "split": (meta.get("split") or {}).get("by"),
        "n_test": int(sel.size),
        "head": score_vectors(vectors[sel], sub_ids, labels, albums, cfg).block,
        "frozen": score_vectors(frozen[sel], sub_ids, labels, albums, cfg).block,
    }


def _metadata_rows(layout: ArtifactLayout, ids: list[str]) -> list[TrackRow]:
    """The metadata row of every embedded track, in embedding order.

    Raises:
        ArtifactError: an embedded track has no row.
    """
    rows_by_id = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    missing = [t for t in ids if t not in rows_by_id]
    if missing:
        raise ArtifactError(
            f"{len(missing)} embedded tracks are not in {layout.tracks_csv}, e.g. {missing[:3]}"
        )
    return [rows_by_id[t] for t in ids]


def evaluate(cfg: EvaluateConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute ``eval_results`` and ``sample_topk`` dicts (nothing written)."""
    check(cfg)
    layout = cfg.common.layout
    t_total = time.perf_counter()
    if not layout.embeddings_meta.is_file() and layout.path("similarity_meta").is_file():
        return _evaluate_matrix_folder(cfg, t_total)
    vectors, ids, emb_meta = load_embeddings(layout)
    meta_rows = _metadata_rows(layout, ids)
    keep = track_set([getattr(r, cfg.label) for r in meta_rows], [r.album_id for r in meta_rows], cfg.tracks)
    vectors, ids, meta_rows = vectors[keep], [ids[i] for i in keep], [meta_rows[i] for i in keep]
    scored = score_vectors(
        vectors, ids, [getattr(r, cfg.label) for r in meta_rows], [r.album_id for r in meta_rows], cfg
    )
    comparison = _head_comparison(layout, vectors, ids, meta_rows, keep, cfg)
    return _assemble(cfg, emb_meta["model"]["name"], emb_meta["files"]["embeddings_sha256"], scored, meta_rows,
                     t_total, {"head_comparison": comparison} if comparison is not None else {})  # fmt: skip


def _evaluate_matrix_folder(cfg: EvaluateConfig, t_total: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The label task on a folder that holds a similarity matrix instead of vectors (Musly in compare-models):
    the same ranking and scoring over the matrix rows; clustering from the matrix as precomputed distances.

    Raises:
        ConfigError: re-ranking asked for (it needs vectors).
    """
    from research_job.similarity_matrix import read_matrix

    if cfg.rerank != "none":
        raise ConfigError(
            f"rerank {cfg.rerank!r} needs embeddings; {cfg.common.layout.version_dir} holds a matrix"
        )
    layout = cfg.common.layout
    matrix, ids, meta = read_matrix(layout)
    meta_rows = _metadata_rows(layout, ids)
    keep = track_set([getattr(r, cfg.label) for r in meta_rows], [r.album_id for r in meta_rows], cfg.tracks)
    sub = np.asarray(matrix, dtype=np.float64)[np.ix_(keep, keep)]
    scores_ = -sub if meta["kind"] == "distance" else sub
    meta_rows = [meta_rows[i] for i in keep]
    labels = [getattr(r, cfg.label) for r in meta_rows]
    t0 = time.perf_counter()
    ranked = retrieval.rank(
        labels, [r.album_id for r in meta_rows], cfg.k, score_rows=lambda rows: scores_[rows].copy()
    )
    t1 = time.perf_counter()
    scored = retrieval.score(*ranked, labels, k=cfg.k, resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                             album_is_label=cfg.label == "album_id")  # fmt: skip
    if cfg.clustering:
        dist = sub if meta["kind"] == "distance" else sub.max() - sub
        scored.block["clustering"] = retrieval.clustering_from_distances(dist, scored.labels, cfg.seed)
    scored.search_sec, scored.metrics_sec = t1 - t0, time.perf_counter() - t1
    return _assemble(
        cfg, meta["model"], meta["files"]["matrix_sha256"], scored, meta_rows, t_total, {"search": "matrix"}
    )


def _assemble(
    cfg: EvaluateConfig,
    model: str,
    sha: str,
    scored: Scored,
    meta_rows: list[TrackRow],
    t_total: float,
    extra: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """eval_results.json and sample_topk of one scored ranking."""
    av = artifact_version(cfg.common.layout, model)
    results = {
        "schema_version": "1.0",
        "artifact_version": av,
        "model": model,
        "k": cfg.k,
        "relevance": RELEVANCE[cfg.label],
        "tracks": cfg.tracks,
        "rerank": cfg.rerank_spec.to_json(),
        "self_exclusion": "by_track_id",
        "tie_break": "score_desc_then_row_asc",
        "search": "exact",
        "embeddings_sha256": sha,
        **scored.block,
        **extra,
        "timings": {
            "search_sec": round(scored.search_sec, 4),
            "metrics_sec": round(scored.metrics_sec, 4),
            "total_sec": round(time.perf_counter() - t_total, 4),
        },
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    return results, _samples(scored, meta_rows, cfg, av)


def sample_markdown(sample: dict[str, Any]) -> str:
    """Human-readable Markdown of the sample top-k lists."""
    lines = [f"# Sample top-{sample['k']} lists ({sample['artifact_version']})", ""]
    for s in sample["samples"]:
        q = s["query"]
        lines += [f"## {q['title'] or q['track_id']} — {q['composer'] or '(composer missing)'}", ""]
        lines += [f"track `{q['track_id']}`, album `{q['album_id']}`", ""]
        lines += ["| rank | score | title | composer | album | relevant |", "|---:|---:|---|---|---|:---:|"]
        for h in s["hits"]:
            title = (h["title"] or h["track_id"]).replace("|", "\\|")
            comp = (h["composer"] or "").replace("|", "\\|")
            mark = "yes" if h["relevant"] else ""
            lines.append(f"| {h['rank']} | {h['score']:.4f} | {title} | {comp} | {h['album_id']} | {mark} |")
        lines.append("")
    return "\n".join(lines)


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
    write_text(layout.sample_top5_md, sample_markdown(sample))
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
