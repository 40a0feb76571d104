"""What an embedding space looks like, as numbers: the report's analysis library (no figure, no file).

Each function takes unit vectors (row i is track i) and integer labels (-1: missing) and returns plain dicts and
arrays that :mod:`research_job.report` draws and writes. The metrics are scikit-learn's (NMI, ARI, silhouette,
KMeans, agglomerative clustering, PCA, t-SNE), umap-learn's UMAP and scipy's skewness; pandas builds the
confusion table. Heavy imports stay inside the functions so that importing this module costs nothing.

Scaling (N tracks, D dims): the pair statistics, the silhouettes and the agglomerative clustering work on a
seeded sample of at most ``max_points`` tracks (O(s^2)); the map projects at most ``max_points`` tracks (UMAP
from their exact cosine neighbours, so pynndescent's approximate search, and its numba compilation, is skipped);
KMeans is fitted on a seeded sample of at most ``fit_points`` labelled tracks (evaluate fits all; at or below it
both are the same fit) and assigns every track; PCA and the k-occurrence use every track. Every sample is
recorded (``n_sampled``, ``n_points``, ``n_tracks``, ``n_fitted``) and stated on its figure.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from research_job import metrics as M
from research_job import retrieval

#: S002's reference lines for a clustering that "works": silhouette (cosine) and NMI above these
REFERENCE = {"silhouette_cosine": 0.5, "nmi": 0.6}
MAP_METHODS = ("umap", "tsne")
#: UMAP's neighbourhood size (umap-learn's default)
UMAP_NEIGHBORS = 15
#: labelled tracks KMeans is fitted on at most (above: a seeded sample; 20k fit in a few seconds on 2 cores)
KMEANS_FIT_POINTS = 20000
#: a cluster's tag must be this much more probable than over the catalogue to describe it (the demo's clusters
#: of quartets lead with violin +0.3 to +0.5; below 0.05 the differences are rock / pop / country on chorales)
MIN_LIFT = 0.05


def sample_rows(n: int, max_points: int, seed: int) -> np.ndarray:
    """Sorted rows of a seeded sample of at most ``max_points`` of ``n`` rows (all rows when n fits)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def per_label_ci(
    values: np.ndarray, query_labels: np.ndarray, names: Sequence[str], resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Bootstrap CI (:func:`research_job.metrics.bootstrap_ci`) of each label's per-query metric means.

    Args:
        values: [Q, 4] per-query metrics of the scored queries; query_labels: their labels (0 .. len(names)-1).

    Returns:
        label name -> ``{"n_queries", "means", "ci"}`` for every label with a scored query.
    """
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(names):
        sel = query_labels == c
        if sel.any():
            out[name] = {
                "n_queries": int(sel.sum()),
                "means": M.means(values[sel]),
                "ci": M.bootstrap_ci(values[sel], n_resamples=resamples, seed=seed),
            }
    return out


def confusion(rows: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> Any:
    """Composer x composer counts of top-k hits: row = the query's label, column = the hit's label (pandas).

    Args:
        rows: int [N, k] top-k rows of every track (-1 pads); labels: int [N] (-1: missing, such queries and
            hits left out).
    """
    import pandas as pd

    q = np.repeat(np.arange(rows.shape[0]), rows.shape[1])
    h = rows.reshape(-1)
    keep = (h >= 0) & (labels[q] >= 0)
    keep[keep] &= labels[h[keep]] >= 0
    named = np.asarray(list(names), dtype=object)
    order = sorted(names)
    query = pd.Categorical(named[labels[q[keep]]], categories=order)
    hit = pd.Categorical(named[labels[h[keep]]], categories=order)
    return pd.crosstab(query, hit, rownames=["query"], colnames=["hit"], dropna=False)


def pair_cosines(unit: np.ndarray, labels: np.ndarray, max_points: int, seed: int) -> dict[str, Any]:
    """Cosine similarities of every pair of a seeded sample, split into same-label and other pairs.

    Returns:
        ``{"n_sampled", "same", "other"}`` (float64 arrays; pairs with a missing label are in ``other`` only
        when both labels are known and differ, and in neither otherwise) and ``mean_pairwise_cosine`` over
        every pair of the sample (the anisotropy: near 0 for a space that uses its directions, near 1 for a cone).
    """
    rows = sample_rows(unit.shape[0], max_points, seed)
    x = np.asarray(unit[rows], dtype=np.float64)
    lab = labels[rows]
    s = x @ x.T
    iu = np.triu_indices(rows.size, k=1)
    sim = s[iu]
    a, b = lab[iu[0]], lab[iu[1]]
    known = (a >= 0) & (b >= 0)
    return {
        "n_sampled": int(rows.size),
        "same": sim[known & (a == b)],
        "other": sim[known & (a != b)],
        "mean_pairwise_cosine": float(sim.mean()) if sim.size else 0.0,
    }


def k_occurrence(rows: np.ndarray, n: int) -> np.ndarray:
    """How often each track appears in the other tracks' top-k lists (N_k; its skew is the hubness)."""
    flat = rows.reshape(-1)
    return np.bincount(flat[flat >= 0], minlength=n)


def hubness(rows: np.ndarray, n: int) -> dict[str, Any]:
    """k-occurrence counts and their skewness (scipy; > 1 is usually read as strong hubness)."""
    from scipy.stats import skew

    counts = k_occurrence(rows, n)
    return {
        "counts": counts,
        "skewness": float(skew(counts)) if counts.size > 2 and counts.std() > 0 else 0.0,
        "max": int(counts.max()) if counts.size else 0,
        "n_antihubs": int((counts == 0).sum()),
    }


def dimensionality(unit: np.ndarray, max_components: int = 64) -> dict[str, Any]:
    """PCA (scikit-learn) of the vectors: explained-variance ratios, components for 90 % / 99 % of the variance,
    and the effective rank (Roy & Vetterli 2007: exp of the entropy of the normalised singular values)."""
    from sklearn.decomposition import PCA

    x = np.asarray(unit, dtype=np.float64)
    pca = PCA(svd_solver="full").fit(x)
    ratio = pca.explained_variance_ratio_
    cum = np.cumsum(ratio)
    sv = pca.singular_values_
    p = sv[sv > 0] / sv[sv > 0].sum()
    return {
        "dim": int(x.shape[1]),
        "explained_variance_ratio": [float(v) for v in ratio[:max_components]],
        "n_components_90": int(np.searchsorted(cum, 0.90) + 1),
        "n_components_99": int(np.searchsorted(cum, 0.99) + 1),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0,
    }


def exact_neighbors(unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k nearest neighbours of every row among the rows, itself included (scikit-learn, brute force):
    (int [n, k] rows, float [n, k] cosine distances), nearest first, as umap-learn's ``precomputed_knn`` wants."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(unit, dtype=np.float32)
    dist, rows = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    return rows.astype(np.int64), np.clip(dist, 0.0, None).astype(np.float32)


def project_2d(unit: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D map of the rows: UMAP (cosine, seeded, from the rows' exact neighbours :func:`exact_neighbors`) or,
    when umap-learn is not importable or ``method`` is ``tsne``, scikit-learn's t-SNE (cosine, PCA init, seeded).

    Returns:
        (float [n, 2] coordinates, the method used: ``umap`` or ``tsne``).
    """
    n = unit.shape[0]
    if n < 4:
        return np.zeros((n, 2)), method
    if method == "umap":
        try:
            import umap
        except ImportError:
            method = "tsne"
        else:
            k = min(UMAP_NEIGHBORS, n - 1)
            knn = (*exact_neighbors(unit, k), None)
            reducer = umap.UMAP(
                n_neighbors=k, metric="cosine", random_state=seed, n_jobs=1, precomputed_knn=knn
            )
            with (
                warnings.catch_warnings()
            ):  # "no search index: transform() unavailable", which the map never calls
                warnings.simplefilter("ignore", UserWarning)
                return np.asarray(reducer.fit_transform(unit), dtype=np.float64), "umap"
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity, random_state=seed)
    return np.asarray(tsne.fit_transform(np.asarray(unit, dtype=np.float64)), dtype=np.float64), "tsne"


def _scores(x: np.ndarray, y: np.ndarray, pred: np.ndarray, max_points: int, seed: int) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    n_pred = len(np.unique(pred))
    sample = None if x.shape[0] <= max_points else max_points
    sil = (
        silhouette_score(x, pred, metric="cosine", sample_size=sample, random_state=seed)
        if 1 < n_pred < x.shape[0]
        else 0.0
    )
    # scikit-learn's NMI of a perfect clustering can come out a rounding error above 1 (1.0000000000000002)
    return {
        "nmi": float(np.clip(normalized_mutual_info_score(y, pred), 0.0, 1.0)),
        "ari": float(np.clip(adjusted_rand_score(y, pred), -1.0, 1.0)),
        "silhouette_cosine": float(np.clip(sil, -1.0, 1.0)),
    }


def softmax_confidence(unit: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Confidence of each row's nearest centre: softmax over the negative squared distances to every centre,
    the distances divided by their mean to the nearest centre (so the figure does not depend on the scale)."""
    from sklearn.metrics.pairwise import euclidean_distances

    d2 = euclidean_distances(unit, centres, squared=True)
    t = float(d2.min(axis=1).mean()) or 1.0
    z = -(d2 - d2.min(axis=1, keepdims=True)) / t
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).max(axis=1)


def clustering(
    unit: np.ndarray, labels: np.ndarray, seed: int, max_points: int, fit_points: int = KMEANS_FIT_POINTS
) -> dict[str, Any] | None:
    """KMeans (the evaluation's, :func:`research_job.retrieval.fit_kmeans`, fitted on a seeded sample of at most
    ``fit_points`` labelled tracks) and agglomerative clustering (average linkage, cosine; on a seeded sample of
    at most ``max_points`` labelled tracks) with k = number of labels, scored against the labels (NMI, ARI, over
    every labelled track for KMeans) and by their own silhouette (cosine, on at most ``max_points``); every track
    assigned to its nearest KMeans centre with :func:`softmax_confidence`. None when the labels define no
    clustering.

    Returns:
        ``{"n_tracks", "n_labels", "silhouette_true_labels", "silhouette_points", "methods": [...],
        "assignment", "confidence", "centres", "dominant"}``: assignment / confidence of every row; dominant[c] = (label, share) of
        cluster c.
    """
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    found = retrieval.labelled(labels)
    if found is None:
        return None
    sel, y, n_labels = found
    x = np.asarray(unit, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    xs = x[sel]
    fitted = sample_rows(xs.shape[0], fit_points, seed)
    km = retrieval.fit_kmeans(xs[fitted], n_labels, seed)
    # every labelled track fitted: evaluate's fit, and its labels (predict need not repeat them exactly)
    pred = km.labels_ if fitted.size == xs.shape[0] else km.predict(xs)
    sample = None if xs.shape[0] <= max_points else max_points
    truth_sil = silhouette_score(xs, y, metric="cosine", sample_size=sample, random_state=seed)
    methods = [
        {"name": "kmeans", **_scores(xs, y, pred, max_points, seed), "n_tracks": int(y.size),
         "n_fitted": int(fitted.size)}
    ]  # fmt: skip
    rows = sample_rows(xs.shape[0], max_points, seed)
    agg = AgglomerativeClustering(n_clusters=n_labels, metric="cosine", linkage="average").fit_predict(
        xs[rows]
    )
    methods.append(
        {
            "name": "agglomerative",
            **_scores(xs[rows], y[rows], agg, max_points, seed),
            "n_tracks": int(rows.size),
        }
    )
    assignment = km.predict(x)
    assignment[sel] = pred
    dominant = []
    for c in range(n_labels):
        members = y[pred == c]
        top = np.bincount(members).argmax() if members.size else -1
        dominant.append((int(top), float((members == top).mean()) if members.size else 0.0))
    return {
        "n_tracks": int(y.size),
        "n_labels": int(n_labels),
        "silhouette_true_labels": float(truth_sil),
        "silhouette_points": int(min(y.size, max_points)),
        "methods": methods,
        "assignment": assignment.astype(np.int64),
        "confidence": softmax_confidence(x, km.cluster_centers_),
        "centres": np.asarray(km.cluster_centers_, dtype=np.float64),
        "dominant": dominant,
    }


def cluster_tags(
    tags: np.ndarray,
    assignment: np.ndarray,
    k: int,
    names: Sequence[str],
    top: int = 5,
    min_lift: float = MIN_LIFT,
) -> list[list[dict[str, Any]]]:
    """The tags each cluster scores most above the catalogue.

    Args:
        tags: float [N, T] track-level tag probabilities; assignment: int [N] cluster of each track (0 .. k-1);
            names: the T tag names.

    Returns:
        per cluster, at most ``top`` ``{"tag", "score", "catalogue_mean"}`` (score: the mean over the cluster's
        tracks), the tags with the largest ``score - catalogue_mean`` first, only tags at least ``min_lift`` above
        the catalogue mean (ties by column); an empty list for an empty cluster or one without such a tag.
    """
    x = np.asarray(tags, dtype=np.float64)
    base = x.mean(axis=0)
    counts = np.bincount(assignment, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, assignment, x)
    out: list[list[dict[str, Any]]] = []
    for c in range(k):
        if counts[c] == 0:
            out.append([])
            continue
        mean = sums[c] / counts[c]
        diff = mean - base
        order = [j for j in np.argsort(-diff, kind="stable")[:top] if diff[j] >= min_lift]
        out.append(
            [{"tag": str(names[j]), "score": float(mean[j]), "catalogue_mean": float(base[j])} for j in order]
        )
    return out
