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
from collections.abc import Sequence
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


# --- the sections of other steps' artifacts: index, model comparison, trained head, cluster tags ---

MSD_LIKE = ["rock", "pop", "jazz"]
MTT_LIKE = ["strings", "choir", "piano", "harpsichord", "slow", "fast"]


def _tag_scores(corpus: Corpus) -> np.ndarray:
    """Seeded per-track tag probabilities: each composer raises a tag of its own, the rest is noise."""
    rng = np.random.default_rng(5)
    comp = [r["composer"] for r in corpus.rows]
    x = rng.uniform(0.0, 0.3, (len(comp), len(MSD_LIKE) + len(MTT_LIKE)))
    for i, c in enumerate(comp):
        if c is not None:
            x[i, len(MSD_LIKE) + int(str(c).split()[-1]) % len(MTT_LIKE)] += 0.6
    return x.astype(np.float32)


def _comparison(lay: ArtifactLayout, label: str, metadata_sha256: str | None = None) -> dict:
    """A schema-valid comparison.json of the folder's corpus: this version's row, a baseline and the floor."""
    from research_job.provenance import sha256_file

    def cell(v: float) -> dict:
        return {"value": v, "random": 0.1, "ci_low": v - 0.05, "ci_high": v + 0.04}

    rows = []
    for rank, (lab, role, p) in enumerate(
        ((label, "candidate", 0.7), ("dsp-stats", "dsp_baseline", 0.4), ("random", "random_floor", 0.1)), 1
    ):
        rows.append(
            {"rank": rank, "label": lab, "model": lab, "postprocess": "none", "role": role, "status": "ok",
             "error": None, "version_dir": f"v1_model_{lab}", "model_info": None, "dim": 12, "n_embedded": 72,
             "n_failed_tracks": 0, "n_queries": 68, "metrics": {m: cell(p) for m in METRIC_KEYS},
             "exclude_same_album": {"n_queries": 68, "precision_at_k": cell(p / 2)}, "sec_per_track": 0.01,
             "x_realtime": 40.0, "peak_memory_bytes": 2**28, "embed_sec": 1.0, "evaluate_sec": 0.5,
             "wall_sec": 2.0, "embeddings_reused": False}
        )  # fmt: skip
    return {"schema_version": "1.0", "k": 5, "relevance": "same_standardized_composer", "source_version_dir": "x",
            "metadata_sha256": metadata_sha256 or sha256_file(lay.tracks_csv), "n_tracks": 72,
            "bootstrap_resamples": 100, "seed": 0, "device": "cpu", "reuse_embeddings": False,
            "peak_memory_method": "tracemalloc", "n_entries": 3, "n_failed": 0, "rows": rows, "wall_sec": 6.0,
            "created_at": "2026-12-02T04:00:00Z", "code_version": "0.1.0"}  # fmt: skip


METRIC_KEYS = ("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr")


HEAD_MODEL = "fake-model+head:tiny"


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, dict]:
    """A head version folder (its model a head's) with a real build-index (recall measured, neighbour table),
    two tag blocks, the head's files and a comparison.json at compare-models' default place; then the report
    with its defaults."""
    from research_job.steps import build_index
    from research_job.tags import write_tags

    root = tmp_path_factory.mktemp("ext")
    corpus = make_version(root, model=HEAD_MODEL, n=72, dim=12, n_composers=N_COMPOSERS, album_size=6)
    lay = corpus.layout
    common = CommonConfig(artifacts_root=root, version_dir=lay.version_dir)
    build_index.run(build_index.BuildIndexConfig(common=common, neighbors_k=10))
    blocks = [
        {"model": "fake-msd", "vocabulary": "Million Song Dataset (last.fm tags)", "tags": MSD_LIKE},
        {"model": "fake-mtt", "vocabulary": "MagnaTagATune", "tags": MTT_LIKE},
    ]
    model = {"name": HEAD_MODEL, "version": "1", "weights_sha256": None}
    write_tags(lay, corpus.track_ids, _tag_scores(corpus), model=model, blocks=blocks)
    examples = schema.SCHEMA_DIR / "examples" / "valid"
    head_meta = json.loads((examples / "head_meta.json").read_text())
    schema.write_artifact(lay.head_meta, "head_meta", {**head_meta, "model_name": HEAD_MODEL})
    curves = json.loads((examples / "head_curves.json").read_text())
    schema.write_artifact(lay.head_curves_json, "head_curves", curves)
    schema.write_artifact(
        root / "comparison" / "comparison.json", "model_comparison", _comparison(lay, HEAD_MODEL)
    )
    return corpus, report.run(ReportConfig(common=common, map_method="tsne"))


def test_the_sections_are_written_schema_valid_with_their_figures(extended: tuple[Corpus, dict]) -> None:
    corpus, rep = extended
    lay = corpus.layout
    assert schema.read_artifact(lay.path("report_json"), "report") == rep
    assert {key: "skipped" in rep[key] for key in ("tags", "comparison", "index", "head")} == dict.fromkeys(
        ("tags", "comparison", "index", "head"), False
    )
    names = {f["name"] for f in rep["figures"]}
    assert {"tags.png", "comparison.png", "index.png", "head_curves.png"} <= names
    page = lay.path("report_html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img\b", page)) == len(rep["figures"]) and "<script" not in page.lower()
    for title in ("Tags of the clusters", "Model comparison", "Index", "Trained head"):
        assert f"<h2>{title}</h2>" in page
    # validate accepts the report, clusters.json and the tag files (the head files here are no trained head's)
    assert [p for p in artifact_checks.check(lay) if "/head/" not in p and "head_meta" not in p] == []


def test_index_section_is_index_meta_and_its_recall_is_hnswlibs(extended: tuple[Corpus, dict]) -> None:
    import hnswlib

    corpus, rep = extended
    meta = schema.read_artifact(corpus.layout.index_meta, "index_meta")
    ix = rep["index"]
    assert [
        (r["name"], r["recall_at_5"], r["build_sec"], r["size_bytes"], r["ef_search"]) for r in ix["indexes"]
    ] == [
        (e["name"], e["recall_at_5"], e["build_sec"], e["size_bytes"], e["params"].get("ef_search"))
        for e in meta["indexes"]
    ]
    assert ix["neighbors"]["k"] == 10 and ix["recall_ladder"] is None and "one point per index" in ix["note"]
    # the recorded recall of hnswlib at its ef_search, recomputed with hnswlib against exact numpy search
    row = next(r for r in ix["indexes"] if r["name"] == "hnswlib")
    x = corpus.vectors
    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.load_index(str(corpus.layout.hnsw_index))
    index.set_ef(row["ef_search"])
    found, _ = index.knn_query(x, k=11)
    s = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(s, -np.inf)
    exact = np.argsort(-s, axis=1, kind="stable")[:, :5]
    ann = [[j for j in f if j != i][:5] for i, f in enumerate(found)]
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(ann, exact, strict=True)])
    assert row["recall_at_5"] == pytest.approx(recall, abs=1e-9)


def test_comparison_section_copies_comparison_json_and_marks_this_version(
    extended: tuple[Corpus, dict],
) -> None:
    corpus, rep = extended
    src = schema.read_artifact(
        corpus.layout.version_dir.parent / "comparison" / "comparison.json", "model_comparison"
    )
    c = rep["comparison"]
    assert c["this_version"] == HEAD_MODEL and [r["this_version"] for r in c["rows"]] == [
        True,
        False,
        False,
    ]
    assert [(r["label"], r["metrics"]["precision_at_k"]) for r in c["rows"]] == [
        (r["label"], r["metrics"]["precision_at_k"]) for r in src["rows"]
    ]
    page = corpus.layout.path("report_html").read_text(encoding="utf-8")
    assert "0.700 [0.650, 0.740] (0.100)" in page and f"{HEAD_MODEL} (this version)" in page


def test_head_section_is_head_meta_and_its_curves(extended: tuple[Corpus, dict]) -> None:
    corpus, rep = extended
    meta = schema.read_artifact(corpus.layout.head_meta, "head_meta")
    h = rep["head"]
    assert (h["metric"], h["frozen"], h["head"], h["best_epoch"]) == (
        meta["metrics"]["name"],
        meta["metrics"]["frozen"],
        meta["metrics"]["best"],
        meta["metrics"]["best_epoch"],
    )
    assert h["difference"] == pytest.approx(meta["metrics"]["best"] - meta["metrics"]["frozen"])
    assert h["split"] == {"by": meta["split"]["by"], **meta["split"]["counts"]}


def test_cluster_tags_are_the_mtt_block_and_equal_a_pandas_groupby(extended: tuple[Corpus, dict]) -> None:
    import pandas as pd

    corpus, rep = extended
    cl = schema.read_artifact(corpus.layout.path("clusters_json"), "clusters")
    assert (rep["tags"]["model"], rep["tags"]["vocabulary"]) == ("fake-mtt", "MagnaTagATune")  # preferred
    scores = pd.DataFrame(_tag_scores(corpus)[:, len(MSD_LIKE) :].astype(np.float64), columns=MTT_LIKE)
    scores["cluster"] = [t["cluster"] for t in cl["tracks"]]  # clusters.json lists the tracks in row order
    means = scores.groupby("cluster").mean()
    base = scores[MTT_LIKE].mean()
    for c in cl["clusters"]:
        diff = (means.loc[c["cluster"]] - base).sort_values(ascending=False, kind="stable")
        want = [(t, means.loc[c["cluster"], t]) for t in diff.index[:5] if diff[t] >= 0.05]
        assert [t["tag"] for t in c["top_tags"]] == [t for t, _ in want]
        assert [t["score"] for t in c["top_tags"]] == pytest.approx([v for _, v in want], abs=1e-7)
    # each composer raised one tag: the cluster named by a composer leads with that composer's tag
    for c in cl["clusters"]:
        if c["dominant_share"] > 0.9:
            assert c["top_tags"][0]["tag"] == MTT_LIKE[int(c["name"].split()[-1]) % len(MTT_LIKE)]


def test_sections_without_their_inputs_are_skipped_with_the_reason(
    extended: tuple[Corpus, dict], tmp_path: Path
) -> None:
    from research_job.provenance import sha256_bytes

    src = extended[0].layout.version_dir
    shutil.copytree(src, tmp_path / src.name)
    lay = ArtifactLayout(tmp_path / src.name)
    for key in ("tags_meta", "tags_f32", "head_curves_json"):
        lay.path(key).unlink()
    meta = json.loads(lay.index_meta.read_text())
    meta["embeddings_sha256"] = sha256_bytes(b"other embeddings")
    lay.index_meta.write_text(json.dumps(meta))
    other = tmp_path / "other.json"
    schema.write_artifact(
        other, "model_comparison", _comparison(lay, "fake-model", sha256_bytes(b"other csv"))
    )
    rep = report.run(ReportConfig(common=CommonConfig(version_dir=lay.version_dir), map_method="tsne",
                                  comparison=str(other)))  # fmt: skip
    assert "tags.json" in rep["tags"]["skipped"] and "musicnn" in rep["tags"]["skipped"]
    assert "another corpus" in rep["comparison"]["skipped"]
    assert "other embeddings" in rep["index"]["skipped"] and "build-index" in rep["index"]["skipped"]
    assert "curves.json is missing" in rep["head"]["skipped"]
    assert not {"tags.png", "comparison.png", "index.png", "head_curves.png"} & {
        f["name"] for f in rep["figures"]
    }
    cl = schema.read_artifact(lay.path("clusters_json"), "clusters")
    assert all("top_tags" not in c for c in cl["clusters"])
    page = lay.path("report_html").read_text(encoding="utf-8")
    assert page.count("<p>Skipped: ") == 4
    assert not (lay.path("report_figures_dir") / "tags.png").exists()  # the earlier report's figure is gone


def test_comparison_option_none_a_missing_path_and_the_default_place(
    extended: tuple[Corpus, dict], tmp_path: Path
) -> None:
    lay = extended[0].layout
    vd, root = str(lay.version_dir), str(lay.version_dir.parent)
    base = ["report", "--version-dir", vd, "--map-method", "tsne", "--artifacts-root"]
    res = CliRunner().invoke(cli, [*base, root, "--comparison", str(tmp_path / "nope.json")])
    assert res.exit_code == 2 and "nope.json" in res.output and "'none'" in res.output
    res = CliRunner().invoke(cli, [*base, root, "--comparison", "none"])
    assert res.exit_code == 0, res.output
    assert "comparison" in schema.read_artifact(lay.path("report_json"), "report")["comparison"]["skipped"]
    res = CliRunner().invoke(cli, [*base, str(tmp_path)])  # no comparison/comparison.json under this root
    assert (
        res.exit_code == 0
        and "skipped" in schema.read_artifact(lay.path("report_json"), "report")["comparison"]
    )
    res = CliRunner().invoke(cli, [*base, root])  # compare-models' default place
    assert (
        res.exit_code == 0 and "rows" in schema.read_artifact(lay.path("report_json"), "report")["comparison"]
    )


# --- sampling at scale: KMeans on a sample, the map from exact neighbours, the confidence by matrix products ---


def test_kmeans_fitted_on_a_sample_assigns_every_track_as_scikit_learn_does(
    built: tuple[Corpus, dict],
) -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from research_job import embedding_analysis as EA
    from research_job.retrieval import label_ids

    corpus, _ = built
    labels, _ = label_ids([r["composer"] for r in corpus.rows])
    c = EA.clustering(corpus.vectors, labels, seed=0, max_points=5000, fit_points=30)
    assert c is not None
    x, y = _labelled(corpus)
    fitted = EA.sample_rows(y.size, 30, 0)
    km = KMeans(n_clusters=N_COMPOSERS, n_init=10, random_state=0).fit(x[fitted])
    kmeans = c["methods"][0]
    assert (kmeans["n_fitted"], kmeans["n_tracks"]) == (30, y.size)
    assert kmeans["nmi"] == pytest.approx(normalized_mutual_info_score(y, km.predict(x)), abs=1e-12)
    full = np.asarray(corpus.vectors, np.float64)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_array_equal(c["assignment"], km.predict(full))
    d2 = ((full[:, None, :] - km.cluster_centers_[None]) ** 2).sum(axis=2)  # the broadcast it replaces
    z = np.exp(-(d2 - d2.min(axis=1, keepdims=True)) / d2.min(axis=1).mean())
    np.testing.assert_allclose(c["confidence"], (z / z.sum(axis=1, keepdims=True)).max(axis=1), rtol=1e-9)


def test_exact_neighbors_for_the_map_are_numpys_top_k(built: tuple[Corpus, dict]) -> None:
    from research_job.embedding_analysis import exact_neighbors

    x = built[0].vectors
    rows, dist = exact_neighbors(x, 6)
    s = x.astype(np.float64) @ x.T.astype(np.float64)
    np.testing.assert_array_equal(rows[:, 0], np.arange(len(x)))  # itself first, as umap-learn expects
    np.testing.assert_allclose(np.sort(dist, axis=1), np.sort(1 - np.sort(s, axis=1)[:, ::-1][:, :6], axis=1),
                               atol=1e-5)  # fmt: skip
    np.testing.assert_array_equal(
        np.sort(rows[:, 1:], axis=1), np.sort(np.argsort(-s, axis=1)[:, 1:6], axis=1)
    )


# --- the tags the report reads: embed keeps a tagging model's mean taggram, from the same forward pass ---


class _Tagger:
    """A frame encoder with a ``taggram`` layer of known per-frame values (frame f of a track: base + f / 10)."""

    sample_rate, frame_sec, hop_sec, dim = 8000, 0.25, 0.25, 3

    def __init__(self, name: str = "tagger", vocabulary: str = "MagnaTagATune") -> None:
        self.name = name
        self.frame_layers = {"emb": 3, "taggram": 2}
        self.tag_blocks = [{"model": name, "vocabulary": vocabulary, "tags": ["strings", "choir"]}]

    def _frames(self, w: np.ndarray) -> np.ndarray:
        t = max(1, w.size // 2000)
        base = float(np.abs(w).mean())
        f = np.arange(t, dtype=np.float32)[:, None] / 10
        return np.concatenate([np.full((t, 3), base + 1.0), np.hstack([base + f / 4, 0.5 - f / 8])], axis=1)

    def embed_frames(
        self, batch: Sequence[np.ndarray], layers: Sequence[str]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        frames = [self._frames(w) for w in batch]
        cols = {"emb": slice(0, 3), "taggram": slice(3, 5)}
        pooled = np.stack([f[:, :3].mean(axis=0) for f in frames]).astype(np.float32)
        return pooled, [
            np.concatenate([f[:, cols[n]] for n in layers] or [f[:, :0]], axis=1).astype(np.float32)
            for f in frames
        ]

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_frames(batch, [])[0]

    def info(self) -> dict:
        return {"name": self.name, "version": "1", "weights_sha256": None, "pooling": "mean", "layer": "emb"}


def test_embed_writes_the_mean_taggram_of_every_track_and_resumes_it(tmp_path: Path) -> None:
    import soundfile as sf

    from research_job.steps import embed
    from research_job.tags import load_tags
    from tests.unit._core_corpus import make_corpus

    common = make_corpus(tmp_path / "a", 8000, n=7)
    cfg = embed.EmbedConfig(common=common, batch_size=2, checkpoint_every=2, postprocess="none")
    meta = embed.run(cfg, encoder=_Tagger())
    tags = load_tags(common.layout)
    assert tags.meta["blocks"] == [{"model": "tagger", "vocabulary": "MagnaTagATune", "offset": 0,
                                    "tags": ["strings", "choir"]}]  # fmt: skip
    ids = json.loads(common.layout.track_ids_json.read_text())["track_ids"]
    assert tags.values.shape == (meta["count"], 2) == (len(ids), 2)
    for i, tid in enumerate(ids):
        w, _ = sf.read(common.layout.wav(tid), dtype="float32")
        np.testing.assert_allclose(tags.values[i], _Tagger()._frames(w)[:, 3:].mean(axis=0), rtol=1e-6)

    class Stop(Exception):
        pass

    def stop(done: int) -> None:
        if done >= 4:
            raise Stop

    other = make_corpus(tmp_path / "b", 8000, n=7)
    with pytest.raises(Stop):
        embed.run(embed.EmbedConfig(common=other, batch_size=2, checkpoint_every=2, postprocess="none"),
                  encoder=_Tagger(), on_chunk_committed=stop)  # fmt: skip
    embed.run(
        embed.EmbedConfig(common=other, batch_size=2, checkpoint_every=2, postprocess="none"),
        encoder=_Tagger(),
    )
    assert other.layout.path("tags_f32").read_bytes() == common.layout.path("tags_f32").read_bytes()
    # a model without tags re-embeds the folder and removes the tag files of the earlier one
    from tests.unit.test_embed import FakeEncoder

    embed.run(embed.EmbedConfig(common=common, postprocess="none"), encoder=FakeEncoder())
    assert not common.layout.path("tags_meta").exists() and not common.layout.path("tags_f32").exists()


def test_a_fusion_of_taggers_keeps_every_members_block_side_by_side() -> None:
    from research_job.models.base import tag_blocks_of
    from research_job.models.fusion import FusionEncoder

    enc = FusionEncoder([_Tagger("a", "Million Song Dataset (last.fm tags)"), _Tagger("b")])
    assert enc.frame_layers["taggram"] == 4
    assert [(b["model"], b["vocabulary"]) for b in tag_blocks_of(enc)] == [
        ("a", "Million Song Dataset (last.fm tags)"),
        ("b", "MagnaTagATune"),
    ]
    # a member without a taggram layer, or one whose taggram names no tags: the fusion gives no tags
    frames_only, unnamed = _Tagger("c"), _Tagger("d")
    frames_only.frame_layers, unnamed.tag_blocks = {"emb": 3}, []
    assert "taggram" not in FusionEncoder([_Tagger("a"), frames_only]).frame_layers
    assert tag_blocks_of(FusionEncoder([_Tagger("a"), frames_only])) == []
    assert tag_blocks_of(FusionEncoder([_Tagger("a"), unnamed])) == []


def test_musicnn_tags_are_the_mean_of_its_patch_taggram() -> None:
    from research_job.errors import ModelError
    from research_job.models.base import tag_blocks_of
    from research_job.models.fusion import FusionEncoder
    from research_job.models.musicnn import MSD_TAGS, MTT_TAGS, MusicnnEncoder
    from research_job.models.registry import load_model
    from research_job.steps.embed import _forward

    try:
        enc = load_model("fusion:musicnn-msd+musicnn-mtt")
    except ModelError as exc:
        pytest.skip(f"musicnn weights missing ({exc})")
    assert [(b["model"], b["tags"]) for b in tag_blocks_of(enc)] == [
        ("musicnn-msd", MSD_TAGS),
        ("musicnn-mtt", MTT_TAGS),
    ]
    wave = (0.1 * np.random.default_rng(0).standard_normal(16000 * 7)).astype(np.float32)
    [(pooled, frames, tags)] = _forward(enc, [wave], (), tagged=True)
    assert frames is None and tags is not None and isinstance(enc, FusionEncoder)
    np.testing.assert_array_equal(pooled, enc.embed([wave])[0])  # tags do not change the vectors
    for j, m in enumerate(enc.members):
        assert isinstance(m, MusicnnEncoder)
        np.testing.assert_allclose(
            tags[50 * j : 50 * (j + 1)], m.patch_outputs(wave)["taggram"].mean(axis=0), rtol=1e-5
        )


def test_a_perfect_clustering_scores_at_most_one() -> None:
    from sklearn.metrics import normalized_mutual_info_score

    from research_job.embedding_analysis import _scores

    y = np.random.default_rng(30).integers(0, 20, 30)  # scikit-learn's NMI(y, y) is 1.0000000000000002 here
    assert normalized_mutual_info_score(y, y) > 1.0
    x = np.random.default_rng(0).standard_normal((30, 4))
    s = _scores(x, y, y, max_points=100, seed=0)
    assert (
        s["nmi"] == 1.0 and s["ari"] == 1.0
    )  # report.schema.json's bounds, which the raw value broke at 100k


def _tied_catalogue(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded unit vectors with exact duplicates (ties), 4 composers of very different sizes, tracks without a
    composer and a composer of one track; albums of 3 consecutive tracks."""
    rng = np.random.default_rng(seed)
    n, d = 240, 8
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[1::7] = x[0::7][: x[1::7].shape[0]]  # duplicated rows: equal scores, broken by the row
    x[5] = x[100]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.choice(4, size=n, p=[0.7, 0.2, 0.07, 0.03]).astype(np.int64)
    labels[rng.random(n) < 0.1] = -1
    labels[17] = 4  # the only track of its composer: never scored
    return x, labels, np.arange(n) // 3


@pytest.mark.parametrize("table_k", [5, 8])
def test_the_ranking_read_off_the_neighbour_table_equals_the_full_ranking(table_k: int) -> None:
    from research_job import neighbors, retrieval

    x, labels, albums = _tied_catalogue(3)
    ids = [f"t{i}" for i in range(len(x))]
    full, _ = retrieval.rank_all(x, ids, labels, albums, 5)
    table = neighbors.compute(x, ids, table_k)
    fast = retrieval.rank_from_neighbors(x, labels, table, 5)
    # the table holds no relevant candidate of some queries: the full-row fallback ranks them
    rel = (labels[table] == labels[:, None]) & (labels[:, None] >= 0)
    assert ((full.n_relevant > 0) & ~rel.any(axis=1)).any()
    assert np.isinf(full.first_rank[labels < 0]).all() and (full.first_rank > 5).any()
    for name in ("rows", "scores", "n_relevant", "n_candidates", "first_rank", "best_score", "best_row"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(full, name), err_msg=name)
    a, _, va = retrieval.summary(full, labels, 5, 1, 0)
    b, _, vb = retrieval.summary(fast, labels, 5, 1, 0)
    assert a == b
    np.testing.assert_array_equal(va, vb)


def test_the_report_reads_the_table_only_when_it_ranks_as_the_evaluation(
    extended: tuple[Corpus, dict], tmp_path: Path
) -> None:
    from research_job import evaluation, retrieval
    from research_job import report as R

    src = extended[0].layout.version_dir
    inp = R.load_inputs(ArtifactLayout(src))
    assert inp.neighbors is not None and inp.neighbors.shape == (len(inp.ids), 10)
    p = inp.params
    label_values = [getattr(r, p.label) for r in inp.rows]
    want, _ = evaluation.rank_vectors(inp.vectors, inp.ids, label_values, [r.album_id for r in inp.rows], p)
    got = R.analyse(inp, R.ReportOptions(map_method="tsne")).ranking
    for name in ("rows", "n_relevant", "n_candidates", "first_rank"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    with pytest.raises(ValueError, match="top-5"):
        retrieval.rank_from_neighbors(
            inp.vectors, retrieval.label_ids(label_values)[0], inp.neighbors[:, :3], 5
        )
    # a table that is not the one index_meta.json records (edited, of other embeddings) is not read
    vd = tmp_path / src.name
    shutil.copytree(src, vd)
    lay = ArtifactLayout(vd)
    table = inp.neighbors.copy()
    table[0, [0, 1]] = table[0, [1, 0]]
    table.astype("<i4").tofile(lay.neighbors_table)
    assert R.load_inputs(lay).neighbors is None
    shutil.copy2(src / "index" / "neighbors.i32", lay.neighbors_table)
    assert R.neighbor_table(lay, p, inp.embeddings_sha256, len(inp.ids)) is not None
    assert R.neighbor_table(lay, p, "0" * 64, len(inp.ids)) is None
    meta = json.loads(lay.index_meta.read_text())
    meta["neighbors"]["k"] = 3
    lay.index_meta.write_text(json.dumps(meta))
    assert R.neighbor_table(lay, p, inp.embeddings_sha256, len(inp.ids)) is None
