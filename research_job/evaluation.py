"""The label evaluation of a version folder as a library: what ``eval/eval_results.json`` and
``eval/sample_top5.{json,md}`` hold, computed from the embeddings (or a similarity matrix) and the metadata.

Used by the evaluate step (which writes the files) and by validate (:mod:`research_job.artifact_checks`, which
recomputes them from the parameters the files record and refuses a figure that differs), so that a published
number is always one this code gives for those inputs. The ranking and the metrics are those of
:mod:`research_job.retrieval`; :class:`LabelEval` holds every parameter that changes a figure, and
:func:`recorded_params` reads it back from a written ``eval_results.json`` / ``sample_top5.json``.

Cost of :func:`evaluate_folder` on N tracks of dimension D: one exact ranking (one N x N float32 product plus
float64 re-scoring of near ties), the bootstrap (``resamples`` x N gathers per metric block), and, with
clustering, a seeded KMeans (10 inits) and a silhouette (N x N); with re-ranking, one more N x N pass.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from research_job import retrieval, schema
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.layout import ArtifactLayout, artifact_version
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import code_version, utc_now
from research_job.rerank import Rerank, scores, track_stats
from research_job.retrieval import Scored, clustering_scores, track_set

#: metadata columns a hit's relevance can compare, and how eval_results.json names that relevance
LABELS = ("composer", "album_id")
RELEVANCE = {"composer": "same_standardized_composer", "album_id": "same_album_id"}


@dataclass(frozen=True)
class LabelEval:
    """Every parameter of the label evaluation that changes a figure (``batch_size`` only changes the speed)."""

    k: int = 5
    label: str = "composer"
    tracks: str = "all"
    rerank: Rerank = field(default_factory=Rerank)
    resamples: int = 1000
    seed: int = 0
    n_samples: int = 10
    clustering: bool = True
    batch_size: int = 1024


def rerank_of(recorded: dict[str, Any] | None) -> Rerank:
    """The :class:`Rerank` an artifact records as ``{"method", "params"}`` (None: no re-ranking).

    Raises:
        ConfigError: an unknown method or parameter, naming the known ones.
    """
    if not recorded:
        return Rerank()
    params = dict(recorded.get("params") or {})
    unknown = sorted(set(params) - {"k", "n", "alpha"})
    if unknown:
        raise ConfigError(f"unknown re-ranking parameters {unknown}; known: alpha, k, n")
    return Rerank(str(recorded.get("method", "none")), **params)


def recorded_params(results: dict[str, Any], sample: dict[str, Any] | None) -> LabelEval:
    """The parameters a written ``eval_results.json`` (and its ``sample_top5.json``, if any) were made with.

    The bootstrap's resamples and seed are read from the confidence intervals (the seed also seeds the
    clustering and the sampled queries); with no scored query there is no interval and the defaults stand.

    Raises:
        ConfigError: a relevance or re-ranking the code does not know.
    """
    by_relevance = {v: k for k, v in RELEVANCE.items()}
    relevance = results.get("relevance")
    if relevance not in by_relevance:
        raise ConfigError(unknown_choice("relevance", str(relevance), tuple(by_relevance)))
    ci = None
    for block in (results.get("overall"), results.get("exclude_same_album")):
        if isinstance(block, dict) and isinstance(block.get("confidence_intervals"), dict):
            ci = block["confidence_intervals"]
            break
    defaults = LabelEval()
    return LabelEval(
        k=int(results["k"]),
        label=by_relevance[relevance],
        tracks=str(results.get("tracks", "all")),
        rerank=rerank_of(results.get("rerank")),
        resamples=int(ci["n_resamples"]) if ci else defaults.resamples,
        seed=int(ci["seed"]) if ci else defaults.seed,
        n_samples=len(sample["samples"]) if sample else 0,
        clustering="clustering" in results,
    )


def rank_vectors(
    vectors: np.ndarray, ids: list[str], label_values: list[Any], album_values: list[str], p: LabelEval
) -> tuple[retrieval.Variant, retrieval.Variant]:
    """Both candidate policies' rankings of every track: exact cosine, or the re-ranking of ``p``."""
    spec = p.rerank
    if spec.method == "none":
        return retrieval.rank(
            label_values, album_values, p.k, vectors=vectors, ids=ids, batch_size=p.batch_size
        )
    stats = track_stats(vectors, spec)
    return retrieval.rank(
        label_values, album_values, p.k, score_rows=lambda rows: scores(vectors, rows, spec, stats)
    )


def score_vectors(
    vectors: np.ndarray, ids: list[str], label_values: list[Any], album_values: list[str], p: LabelEval
) -> Scored:
    """Rank every track against the others (exact cosine, or the re-ranking of ``p``) and score the labels:
    the blocks ``overall``, ``exclude_same_album`` (None when the label is the album), ``per_composer``,
    ``clustering`` and ``query_policy`` of eval_results.json."""
    t0 = time.perf_counter()
    ranked = rank_vectors(vectors, ids, label_values, album_values, p)
    t1 = time.perf_counter()
    scored = retrieval.score(*ranked, label_values, k=p.k, resamples=p.resamples, seed=p.seed,
                             album_is_label=p.label == "album_id")  # fmt: skip
    if p.clustering:
        scored.block["clustering"] = clustering_scores(vectors, scored.labels, p.seed)
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


def sample_topk(scored: Scored, meta_rows: list[TrackRow], p: LabelEval, av: str) -> dict[str, Any]:
    """The ``sample_topk`` dict: the top-k lists of ``p.n_samples`` queries drawn with ``p.seed``."""
    rng = np.random.default_rng(p.seed)
    picks = np.sort(rng.choice(len(meta_rows), size=min(p.n_samples, len(meta_rows)), replace=False))
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
    return {"schema_version": "1.0", "artifact_version": av, "k": p.k, "samples": samples}


def _head_comparison(
    layout: ArtifactLayout,
    vectors: np.ndarray,
    ids: list[str],
    meta_rows: list[TrackRow],
    keep: np.ndarray,
    p: LabelEval,
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
    labels = [getattr(meta_rows[i], p.label) for i in sel]
    albums = [meta_rows[i].album_id for i in sel]
    meta = read_head_meta(layout)
    return {
        "split": (meta.get("split") or {}).get("by"),
        "n_test": int(sel.size),
        "head": score_vectors(vectors[sel], sub_ids, labels, albums, p).block,
        "frozen": score_vectors(frozen[sel], sub_ids, labels, albums, p).block,
    }


def metadata_rows(layout: ArtifactLayout, ids: list[str]) -> list[TrackRow]:
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


def evaluate_folder(layout: ArtifactLayout, p: LabelEval) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``eval_results`` and ``sample_topk`` dicts of the folder (nothing written): over its embeddings, or
    over its similarity matrix when it holds one instead (Musly in compare-models).

    Raises:
        ArtifactError: inputs missing or disagreeing; ConfigError: parameters the folder cannot take.
    """
    if p.label not in LABELS:
        raise ConfigError(unknown_choice("label", p.label, LABELS))
    t_total = time.perf_counter()
    if not layout.embeddings_meta.is_file() and layout.path("similarity_meta").is_file():
        return _evaluate_matrix_folder(layout, p, t_total)
    vectors, ids, emb_meta = load_embeddings(layout)
    meta_rows = metadata_rows(layout, ids)
    keep = track_set([getattr(r, p.label) for r in meta_rows], [r.album_id for r in meta_rows], p.tracks)
    vectors, ids, meta_rows = vectors[keep], [ids[i] for i in keep], [meta_rows[i] for i in keep]
    scored = score_vectors(
        vectors, ids, [getattr(r, p.label) for r in meta_rows], [r.album_id for r in meta_rows], p
    )
    comparison = _head_comparison(layout, vectors, ids, meta_rows, keep, p)
    return _assemble(layout, p, emb_meta["model"]["name"], emb_meta["files"]["embeddings_sha256"], scored,
                     meta_rows, t_total, {"head_comparison": comparison} if comparison is not None else {})  # fmt: skip


def _evaluate_matrix_folder(
    layout: ArtifactLayout, p: LabelEval, t_total: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The label task on a folder that holds a similarity matrix instead of vectors (Musly in compare-models):
    the same ranking and scoring over the matrix rows; clustering from the matrix as precomputed distances.

    Raises:
        ConfigError: re-ranking asked for (it needs vectors).
    """
    from research_job.similarity_matrix import read_matrix

    if p.rerank.method != "none":
        raise ConfigError(f"rerank {p.rerank.method!r} needs embeddings; {layout.version_dir} holds a matrix")
    matrix, ids, meta = read_matrix(layout)
    meta_rows = metadata_rows(layout, ids)
    keep = track_set([getattr(r, p.label) for r in meta_rows], [r.album_id for r in meta_rows], p.tracks)
    sub = np.asarray(matrix, dtype=np.float64)[np.ix_(keep, keep)]
    scores_ = -sub if meta["kind"] == "distance" else sub
    meta_rows = [meta_rows[i] for i in keep]
    labels = [getattr(r, p.label) for r in meta_rows]
    t0 = time.perf_counter()
    ranked = retrieval.rank(
        labels, [r.album_id for r in meta_rows], p.k, score_rows=lambda rows: scores_[rows].copy()
    )
    t1 = time.perf_counter()
    scored = retrieval.score(*ranked, labels, k=p.k, resamples=p.resamples, seed=p.seed,
                             album_is_label=p.label == "album_id")  # fmt: skip
    if p.clustering:
        dist = sub if meta["kind"] == "distance" else sub.max() - sub
        scored.block["clustering"] = retrieval.clustering_from_distances(dist, scored.labels, p.seed)
    scored.search_sec, scored.metrics_sec = t1 - t0, time.perf_counter() - t1
    return _assemble(
        layout,
        p,
        meta["model"],
        meta["files"]["matrix_sha256"],
        scored,
        meta_rows,
        t_total,
        {"search": "matrix"},
    )


def _assemble(
    layout: ArtifactLayout,
    p: LabelEval,
    model: str,
    sha: str,
    scored: Scored,
    meta_rows: list[TrackRow],
    t_total: float,
    extra: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """eval_results.json and sample_topk of one scored ranking."""
    av = artifact_version(layout, model)
    results = {
        "schema_version": "1.0",
        "artifact_version": av,
        "model": model,
        "k": p.k,
        "relevance": RELEVANCE[p.label],
        "tracks": p.tracks,
        "rerank": p.rerank.to_json(),
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
    return results, sample_topk(scored, meta_rows, p, av)


# --- Markdown of the samples: every text from the data is inert (no HTML, no link, no table break) ---

#: runs of white space and control / line / paragraph separators, collapsed to one space
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")
#: HTML's specials as entities; the characters Markdown gives a meaning inline backslash-escaped (CommonMark
#: allows it for any ASCII punctuation): links and images ``[ ] ( ) !``, emphasis and strike-through ``* _ ~``,
#: code ``` `` ```, tables ``|``, headings ``#``, lists ``+ -``, math ``$``, the escape itself, and ``: @ .``,
#: which splits ``https://``, ``javascript:``, ``www.`` and ``a@b.c`` so that no renderer makes them a link
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
_PUNCT = frozenset("\\`*_[]()!#+-.|~:@$")


def md_text(value: Any) -> str:
    """``value`` as inert Markdown inline text: one line, HTML specials as entities, Markdown punctuation
    escaped (``|`` too, so it never splits a table cell); never a link, an image, raw HTML or a heading."""
    text = _BREAKS.sub(" ", "" if value is None else str(value)).strip()
    return "".join(_HTML.get(c) or ("\\" + c if c in _PUNCT else c) for c in text)


def sample_markdown(sample: dict[str, Any]) -> str:
    """Human-readable Markdown of the sample top-k lists (every text from the data through :func:`md_text`)."""
    k, av = int(sample["k"]), md_text(sample["artifact_version"])
    lines = [f"# Sample top-{k} lists ({av})", ""]
    for s in sample["samples"]:
        q = s["query"]
        title = md_text(q["title"] or q["track_id"])
        composer = md_text(q["composer"]) or "(composer missing)"
        lines += [f"## {title} — {composer}", ""]
        lines += [f"track {md_text(q['track_id'])}, album {md_text(q['album_id'])}", ""]
        lines += ["| rank | score | title | composer | album | relevant |", "|---:|---:|---|---|---|:---:|"]
        for h in s["hits"]:
            cells = [
                str(int(h["rank"])),
                f"{float(h['score']):.4f}",
                md_text(h["title"] or h["track_id"]),
                md_text(h["composer"]),
                md_text(h["album_id"]),
                "yes" if h["relevant"] is True else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
