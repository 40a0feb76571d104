"""Clustering quality in eval_results.json: silhouette (cosine) of the true labels and NMI / ARI of a seeded
clustering with k = number of labels, from vectors (KMeans) or from a distance matrix (Musly; agglomerative)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research_job import retrieval
from research_job.config import CommonConfig
from research_job.steps import evaluate
from research_job.steps.evaluate import EvaluateConfig
from tests.unit._core_corpus import row, write_csv, write_embeddings


def _blobs(spread: float, n_per: int = 8, n_labels: int = 3, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_labels] * 4.0
    x = np.concatenate([c + spread * rng.standard_normal((n_per, dim)) for c in centres])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(
        np.arange(n_labels), n_per
    )


def test_separated_labels_cluster_perfectly_and_noise_does_not() -> None:
    x, y = _blobs(0.1)
    good = retrieval.clustering_scores(x, y, seed=0)
    assert (
        good is not None
        and good["kmeans_nmi"] == pytest.approx(1.0)
        and good["kmeans_ari"] == pytest.approx(1.0)
    )
    assert good["silhouette_cosine"] > 0.8 and (good["n_tracks"], good["n_labels"]) == (24, 3)
    shuffled = np.random.default_rng(1).permutation(y)
    bad = retrieval.clustering_scores(x, shuffled, seed=0)
    assert bad is not None and bad["kmeans_nmi"] < 0.3 and bad["silhouette_cosine"] < 0.1


def test_distances_give_the_vectors_silhouette_and_the_same_partition() -> None:
    x, y = _blobs(0.3)
    dist = 1.0 - x.astype(np.float64) @ x.T.astype(np.float64)  # cosine distance of unit vectors
    from_vectors = retrieval.clustering_scores(x, y, seed=0)
    from_matrix = retrieval.clustering_from_distances(dist, y, seed=0)
    assert from_vectors is not None and from_matrix is not None
    assert from_matrix["silhouette_cosine"] == pytest.approx(from_vectors["silhouette_cosine"], abs=1e-5)
    assert from_matrix["kmeans_nmi"] == pytest.approx(1.0)


def test_unlabelled_tracks_are_left_out_and_degenerate_labelings_give_none() -> None:
    x, y = _blobs(0.1)
    y = y.copy()
    y[:4] = -1  # composer missing
    assert retrieval.clustering_scores(x, y, seed=0)["n_tracks"] == 20
    assert retrieval.clustering_scores(x, np.zeros(24, int), seed=0) is None  # one label
    assert retrieval.clustering_scores(x, np.arange(24), seed=0) is None  # a label per track
    assert retrieval.clustering_from_distances(np.zeros((24, 24)), np.zeros(24, int), seed=0) is None


def test_evaluate_writes_the_clustering_beside_the_retrieval_metrics(tmp_path: Path) -> None:
    x, y = _blobs(0.1)
    rows = [row(f"t{i}", f"al{i}", f"C{label}") for i, label in enumerate(y)]
    common = CommonConfig(artifacts_root=tmp_path, version_dir=tmp_path / "v1_model_test")
    write_csv(common.layout, rows)
    write_embeddings(common.layout, x, [r["track_id"] for r in rows])
    res = evaluate.run(EvaluateConfig(common=common, k=2, bootstrap_resamples=50, n_samples=3))
    assert res["clustering"]["kmeans_nmi"] == pytest.approx(1.0)
    assert res["clustering"] == retrieval.clustering_scores(x, y, seed=0) | {
        "method": res["clustering"]["method"]
    }
