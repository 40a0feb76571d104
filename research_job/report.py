"""The evaluation report of a version folder: ``eval/report.json``, ``eval/clusters.json``, ``eval/report.html``
and the figures under ``eval/figures/``.

The headline, its random floor, the same-album-excluded variant and the per-label means are read from
``eval/eval_results.json`` as evaluate recorded them (never recomputed); what evaluate does not record is
computed here with the same libraries and the parameters it records: the per-query values of the same ranking
for the per-label bootstrap CIs, the top-k confusion table and the hubness (read off build-index's exact
``index/neighbors.i32`` when it ranks as the evaluation did, :func:`research_job.retrieval.rank_from_neighbors`;
else ranked again, :func:`research_job.evaluation.rank_vectors`: an N x N product, most of the report at 100k), and
the analysis of :mod:`research_job.embedding_analysis` (map, pair cosines, hubness, dimensionality, clustering).
The sections made from other steps' artifacts, each skipped with its reason when they are missing or belong to
other embeddings, are :mod:`research_job.report_sections`: the indexes (index_meta.json), compare-models'
comparison.json, a trained head's curves, and the tags of each cluster (embeddings/tags.f32 of a tagging model,
which also gives clusters.json its ``top_tags``).

Phases: :func:`load_inputs` -> :func:`analyse` (numbers) -> :func:`draw` (PNG figures, matplotlib's Agg canvas,
no pyplot state) -> :func:`render_html` (one self-contained page: figures inlined as base64 PNG, every text from
the data HTML-escaped, no script, no external URL) -> :func:`write_report`.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job import embedding_analysis as EA
from research_job import evaluation, neighbors, retrieval, schema
from research_job import report_sections as RS
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError
from research_job.io.atomic import write_bytes, write_text
from research_job.layout import ArtifactLayout, artifact_version
from research_job.metadata import TrackRow
from research_job.metrics import METRICS
from research_job.provenance import code_version, sha256_bytes, sha256_file, utc_now
from research_job.report_sections import error_bars as _error_bars
from research_job.report_sections import figure as _figure
from research_job.report_sections import png as _png

LOG = logging.getLogger(__name__)

METRIC_NAMES = {
    "precision_at_k": "P@{k}",
    "hit_rate_at_k": "HitRate@{k}",
    "ndcg_at_k": "NDCG@{k}",
    "mrr": "MRR",
}
#: composers drawn with their own colour on the map; the others share one grey
MAX_COLOURS = 20
#: albums drawn with their own marker on the map (more: one marker for all, said on the figure)
MARKERS = "osD^v<>pPX*h"
CONFIDENCE = (
    "softmax over the negative squared Euclidean distances of the unit vector to every KMeans centre, the "
    "distances divided by the mean distance of the tracks to their nearest centre; the value of the track's own "
    "cluster (1/k: halfway between centres, 1: on its centre)"
)


@dataclass(frozen=True)
class ReportOptions:
    """What changes the report's figures beyond what eval_results.json records."""

    map_method: str = "umap"
    max_points: int = 5000
    top_hubs: int = 10
    seed: int = 0
    #: labelled tracks KMeans is fitted on at most (a seeded sample above it; evaluate fits all)
    fit_points: int = EA.KMEANS_FIT_POINTS
    #: compare-models' comparison.json to show (None: no comparison section)
    comparison: Path | None = None


@dataclass
class Inputs:
    """What the report is made from: the evaluation as recorded and the vectors and rows it was made from."""

    results: dict[str, Any]
    params: evaluation.LabelEval
    vectors: np.ndarray  # the evaluated track set's unit vectors
    ids: list[str]
    rows: list[TrackRow]
    all_ids: list[str]  # every embedded track (clusters.json lists each once)
    all_vectors: np.ndarray
    model: str
    embeddings_sha256: str
    postprocess: str = "none"
    #: index/neighbors.i32 when it holds this ranking's top-k (exact, these embeddings, all tracks, no re-ranking)
    neighbors: np.ndarray | None = None


@dataclass
class Built:
    """The report's dicts, figures (name -> PNG bytes) and page, before anything is written."""

    report: dict[str, Any]
    clusters: dict[str, Any] | None
    figures: dict[str, bytes] = field(default_factory=dict)
    html: str = ""


def load_inputs(layout: ArtifactLayout) -> Inputs:
    """Read eval_results.json (and the parameters it records), the embeddings and the metadata.

    Raises:
        ArtifactError: eval_results.json missing (naming it and the step that writes it), of other embeddings,
            or a folder without embeddings (a similarity matrix only).
    """
    if not layout.eval_results.is_file():
        raise ArtifactError(
            f"Missing {layout.eval_results}: the report reads the figures evaluate recorded; "
            "run `research-job evaluate` (make evaluate) first"
        )
    results = schema.read_artifact(layout.eval_results, "eval_results")
    sample = (
        schema.read_artifact(layout.sample_top5_json, "sample_topk")
        if layout.sample_top5_json.is_file()
        else None
    )
    if not layout.embeddings_meta.is_file():
        raise ArtifactError(
            f"Missing {layout.embeddings_meta}: the report needs the embeddings (run embed first)"
        )
    vectors, ids, meta = load_embeddings(layout)
    sha = meta["files"]["embeddings_sha256"]
    if results["embeddings_sha256"] != sha:
        raise ArtifactError(
            f"{layout.eval_results} is of other embeddings (embeddings_sha256 {results['embeddings_sha256']} != "
            f"{sha}); rerun `research-job evaluate`"
        )
    params = evaluation.recorded_params(results, sample)
    rows = evaluation.metadata_rows(layout, ids)
    keep = retrieval.track_set(
        [getattr(r, params.label) for r in rows], [r.album_id for r in rows], params.tracks
    )
    return Inputs(
        results=results,
        params=params,
        vectors=vectors[keep],
        ids=[ids[i] for i in keep],
        rows=[rows[i] for i in keep],
        all_ids=ids,
        all_vectors=vectors,
        model=meta["model"]["name"],
        embeddings_sha256=sha,
        postprocess=meta["postprocess"]["type"],
        neighbors=neighbor_table(layout, params, sha, len(ids)) if keep.size == len(ids) else None,
    )


def neighbor_table(
    layout: ArtifactLayout, params: evaluation.LabelEval, sha: str, count: int
) -> np.ndarray | None:
    """build-index's exact neighbour table when it ranks as the evaluation did, else None: of these embeddings
    (embeddings_sha256 and the file's sha256 as index_meta.json records them), exact, self excluded, float64 score
    descending then row ascending, at least ``params.k`` columns, neither side re-ranked."""
    if params.rerank.method != "none" or not layout.index_meta.is_file():
        return None
    meta = schema.read_artifact(layout.index_meta, "index_meta")
    nb = meta.get("neighbors")
    if (
        not nb
        or meta.get("embeddings_sha256") != sha
        or not nb.get("exact")
        or not nb.get("self_excluded")
        or nb.get("ranking") != neighbors.COSINE_RANKING  # a re-ranked table ranks otherwise
        or int(nb["k"]) < params.k
        or int(meta.get("count", -1)) != count
        or not layout.neighbors_table.is_file()
        or sha256_file(layout.neighbors_table) != nb.get("sha256")
    ):
        return None
    return neighbors.read(layout.neighbors_table, count, int(nb["k"]))


# --- numbers ---


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The recorded headline blocks (all candidates; same album excluded) and the sentence that reads them."""
    k = int(results["k"])

    def block(b: dict[str, Any] | None) -> dict[str, Any] | None:
        if not b or not b.get("metrics"):
            return None
        ci = b["confidence_intervals"]
        return {
            "n_queries": int(b["n_queries"]),
            "metrics": {m: float(b["metrics"][m]) for m in METRICS},
            "random_baseline": {m: float(b["random_baseline"][m]) for m in METRICS},
            "ci": {m: {"low": float(ci[m]["low"]), "high": float(ci[m]["high"])} for m in METRICS}
            if ci
            else None,
        }

    overall, no_album = block(results["overall"]), block(results.get("exclude_same_album"))
    return {
        "k": k,
        "overall": overall,
        "exclude_same_album": no_album,
        "sentence": reading(k, overall, no_album),
    }


def reading(k: int, overall: dict[str, Any] | None, no_album: dict[str, Any] | None) -> str:
    """One sentence on P@k: how many times the random floor, and how much of the lift the album effect explains."""
    if overall is None:
        return "No query could be scored (no label is shared by two tracks)."
    p, floor = overall["metrics"]["precision_at_k"], overall["random_baseline"]["precision_at_k"]
    ci = overall["ci"]["precision_at_k"] if overall["ci"] else None
    times = f"{p / floor:.1f} times" if floor > 0 else "infinitely many times"
    text = f"P@{k} is {p:.3f}" + (f" (95% CI {ci['low']:.3f}-{ci['high']:.3f})" if ci else "")
    text += f", {times} the random floor of {floor:.3f}"
    if no_album is None:
        return text + "."
    pa, fa = no_album["metrics"]["precision_at_k"], no_album["random_baseline"]["precision_at_k"]
    lift, lift_a = p - floor, pa - fa
    text += (
        f"; with same-album tracks excluded it is {pa:.3f} ({pa / fa:.1f} times its floor of {fa:.3f})"
        if fa
        else ""
    )
    if lift > 0:
        share = max(0.0, min(1.0, 1.0 - lift_a / lift))
        text += f", so the album effect explains {100 * share:.0f}% of the lift above chance"
    return text + "."


@dataclass
class Analysis:
    """Every number of the report, with the arrays the figures draw."""

    labels: np.ndarray
    names: list[str]
    ranking: retrieval.Variant
    per_label: list[dict[str, Any]]
    confusion: Any  # pandas DataFrame
    coords: np.ndarray
    map_rows: np.ndarray
    map_method: str
    pairs: dict[str, Any]
    hub: dict[str, Any]
    dims: dict[str, Any]
    clusters: dict[str, Any] | None
    timings: dict[str, float] = field(default_factory=dict)


def _per_label(results: dict[str, Any], ci: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """eval_results' per-label means with the CIs computed here (same order: most tracks first)."""
    out = []
    for row in results.get("per_composer") or []:
        c = ci.get(row["composer"], {}).get("ci")
        out.append(
            {
                "label": row["composer"],
                "n_tracks": int(row["n_tracks"]),
                "n_queries": int(row["n_queries"]),
                "metrics": {m: float(row[m]) for m in METRICS},
                "ci": {m: dict(c[m]) for m in METRICS} if c else None,
            }
        )
    return out


def analyse(inp: Inputs, opts: ReportOptions) -> Analysis:
    """Compute every section's numbers; the self-excluded ranking read off build-index's neighbour table when
    :func:`neighbor_table` found one, else ranked once more with the recorded parameters."""
    p = inp.params
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    label_values = [getattr(r, p.label) for r in inp.rows]
    labels, names = retrieval.label_ids(label_values)
    if inp.neighbors is not None:  # the same ranking's top-k, already computed by build-index
        v_all = retrieval.rank_from_neighbors(inp.vectors, labels, inp.neighbors, p.k)
    else:
        v_all, _ = evaluation.rank_vectors(
            inp.vectors, inp.ids, label_values, [r.album_id for r in inp.rows], p
        )
    t["ranking_sec"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, qi, values = retrieval.summary(v_all, labels, p.k, 1, p.seed)
    ci = EA.per_label_ci(values, labels[qi], [str(n) for n in names], p.resamples, p.seed)
    table = EA.confusion(v_all.rows, labels, [str(n) for n in names])
    t["per_label_sec"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    map_rows = EA.sample_rows(len(inp.ids), opts.max_points, opts.seed)
    coords, method = EA.project_2d(inp.vectors[map_rows], opts.map_method, opts.seed)
    t["map_sec"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairs = EA.pair_cosines(inp.vectors, labels, opts.max_points, opts.seed)
    hub = EA.hubness(v_all.rows, len(inp.ids))
    dims = EA.dimensionality(inp.vectors)
    t["structure_sec"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    clusters = EA.clustering(inp.vectors, labels, p.seed, opts.max_points, opts.fit_points)
    t["clustering_sec"] = time.perf_counter() - t0
    return Analysis(labels, [str(n) for n in names], v_all, _per_label(inp.results, ci), table, coords,
                    map_rows, method, pairs, hub, dims, clusters, t)  # fmt: skip


def _stats(x: np.ndarray) -> dict[str, Any]:
    if x.size == 0:
        return {"n_pairs": 0, "mean": None, "median": None}
    return {"n_pairs": int(x.size), "mean": float(x.mean()), "median": float(np.median(x))}


def _header(inp: Inputs, av: str) -> dict[str, Any]:
    """The fields report.json and clusters.json open with: schema, version, model, embeddings and label."""
    return {
        "schema_version": "1.0",
        "artifact_version": av,
        "model": inp.model,
        "embeddings_sha256": inp.embeddings_sha256,
        "label": inp.params.label,
    }


def report_dict(
    inp: Inputs,
    a: Analysis,
    opts: ReportOptions,
    figures: dict[str, bytes],
    av: str,
    sections: list[RS.Section] | None = None,
) -> dict[str, Any]:
    """The ``report`` artifact (schema report.schema.json), with the blocks of the optional ``sections``."""
    res = inp.results
    top = np.argsort(-a.hub["counts"], kind="stable")[: opts.top_hubs]
    hubs = [
        {
            "track_id": inp.ids[i],
            "title": inp.rows[i].title or "",
            "composer": inp.rows[i].composer_display or "",
            "k_occurrence": int(a.hub["counts"][i]),
        }
        for i in top
    ]
    c = a.clusters
    clustering = None
    if c is not None:
        clustering = {
            "n_tracks": c["n_tracks"],
            "n_labels": c["n_labels"],
            "silhouette_true_labels": c["silhouette_true_labels"],
            "silhouette_points": c["silhouette_points"],
            "methods": [
                {
                    **m,
                    "meets_reference": bool(
                        m["nmi"] > EA.REFERENCE["nmi"]
                        and m["silhouette_cosine"] > EA.REFERENCE["silhouette_cosine"]
                    ),
                }
                for m in c["methods"]
            ],
            "reference": dict(EA.REFERENCE),
        }
    tab = a.confusion
    return {
        **_header(inp, av),
        "n_tracks": len(inp.ids),
        "headline": headline(res),
        "per_label": a.per_label,
        "confusion": {
            "labels": [str(x) for x in tab.index],
            "counts": [[int(v) for v in r] for r in tab.to_numpy()],
        },
        "map": {
            "method": a.map_method,
            "n_points": int(a.map_rows.size),
            "n_tracks": len(inp.ids),
            "seed": opts.seed,
        },
        "similarity": {
            "n_sampled": a.pairs["n_sampled"],
            "same_label": _stats(a.pairs["same"]),
            "other": _stats(a.pairs["other"]),
            "mean_pairwise_cosine": a.pairs["mean_pairwise_cosine"],
        },
        "hubness": {
            "k": int(res["k"]),
            "skewness": a.hub["skewness"],
            "max_k_occurrence": a.hub["max"],
            "n_antihubs": a.hub["n_antihubs"],
            "top_hubs": hubs,
        },
        "dimensionality": a.dims,
        "clustering": clustering,
        **{sec.key: sec.block for sec in sections or []},
        "figures": [{"name": n, "sha256": sha256_bytes(b)} for n, b in sorted(figures.items())],
        "timings": {k: round(v, 4) for k, v in a.timings.items()},
        "created_at": utc_now(),
        "code_version": code_version(),
    }


def clusters_dict(inp: Inputs, a: Analysis, av: str) -> dict[str, Any] | None:
    """The ``clusters`` artifact: every embedded track's KMeans cluster and confidence (None: no clustering)."""
    c = a.clusters
    if c is None:
        return None
    pos = {t: i for i, t in enumerate(inp.ids)}
    # tracks outside the evaluated set (evaluate --tracks multi_label_albums) are assigned to the nearest centre
    outside = [i for i, t in enumerate(inp.all_ids) if t not in pos]
    assignment = dict(zip(inp.ids, c["assignment"].tolist(), strict=True))
    confidence = dict(zip(inp.ids, c["confidence"].tolist(), strict=True))
    if outside:
        km_x = np.asarray(inp.all_vectors[outside], dtype=np.float64)
        km_x /= np.linalg.norm(km_x, axis=1, keepdims=True)
        from sklearn.metrics.pairwise import euclidean_distances

        nearest = euclidean_distances(km_x, c["centres"], squared=True).argmin(axis=1)
        conf = EA.softmax_confidence(km_x, c["centres"])
        for j, i in enumerate(outside):
            assignment[inp.all_ids[i]], confidence[inp.all_ids[i]] = int(nearest[j]), float(conf[j])
    counts = np.bincount([assignment[t] for t in inp.all_ids], minlength=c["n_labels"])
    return {
        **_header(inp, av),
        "method": "kmeans",
        "k": c["n_labels"],
        "seed": inp.params.seed,
        "confidence": CONFIDENCE,
        "clusters": [
            {
                "cluster": j,
                "name": a.names[lab] if lab >= 0 else "",
                "dominant_share": share,
                "n_tracks": int(counts[j]),
            }
            for j, (lab, share) in enumerate(c["dominant"])
        ],
        "tracks": [
            {"track_id": t, "cluster": int(assignment[t]), "confidence": float(confidence[t])}
            for t in inp.all_ids
        ],
    }


# --- figures ---


def _fig_headline(head: dict[str, Any]) -> bytes:
    k = head["k"]
    fig, ax = _figure(7, 3.6)
    x = np.arange(len(METRICS))
    blocks = [
        ("all candidates", head["overall"], "#1f77b4"),
        ("same album excluded", head["exclude_same_album"], "#ff7f0e"),
    ]
    width = 0.38
    for j, (name, b, colour) in enumerate(blocks):
        if b is None:
            continue
        m = np.array([b["metrics"][key] for key in METRICS])
        err = None
        if b["ci"]:
            lo = np.array([b["ci"][key]["low"] for key in METRICS])
            hi = np.array([b["ci"][key]["high"] for key in METRICS])
            err = _error_bars(m, lo, hi)
        ax.bar(x + (j - 0.5) * width, m, width, yerr=err, capsize=3, label=name, color=colour)
        floor = [b["random_baseline"][key] for key in METRICS]
        ax.scatter(x + (j - 0.5) * width, floor, marker="_", s=400, color="black", zorder=3,
                   label="random floor" if j == 0 else None)  # fmt: skip
    ax.set_xticks(x, [METRIC_NAMES[m].format(k=k) for m in METRICS])
    ax.set_ylim(0, 1)
    ax.set_title("Headline (bars: 95% bootstrap CI; black: exact random floor)")
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def _fig_per_label(per: list[dict[str, Any]], k: int, label: str) -> bytes:
    fig, ax = _figure(7, 0.5 + 0.32 * max(1, len(per)))
    names = [p["label"] for p in per][::-1]
    m = np.array([p["metrics"]["precision_at_k"] for p in per][::-1])
    lo = np.array(
        [p["ci"]["precision_at_k"]["low"] if p["ci"] else p["metrics"]["precision_at_k"] for p in per][::-1]
    )
    hi = np.array(
        [p["ci"]["precision_at_k"]["high"] if p["ci"] else p["metrics"]["precision_at_k"] for p in per][::-1]
    )
    ax.barh(np.arange(len(names)), m, xerr=_error_bars(m, lo, hi), capsize=3, color="#1f77b4")
    ax.set_yticks(
        np.arange(len(names)), [f"{n} ({p['n_queries']})" for n, p in zip(names, per[::-1], strict=True)]
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"P@{k} (95% bootstrap CI; queries in brackets)")
    ax.set_title(f"Per {label}")
    return _png(fig)


def _fig_confusion(tab: Any, k: int) -> bytes:
    counts = tab.to_numpy().astype(np.float64)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = counts.shape[0]
    fig, ax = _figure(1.5 + 0.5 * n, 1.0 + 0.5 * n)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = [str(x) for x in tab.index]
    ax.set_xticks(np.arange(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(np.arange(n), names, fontsize=8)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if share[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("composer of the hit")
    ax.set_ylabel("composer of the query")
    ax.set_title(f"Top-{k} hits: share of each query composer's hits")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _png(fig)


def _fig_map(inp: Inputs, a: Analysis) -> bytes:
    fig, ax = _figure(8, 6.5)
    rows = a.map_rows
    lab = a.labels[rows]
    albums = [inp.rows[i].album_id for i in rows]
    album_names = sorted(set(albums))
    by_album = len(album_names) <= len(MARKERS)
    counts = np.bincount(lab[lab >= 0], minlength=len(a.names))
    coloured = list(np.argsort(-counts, kind="stable")[:MAX_COLOURS])
    from matplotlib import colormaps

    cmap = colormaps["tab20" if len(coloured) > 10 else "tab10"]
    for ci, c in enumerate(coloured + [-1]):
        sel = (lab == c) if c >= 0 else ~np.isin(lab, coloured)
        if not sel.any():
            continue
        colour = cmap(ci) if c >= 0 else (0.6, 0.6, 0.6, 1.0)
        name = a.names[c] if c >= 0 else "other / missing"
        if by_album:
            for ai, alb in enumerate(album_names):
                s2 = sel & (np.asarray(albums) == alb)
                if s2.any():
                    ax.scatter(a.coords[s2, 0], a.coords[s2, 1], s=28, color=colour, marker=MARKERS[ai],
                               edgecolors="none", label=None)  # fmt: skip
            ax.scatter([], [], s=28, color=colour, marker="o", label=name)
        else:
            ax.scatter(a.coords[sel, 0], a.coords[sel, 1], s=14, color=colour, edgecolors="none", label=name)
    method = {"umap": "UMAP (cosine)", "tsne": "t-SNE (cosine)"}[a.map_method]
    sampled = (
        f"seeded sample of {rows.size} of {len(inp.ids)} tracks"
        if rows.size < len(inp.ids)
        else f"all {rows.size} tracks"
    )
    marker = "marker: album" if by_album else f"{len(album_names)} albums: one marker"
    ax.set_title(f"{method}, {sampled}; colour: composer, {marker}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    return _png(fig)


def _fig_cosines(pairs: dict[str, Any]) -> bytes:
    fig, ax = _figure(7, 3.4)
    bins = np.linspace(-1, 1, 81)
    for key, name, colour in (("other", "other pairs", "#7f7f7f"), ("same", "same composer", "#d62728")):
        x = pairs[key]
        if x.size:
            ax.hist(
                x,
                bins=bins,
                density=True,
                alpha=0.6,
                color=colour,
                label=f"{name} ({x.size}, mean {x.mean():.3f})",
            )
    lo = min([float(pairs[k].min()) for k in ("same", "other") if pairs[k].size] or [-1.0])
    ax.set_xlim(max(-1.0, lo - 0.05), 1.0)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(
        f"Pair cosines ({pairs['n_sampled']} tracks; mean over all pairs {pairs['mean_pairwise_cosine']:.3f})"
    )
    ax.legend(fontsize=8)
    return _png(fig)


def _fig_hubness(hub: dict[str, Any], k: int) -> bytes:
    fig, ax = _figure(7, 3.2)
    counts = hub["counts"]
    ax.hist(counts, bins=np.arange(counts.max() + 2) - 0.5, color="#2ca02c")
    ax.axvline(k, color="black", linestyle="--", linewidth=1, label=f"mean = k = {k}")
    ax.set_xlabel(f"k-occurrence: how many top-{k} lists hold the track")
    ax.set_ylabel("tracks")
    ax.set_title(
        f"Hubness: skewness {hub['skewness']:.2f}, max {hub['max']}, {hub['n_antihubs']} never retrieved"
    )
    ax.legend(fontsize=8)
    return _png(fig)


def _fig_dims(dims: dict[str, Any]) -> bytes:
    fig, ax = _figure(7, 3.2)
    r = np.asarray(dims["explained_variance_ratio"])
    ax.plot(np.arange(1, r.size + 1), np.cumsum(r), marker=".", color="#9467bd")
    ax.axhline(0.9, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("principal components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_title(
        f"Dimensionality: {dims['dim']} dims, effective rank {dims['effective_rank']:.1f}, "
        f"90% of the variance in {dims['n_components_90']}",
        fontsize=10,
    )
    return _png(fig)


def _fig_clustering(c: dict[str, Any]) -> bytes:
    fig, ax = _figure(7, 3.4)
    keys = ("nmi", "ari", "silhouette_cosine")
    x = np.arange(len(keys))
    width = 0.8 / len(c["methods"])
    for j, m in enumerate(c["methods"]):
        name = m["name"]
        if m.get("n_fitted", c["n_tracks"]) < c["n_tracks"]:
            name += f" (fitted on a seeded {m['n_fitted']} of {c['n_tracks']})"
        elif m["n_tracks"] < c["n_tracks"]:
            name += f" (seeded sample of {m['n_tracks']})"
        ax.bar(x + (j - (len(c["methods"]) - 1) / 2) * width, [m[k] for k in keys], width, label=name)
    ax.hlines([EA.REFERENCE["nmi"]], -0.45, 0.45, colors="black", linestyles="--", label="S002 reference")
    ax.hlines([EA.REFERENCE["silhouette_cosine"]], 1.55, 2.45, colors="black", linestyles="--")
    ax.set_xticks(x, ["NMI", "ARI", "silhouette (cosine)"])
    ax.set_ylim(min(0.0, min(m["silhouette_cosine"] for m in c["methods"]) - 0.05), 1)
    sampled = (
        f"; silhouettes on a seeded {c['silhouette_points']} of {c['n_tracks']}"
        if c["silhouette_points"] < c["n_tracks"]
        else ""
    )
    ax.set_title(
        f"Clustering with k = {c['n_labels']} (silhouette of the true labels {c['silhouette_true_labels']:.3f}"
        f"{sampled})",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _png(fig)


def draw(inp: Inputs, a: Analysis, head: dict[str, Any]) -> dict[str, bytes]:
    """Every figure as PNG bytes, by file name."""
    k, label = int(inp.results["k"]), inp.params.label.replace("_id", "")
    figs: dict[str, bytes] = {}
    if head["overall"] is not None:
        figs["headline.png"] = _fig_headline(head)
    if a.per_label:
        figs["per_label.png"] = _fig_per_label(a.per_label, k, label)
    if len(a.confusion.index):
        figs["confusion.png"] = _fig_confusion(a.confusion, k)
    figs["map.png"] = _fig_map(inp, a)
    figs["cosines.png"] = _fig_cosines(a.pairs)
    figs["hubness.png"] = _fig_hubness(a.hub, k)
    figs["dimensionality.png"] = _fig_dims(a.dims)
    if a.clusters is not None:
        figs["clustering.png"] = _fig_clustering(a.clusters)
    return figs


# --- the page ---

_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
img{max-width:100%;height:auto}table{border-collapse:collapse;font-size:.85rem}
td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}th{background:#f4f4f4}
.lead{font-size:1.1rem;background:#f6f8fa;padding:.8rem;border-left:4px solid #1f77b4}"""


def _table(df: Any) -> str:
    return str(df.to_html(escape=True, border=0, float_format=lambda v: f"{v:.3f}"))


def render_html(
    report: dict[str, Any],
    figures: dict[str, bytes],
    clusters: dict[str, Any] | None,
    sections: list[RS.Section] | None = None,
) -> str:
    """The self-contained page: figures as ``data:`` URIs, tables from pandas (escaped), no script, no URL; the
    optional sections' HTML (their own figures inlined) after the clustering."""
    import pandas as pd

    e = html.escape
    k = report["headline"]["k"]

    def img(name: str, alt: str) -> str:
        if name not in figures:
            return ""
        data = base64.b64encode(figures[name]).decode("ascii")
        return f'<figure><img src="data:image/png;base64,{data}" alt="{e(alt)}"></figure>'

    head = report["headline"]
    rows = []
    for m in METRICS:
        for name, b in (
            ("all candidates", head["overall"]),
            ("same album excluded", head["exclude_same_album"]),
        ):
            if b is None:
                continue
            ci = b["ci"][m] if b["ci"] else None
            rows.append({"metric": METRIC_NAMES[m].format(k=k), "candidates": name, "value": b["metrics"][m],
                         "CI low": ci["low"] if ci else None, "CI high": ci["high"] if ci else None,
                         "random floor": b["random_baseline"][m]})  # fmt: skip
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Evaluation report: {e(report['artifact_version'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Evaluation report</h1><p>{e(report['artifact_version'])} &middot; model {e(report['model'])} &middot; "
        f"{report['n_tracks']} tracks &middot; {e(report['created_at'])}</p>",
        f'<h2>Headline</h2><p class="lead">{e(head["sentence"])}</p>',
        _table(pd.DataFrame(rows)) if rows else "",
        img("headline.png", "headline metrics with confidence intervals and random floor"),
        f"<h2>Per {e(report['label'].replace('_id', ''))}</h2>",
        img("per_label.png", "precision per label with confidence intervals"),
        "<h2>Who is mistaken for whom</h2>",
        img("confusion.png", "confusion matrix of top-k hits"),
        "<h2>Map of the catalogue</h2>",
        img("map.png", "two-dimensional map of the catalogue"),
        "<h2>Similarity structure</h2>",
        img("cosines.png", "cosine distributions of same-composer and other pairs"),
        img("hubness.png", "k-occurrence distribution"),
    ]
    hubs = report["hubness"]["top_hubs"]
    if hubs:
        parts += ["<h3>Top hubs</h3>", _table(pd.DataFrame(hubs))]
    parts.append(img("dimensionality.png", "explained variance curve"))
    c = report["clustering"]
    if c is not None:
        parts += [
            "<h2>Clustering</h2>",
            f"<p>k = {c['n_labels']} ({c['n_tracks']} labelled tracks); silhouette (cosine) of the true labels "
            f"{c['silhouette_true_labels']:.3f}; reference lines (S002): silhouette &gt; "
            f"{c['reference']['silhouette_cosine']}, NMI &gt; {c['reference']['nmi']}.</p>",
            _table(pd.DataFrame(c["methods"])),
            img("clustering.png", "clustering scores against the reference lines"),
        ]
    if clusters is not None:
        parts += [
            "<h3>Clusters (KMeans) named by their dominant composer</h3>",
            _table(
                pd.DataFrame([{k: v for k, v in c.items() if k != "top_tags"} for c in clusters["clusters"]])
            ),
        ]
    parts += [sec.html for sec in sections or []]
    parts.append(f"<p><small>code {e(report['code_version'])}</small></p></body></html>")
    return "\n".join(p for p in parts if p) + "\n"


# --- the whole ---


def build_report(layout: ArtifactLayout, opts: ReportOptions) -> Built:
    """Every output of the report, in memory.

    Raises:
        ArtifactError: see :func:`load_inputs`.
    """
    t0 = time.perf_counter()
    inp = load_inputs(layout)
    load_sec = time.perf_counter() - t0
    a = analyse(inp, opts)
    a.timings = {"load_sec": load_sec, **a.timings}
    av = artifact_version(layout, inp.model)
    t0 = time.perf_counter()
    figures = draw(inp, a, headline(inp.results))
    a.timings["figures_sec"] = time.perf_counter() - t0
    clusters = clusters_dict(inp, a, av)
    t0 = time.perf_counter()
    sections = optional_sections(layout, inp, opts, clusters)
    a.timings["sections_sec"] = time.perf_counter() - t0
    for sec in sections:
        figures.update(sec.figures)
    report = report_dict(inp, a, opts, figures, av, sections)
    return Built(report, clusters, figures, render_html(report, figures, clusters, sections))


def optional_sections(
    layout: ArtifactLayout, inp: Inputs, opts: ReportOptions, clusters: dict[str, Any] | None
) -> list[RS.Section]:
    """The sections made from other steps' artifacts, in page order (the tags also fill ``clusters``' top_tags).

    Raises:
        ArtifactError / SchemaValidationError: an input that exists but does not match its schema or sidecar.
    """
    return [
        RS.tags_section(layout, clusters, inp.all_ids),
        RS.comparison_section(
            opts.comparison, sha256_file(layout.tracks_csv), RS.own_label(inp.model, inp.postprocess)
        ),
        RS.index_section(layout, inp.embeddings_sha256),
        RS.head_section(layout, inp.model),
    ]


def write_report(layout: ArtifactLayout, built: Built) -> None:
    """Write the figures, clusters.json, report.json and the page (each atomically; the JSON validated)."""
    folder = layout.path("report_figures_dir")
    for name, data in built.figures.items():
        write_bytes(folder / name, data)
    for old in folder.glob("*.png"):  # a figure an earlier report drew and this one does not
        if old.name not in built.figures:
            old.unlink()
    if built.clusters is not None:
        schema.write_artifact(layout.path("clusters_json"), "clusters", built.clusters)
    elif layout.path("clusters_json").is_file():
        layout.path("clusters_json").unlink()  # a stale one would name clusters of other embeddings
    schema.write_artifact(layout.path("report_json"), "report", built.report)
    write_text(layout.path("report_html"), built.html)
