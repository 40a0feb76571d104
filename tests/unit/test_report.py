"""The report step on a small seeded version folder with a real evaluation (tests/helpers/artifact_factory.py):
files written and schema-valid, validate accepting them, the page self-contained, its numbers those of
eval_results.json and of scikit-learn / scipy / numpy computed here independently, a clear error without an
evaluation."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job import artifact_checks, schema
from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.embedding_analysis import project_2d
from research_job.errors import ArtifactError
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.steps import report
from research_job.steps.report import ReportConfig
from tests.helpers.artifact_factory import Corpus, make_version

N_COMPOSERS = 4


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, dict]:
    corpus = make_version(tmp_path_factory.mktemp("rep"), n=72, dim=12, n_composers=N_COMPOSERS, album_size=6)
    cfg = ReportConfig(common=CommonConfig(version_dir=corpus.layout.version_dir), map_method="tsne")
    return corpus, report.run(cfg)


def _labelled(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (float64) and composer labels of the tracks with a composer, in row order."""
    comp = [r["composer"] for r in corpus.rows]
    sel = np.array([c is not None for c in comp])
    names = sorted({c for c in comp if c is not None})
    y = np.array([names.index(c) for c in comp if c is not None])
    x = corpus.vectors[sel].astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def test_files_are_written_schema_valid_and_validate_accepts_the_folder(built: tuple[Corpus, dict]) -> None:
    corpus, rep = built
    lay = corpus.layout
    assert schema.read_artifact(lay.path("report_json"), "report") == rep
    schema.read_artifact(lay.path("clusters_json"), "clusters")
    figures = sorted(p.name for p in lay.path("report_figures_dir").glob("*.png"))
    assert figures == sorted(f["name"] for f in rep["figures"]) and "map.png" in figures
    assert rep["map"] == {"method": "tsne", "n_points": 72, "n_tracks": 72, "seed": 0}
    assert artifact_checks.check(lay) == []


def test_validate_refuses_an_edited_figure_and_a_folder_without_the_report_still_validates(
    built: tuple[Corpus, dict], tmp_path: Path
) -> None:
    src = built[0].layout.version_dir
    shutil.copytree(src, tmp_path / src.name)
    lay = ArtifactLayout(tmp_path / src.name)
    (lay.path("report_figures_dir") / "map.png").write_bytes(b"\x89PNG not the figure")
    assert any("map.png: sha256 differs" in p for p in artifact_checks.check(lay))
    for key in ("report_json", "report_html", "clusters_json"):
        lay.path(key).unlink()
    shutil.rmtree(lay.path("report_figures_dir"))
    assert artifact_checks.check(lay) == []


def test_the_page_is_one_self_contained_file(built: tuple[Corpus, dict]) -> None:
    corpus, rep = built
    page = corpus.layout.path("report_html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert len(imgs) == len(rep["figures"])
    folder = corpus.layout.path("report_figures_dir")
    inlined = []
    for tag in imgs:
        m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert m, tag[:80]
        inlined.append(base64.b64decode(m.group(1)))
    assert sorted(inlined) == sorted((folder / f["name"]).read_bytes() for f in rep["figures"])
    assert rep["headline"]["sentence"].split(";")[0].replace("(", "") in page.replace("(", "")


def test_headline_and_per_composer_means_are_eval_results(built: tuple[Corpus, dict]) -> None:
    corpus, rep = built
    ev = schema.read_artifact(corpus.layout.eval_results, "eval_results")
    head = rep["headline"]
    for which in ("overall", "exclude_same_album"):
        assert head[which]["metrics"] == ev[which]["metrics"]
        assert head[which]["random_baseline"] == ev[which]["random_baseline"]
        ci = ev[which]["confidence_intervals"]
        assert head[which]["ci"] == {m: ci[m] for m in head[which]["ci"]}
    p, floor = ev["overall"]["metrics"]["precision_at_k"], ev["overall"]["random_baseline"]["precision_at_k"]
    assert f"{p:.3f}" in head["sentence"] and f"{p / floor:.1f} times" in head["sentence"]
    assert [(r["label"], r["metrics"]["precision_at_k"]) for r in rep["per_label"]] == [
        (r["composer"], r["precision_at_k"]) for r in ev["per_composer"]
    ]
    for r in rep["per_label"]:  # a CI brackets its mean (all per-query values equal would give low == high)
        assert (
            r["ci"]["precision_at_k"]["low"]
            <= r["metrics"]["precision_at_k"]
            <= r["ci"]["precision_at_k"]["high"]
        )
    assert any(r["ci"]["precision_at_k"]["low"] < r["ci"]["precision_at_k"]["high"] for r in rep["per_label"])


def test_clustering_figures_equal_scikit_learn(built: tuple[Corpus, dict]) -> None:
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    corpus, rep = built
    x, y = _labelled(corpus)
    c = rep["clustering"]
    assert (c["n_tracks"], c["n_labels"]) == (y.size, N_COMPOSERS)
    assert c["silhouette_true_labels"] == pytest.approx(silhouette_score(x, y, metric="cosine"), abs=1e-9)
    ev = schema.read_artifact(corpus.layout.eval_results, "eval_results")["clustering"]
    assert c["silhouette_true_labels"] == pytest.approx(ev["silhouette_cosine"], abs=1e-9)
    km = KMeans(n_clusters=N_COMPOSERS, n_init=10, random_state=0).fit_predict(x)
    agg = AgglomerativeClustering(n_clusters=N_COMPOSERS, metric="cosine", linkage="average").fit_predict(x)
    methods = {m["name"]: m for m in c["methods"]}
    for name, pred in (("kmeans", km), ("agglomerative", agg)):
        m = methods[name]
        assert m["nmi"] == pytest.approx(normalized_mutual_info_score(y, pred), abs=1e-9)
        assert m["ari"] == pytest.approx(adjusted_rand_score(y, pred), abs=1e-9)
        assert m["silhouette_cosine"] == pytest.approx(silhouette_score(x, pred, metric="cosine"), abs=1e-9)
        assert m["meets_reference"] == (m["nmi"] > 0.6 and m["silhouette_cosine"] > 0.5)
    assert methods["kmeans"]["nmi"] == pytest.approx(ev["kmeans_nmi"], abs=1e-12)


def test_clusters_list_every_track_once_named_by_their_dominant_composer(built: tuple[Corpus, dict]) -> None:
    corpus, _ = built
    cl = schema.read_artifact(corpus.layout.path("clusters_json"), "clusters")
    assert [t["track_id"] for t in cl["tracks"]] == corpus.track_ids
    assert all(1 / cl["k"] <= t["confidence"] <= 1 for t in cl["tracks"])
    composer = {r.track_id: r.composer for r in read_tracks_csv(corpus.layout.tracks_csv)}
    for c in cl["clusters"]:
        members = [composer[t["track_id"]] for t in cl["tracks"] if t["cluster"] == c["cluster"]]
        known = [m for m in members if m is not None]
        top = max(sorted(set(known)), key=known.count)
        assert known.count(c["name"]) == known.count(top) and c["n_tracks"] == len(members)
        assert c["dominant_share"] == pytest.approx(known.count(top) / len(known))


def test_hubness_dimensionality_and_confusion_match_an_independent_computation(
    built: tuple[Corpus, dict],
) -> None:
    from scipy.stats import skew

    corpus, rep = built
    x = corpus.vectors.astype(np.float64)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    top = np.argsort(-s, axis=1, kind="stable")[:, :5]
    occ = np.bincount(top.ravel(), minlength=len(x))
    h = rep["hubness"]
    assert (h["max_k_occurrence"], h["n_antihubs"]) == (occ.max(), (occ == 0).sum())
    assert h["skewness"] == pytest.approx(skew(occ), abs=1e-9)
    assert h["top_hubs"][0]["k_occurrence"] == occ.max()
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = sv / sv.sum()
    assert rep["dimensionality"]["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    ratio = sv**2 / (sv**2).sum()
    assert rep["dimensionality"]["explained_variance_ratio"] == pytest.approx(ratio[:12].tolist(), abs=1e-9)
    comp = [r["composer"] for r in corpus.rows]
    hits = sum(1 for q in range(len(x)) for j in top[q] if comp[q] is not None and comp[j] is not None)
    same = sum(1 for q in range(len(x)) for j in top[q] if comp[q] is not None and comp[j] == comp[q])
    counts = np.array(rep["confusion"]["counts"])
    assert (counts.sum(), np.trace(counts)) == (hits, same)


def test_a_folder_without_an_evaluation_names_the_file_and_the_step(tmp_path: Path) -> None:
    corpus = make_version(tmp_path, n=20, dim=4, n_composers=2, with_eval=False)
    vd = corpus.layout.version_dir
    with pytest.raises(ArtifactError, match=r"eval_results\.json.*research-job evaluate"):
        report.run(ReportConfig(common=CommonConfig(version_dir=vd), map_method="tsne"))
    res = CliRunner().invoke(cli, ["report", "--version-dir", str(vd), "--map-method", "tsne"])
    assert res.exit_code == 2 and "eval_results.json" in res.output and "research-job evaluate" in res.output
    assert not corpus.layout.path("report_json").exists()
    res = CliRunner().invoke(cli, ["report", "--version-dir", str(vd), "--map-method", "pca"])
    assert res.exit_code != 0 and "umap" in res.output and "tsne" in res.output


def test_without_umap_learn_the_map_is_t_sne(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    x = np.random.default_rng(0).standard_normal((30, 6))
    coords, method = project_2d(x / np.linalg.norm(x, axis=1, keepdims=True), "umap", seed=0)
    assert method == "tsne" and coords.shape == (30, 2) and np.isfinite(coords).all()
    assert json.dumps(coords.tolist()) == json.dumps(
        project_2d(x / np.linalg.norm(x, axis=1, keepdims=True), "tsne", 0)[0].tolist()
    )
