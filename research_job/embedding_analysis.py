"""What an embedding space looks like, as numbers: the report's analysis library (no figure, no file).

Each function takes unit vectors (row i is track i) and integer labels (-1: missing) and returns plain dicts and
arrays that :mod:`research_job.report` draws and writes. The metrics are scikit-learn's (NMI, ARI, silhouette,
KMeans, agglomerative clustering, PCA, t-SNE), umap-learn's UMAP and scipy's skewness; pandas builds the
confusion table. Heavy imports stay inside the functions so that importing this module costs nothing.

Scaling (N tracks, D dims): the pair statistics and the agglomerative clustering work on a seeded sample of at
most ``max_points`` tracks (O(s^2)); the map projects at most ``max_points`` tracks; KMeans, PCA and the
k-occurrence use every track. Every sample is recorded (``n_sampled``) and stated on its figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from research_job import metrics as M
from research_job import retrieval

#: S002's reference lines for a clustering that "works": silhouette (cosine) and NMI above these
REFERENCE = {"silhouette_cosine": 0.5, "nmi": 0.6}
MAP_METHODS = ("umap", "tsne")


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


def project_2d(unit: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D map of the rows: UMAP (cosine, seeded) or, when umap-learn is not importable or ``method`` is
    ``tsne``, scikit-learn's t-SNE (cosine, PCA init, seeded).

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
            reducer = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, n_jobs=1)
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
    return {
        "nmi": float(normalized_mutual_info_score(y, pred)),
        "ari": float(adjusted_rand_score(y, pred)),
        "silhouette_cosine": float(sil),
    }


def softmax_confidence(unit: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Confidence of each row's nearest centre: softmax over the negative squared distances to every centre,
    the distances divided by their mean to the nearest centre (so the figure does not depend on the scale)."""
    d2 = ((unit[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    t = float(d2.min(axis=1).mean()) or 1.0
    z = -(d2 - d2.min(axis=1, keepdims=True)) / t
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).max(axis=1)


def clustering(unit: np.ndarray, labels: np.ndarray, seed: int, max_points: int) -> dict[str, Any] | None:
    """KMeans (the evaluation's, :func:`research_job.retrieval.fit_kmeans`) and agglomerative clustering
    (average linkage, cosine; on a seeded sample of at most ``max_points`` labelled tracks) with k = number of
    labels, scored against the labels (NMI, ARI) and by their own silhouette (cosine); every track assigned to
    a KMeans cluster with :func:`softmax_confidence`. None when the labels define no clustering.

    Returns:
        ``{"n_tracks", "n_labels", "silhouette_true_labels", "methods": [...], "assignment", "confidence",
        "dominant"}``: assignment / confidence of every row; dominant[c] = (label, share) of cluster c.
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
    km = retrieval.fit_kmeans(xs, n_labels, seed)
    sample = None if xs.shape[0] <= max_points else max_points
    truth_sil = silhouette_score(xs, y, metric="cosine", sample_size=sample, random_state=seed)
    methods = [{"name": "kmeans", **_scores(xs, y, km.labels_, max_points, seed), "n_tracks": int(y.size)}]
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
    assignment[sel] = km.labels_
    dominant = []
    for c in range(n_labels):
        members = y[km.labels_ == c]
        top = np.bincount(members).argmax() if members.size else -1
        dominant.append((int(top), float((members == top).mean()) if members.size else 0.0))
    return {
        "n_tracks": int(y.size),
        "n_labels": int(n_labels),
        "silhouette_true_labels": float(truth_sil),
        "methods": methods,
        "assignment": assignment.astype(np.int64),
        "confidence": softmax_confidence(x, km.cluster_centers_),
        "dominant": dominant,
    }
