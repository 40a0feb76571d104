"""Musly as a compare-models baseline: the matrix evaluation, the Musly backend, and the comparison row.

* the matrix evaluation equals ``evaluate`` on the same embeddings when the matrix is their cosine (exact
  equality: metrics, CIs, random floor, query policy, per composer, the album variant; with ties and a missing
  composer), and a distance matrix is its negated similarity;
* Musly on seeded short tracks of two clearly different timbres (harmonic tones vs noise) in four codecs ranks
  every same-timbre track above every other one, deterministically; a corrupt, a silent and a too-short track
  fail alone;
* compare-models with ``--entries musly`` writes a valid comparison with a ``classic_baseline`` row and a
  listed, checksummed ``similarity/`` folder; without pymusly the row fails naming the package.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job import retrieval, schema
from research_job import similarity_matrix as sm
from research_job.artifact_checks import listed_files
from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.embeddings import write_embeddings
from research_job.errors import ConfigError, ModelError
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.models import musly
from research_job.search import exact_scores
from research_job.steps.compare_models import CompareModelsConfig, parse_entries, run
from research_job.steps.evaluate import EvaluateConfig, evaluate
from tests.helpers.artifact_factory import make_version
from tests.helpers.audio_fixtures import write_audio, write_corrupt
from tests.unit._core_corpus import row, write_csv

needs_pymusly = pytest.mark.skipif(
    importlib.util.find_spec("pymusly") is None,
    reason="pymusly is not installed (pip install pymusly==2.0.0)",
)

SR = 22050
CODECS = ("wav", "flac", "mp3", "ogg")
SECONDS = 3.0


# ---------------------------------------------------------------- the matrix evaluation


def _same_as_evaluate(ev: dict, ref: dict) -> None:
    for key in ("k", "relevance", "self_exclusion", "tie_break", "search", "n_tracks"):
        assert ev[key] == ref[key], key
    for key in ("query_policy", "overall", "exclude_same_album", "per_composer"):
        assert ev[key] == ref[key], key


@pytest.mark.parametrize(("k", "ties"), [(5, False), (5, True), (1, True), (10, False)])
def test_matrix_of_cosines_evaluates_exactly_like_the_embeddings(tmp_path: Path, k: int, ties: bool) -> None:
    corpus = make_version(tmp_path, n=90, dim=8, n_composers=6, album_size=5, seed=4, indexes=("faiss-flat",))
    layout, x, ids = corpus.layout, corpus.vectors.copy(), corpus.track_ids
    if ties:
        # duplicate vectors of other tracks (some of another composer): exact score ties across rows
        x[[10, 40, 41, 77]] = x[[3, 3, 12, 60]]
        write_embeddings(
            layout,
            x,
            ids,
            model_name="fake-model",
            info={
                "version": "fake-1",
                "weights_sha256": None,
                "pooling": "mean",
                "layer": None,
                "params": {},
            },
            dim=8,
            sample_rate=16000,
            stats={"n_input_tracks": 90, "n_embedded": 90, "n_failed": 0, "audio_sec": 1.0, "wall_sec": 1.0},
        )
    cfg = EvaluateConfig(
        common=CommonConfig(model="fake-model", version_dir=layout.version_dir),
        k=k,
        bootstrap_resamples=300,
        seed=7,
    )
    ref, _ = evaluate(cfg)
    assert ref["query_policy"]["n_excluded_missing_composer"] > 0  # the policy is exercised
    rows = read_tracks_csv(layout.tracks_csv)
    s = exact_scores(x, x)  # the reference score of evaluate, every pair
    ev = sm.evaluate_matrix(
        s, ids, rows, kind="similarity", k=k, bootstrap_resamples=300, seed=7, batch_size=7
    )
    _same_as_evaluate(ev, ref)
    dist = sm.evaluate_matrix(-s, ids, rows[::-1], kind="distance", k=k, bootstrap_resamples=300, seed=7)
    _same_as_evaluate(dist, ref)


def test_matrix_ranking_by_hand() -> None:
    # 4 tracks; query 0's scores: row 1 and row 2 tie at 0.5 (row 1 first), row 3 at 0.9
    s = np.array(
        [
            [9.0, 0.5, 0.5, 0.9],
            [0.5, 9.0, 0.1, 0.2],
            [0.5, 0.1, 9.0, 0.3],
            [0.9, 0.2, 0.3, 9.0],
        ]
    )
    labels = np.array([0, 1, 0, -1])
    albums = np.array([0, 0, 1, 0])
    every, no_album = retrieval.rank_by_scores(lambda rows: s[rows].copy(), 4, labels, albums, 2)
    assert every.rows[0].tolist() == [3, 1] and every.scores[0].tolist() == [0.9, 0.5]
    assert every.first_rank[0] == 3.0 and every.n_relevant[0] == 1 and every.n_candidates[0] == 3
    assert every.n_relevant[3] == 0  # a missing composer is never relevant, nor has relevant candidates
    assert no_album.rows[0].tolist() == [2, -1] and no_album.first_rank[0] == 1.0
    assert no_album.n_candidates.tolist() == [1, 1, 3, 1]


def test_matrix_files_round_trip_and_refuse_tampering(tmp_path: Path) -> None:
    from research_job.errors import ArtifactError

    layout = ArtifactLayout(tmp_path / "v1_model_m")
    m = np.arange(9, dtype=np.float32).reshape(3, 3)
    meta = json.loads((schema.SCHEMA_DIR / "examples/valid/similarity_meta.json").read_text())
    for key in ("count", "dtype", "byte_order", "layout", "files"):
        meta.pop(key)
    sm.write_matrix(layout, m, ["a", "b", "c"], meta)
    got, ids, back = sm.read_matrix(layout)
    assert np.array_equal(got, m) and ids == ["a", "b", "c"] and back["count"] == 3
    with pytest.raises(ArtifactError, match="NaN"):
        sm.write_matrix(layout, np.full((3, 3), np.nan), ["a", "b", "c"], meta)
    layout.path("similarity_f32").write_bytes(np.zeros(9, "<f4").tobytes())
    with pytest.raises(ArtifactError, match="sha256 differs"):
        sm.read_matrix(layout)


# ---------------------------------------------------------------- Musly


def _tonal(i: int, seconds: float = SECONDS) -> np.ndarray:
    """A seeded melody of harmonic notes (0.25 s each, 150-300 Hz, six harmonics) over a -40 dB noise floor."""
    rng = np.random.default_rng(100 + i)
    n = int(seconds * SR)
    note = int(0.25 * SR)
    f0 = np.repeat(rng.uniform(150.0, 300.0, size=n // note + 1), note)[:n]
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum((1.0 / h) * np.sin(h * phase) for h in range(1, 7))
    return (0.4 * x / np.max(np.abs(x)) + 0.004 * rng.standard_normal(n)).astype(np.float32)


def _noise(i: int, seconds: float = SECONDS) -> np.ndarray:
    """Bright hiss: high-passed white noise with a seeded slow amplitude envelope."""
    rng = np.random.default_rng(200 + i)
    n = int(seconds * SR)
    w = rng.standard_normal(n + 2)
    hiss = w[2:] - 2 * w[1:-1] + w[:-2]  # second difference: a +12 dB/octave tilt towards the highs
    env = 0.6 + 0.4 * np.sin(2 * np.pi * (0.5 + 0.2 * i) * np.arange(n) / SR)
    return (0.08 * env * hiss).astype(np.float32)


def _timbre_corpus(root: Path, n_each: int = 4, broken: bool = False) -> CommonConfig:
    """``n_each`` tonal + ``n_each`` noise tracks (composers Tonal / Noise, albums of 2), codecs cycling."""
    common = CommonConfig(artifacts_root=root, model="dsp-stats", version_dir=root / "v1_model_source")
    layout = common.layout
    rows = []
    signals = [("Tonal", _tonal(i)) for i in range(n_each)] + [("Noise", _noise(i)) for i in range(n_each)]
    for i, (composer, x) in enumerate(signals):
        codec = CODECS[i % len(CODECS)]
        r = row(f"t{i:02d}", f"al{i // 2}", composer, i % 2 + 1)
        r["audio_s3_key"] = f"al{i // 2}/t{i:02d}.{codec}"
        r["duration_sec"] = SECONDS
        rows.append(r)
        write_audio(layout.cached_audio(r["album_id"], r["track_id"], codec), x, SR, codec)
    if broken:
        extra = [
            ("bad-corrupt", "wav", None),
            ("bad-silent", "flac", np.zeros(int(SECONDS * SR), np.float32)),
            ("bad-short", "wav", _tonal(9, 0.3)),
        ]
        for tid, codec, x in extra:
            r = row(tid, "al9", "Tonal", 1)
            r["audio_s3_key"] = f"al9/{tid}.{codec}"
            rows.append(r)
            path = layout.cached_audio("al9", tid, codec)
            if x is None:
                write_corrupt(path)
            else:
                write_audio(path, x, SR, codec)
    write_csv(layout, rows)
    return common


@pytest.fixture(scope="module")
def timbre(tmp_path_factory: pytest.TempPathFactory) -> CommonConfig:
    return _timbre_corpus(tmp_path_factory.mktemp("musly"), broken=True)


def _classes(ids: list[str]) -> np.ndarray:
    return np.array([int(t[1:]) >= 4 for t in ids])  # t00..t03 tonal, t04..t07 noise


@needs_pymusly
def test_musly_ranks_same_timbre_first_and_bad_tracks_fail_alone(timbre: CommonConfig) -> None:
    layout = timbre.layout
    rows = read_tracks_csv(layout.tracks_csv)
    res = musly.compute_distances(layout, rows, "musly")
    assert res.track_ids == [f"t{i:02d}" for i in range(8)]
    assert {f["track_id"]: f["stage"] for f in res.failures} == {
        "bad-corrupt": "decode",
        "bad-silent": "validate",
        "bad-short": "validate",
    }
    assert "t" not in {f["track_id"][0] for f in res.failures}
    d = res.distances.astype(np.float64)
    assert d.shape == (8, 8) and np.all(np.isfinite(d)) and np.allclose(d, d.T, atol=1e-6)
    assert np.all(np.diag(d) <= d.min(axis=1) + 1e-9)
    cls = _classes(res.track_ids)
    for i in range(8):
        same = d[i, (cls == cls[i]) & (np.arange(8) != i)]
        other = d[i, cls != cls[i]]
        assert same.max() < other.min(), f"track {i}: a different timbre is nearer than its own"
    # mutual proximity: distances in [0, 1]
    assert d.min() >= 0 and d.max() <= 1
    assert res.backend["method"] == "timbre" and res.backend["normalization"] == "mutual_proximity"
    assert res.backend["version"] and res.backend["binding"].startswith("pymusly ")
    assert res.stats["n_input_tracks"] == 11 and res.stats["n_tracks"] == 8 and res.stats["n_failed"] == 3
    ev = sm.evaluate_matrix(res.distances, res.track_ids, rows, kind="distance", k=3, bootstrap_resamples=50)
    assert ev["overall"]["metrics"]["precision_at_k"] == 1.0 and ev["overall"]["metrics"]["mrr"] == 1.0
    # deterministic: the same bytes again
    again = musly.compute_distances(layout, rows, "musly")
    assert again.distances.tobytes() == res.distances.tobytes()


@needs_pymusly
def test_mandelellis_and_the_style_sample(timbre: CommonConfig) -> None:
    layout = timbre.layout
    rows = [r for r in read_tracks_csv(layout.tracks_csv) if r.track_id.startswith("t")]
    res = musly.compute_distances(layout, rows, "musly?method=mandelellis&excerpt_sec=2")
    assert res.backend["method"] == "mandelellis" and res.backend["normalization"] == "none"
    assert res.backend["params"]["excerpt_sec"] == 2.0
    assert res.stats["audio_sec"] == pytest.approx(8 * 2.0, abs=0.01)
    d = res.distances
    cls = _classes(res.track_ids)
    nearest = [int(np.argsort(d[i])[1]) for i in range(8)]
    assert all(cls[j] == cls[i] for i, j in enumerate(nearest))
    s1 = musly.compute_distances(layout, rows, "musly?style_tracks=4&seed=1")
    s2 = musly.compute_distances(layout, rows, "musly?style_tracks=4&seed=1")
    assert s1.style_track_ids == s2.style_track_ids and len(s1.style_track_ids) == 4
    assert s1.distances.tobytes() == s2.distances.tobytes()
    assert s1.backend["params"]["n_style_tracks"] == 4


def test_bad_specs_are_refused_before_anything_runs() -> None:
    assert musly.parse_spec("musly") == musly.MuslyParams()
    with pytest.raises(ModelError, match="Known: excerpt_sec, method, seed, style_tracks"):
        musly.parse_spec("musly?metod=timbre")
    with pytest.raises(ModelError, match="'spectral'. Known: mandelellis, timbre"):
        musly.parse_spec("musly?method=spectral")
    with pytest.raises(ModelError, match="style_tracks must be in 2..1000"):
        musly.parse_spec("musly?style_tracks=5000")
    with pytest.raises(ConfigError, match="post-processing applies to embeddings only"):
        parse_entries("musly#center")
    assert [(e.label, e.role) for e in parse_entries("musly?method=timbre")] == [
        ("musly?method=timbre", "classic_baseline"),
        ("dsp-stats", "dsp_baseline"),
        ("random", "random_floor"),
    ]


# ---------------------------------------------------------------- compare-models


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> CommonConfig:
    return _timbre_corpus(tmp_path_factory.mktemp("cmp_musly"), n_each=3)


@needs_pymusly
def test_compare_models_with_musly(clean: CommonConfig, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cmp"
    args = ["compare-models", "--version-dir", str(clean.version_dir), "--out-dir", str(out), "--no-isolate"]
    res = runner.invoke(cli, [*args, "--entries", "musly", "--bootstrap-resamples", "50", "--k", "2"])
    assert res.exit_code == 0, res.output
    doc = schema.read_artifact(out / "comparison.json", "model_comparison")
    rows = {r["label"]: r for r in doc["rows"]}
    assert set(rows) == {"musly", "dsp-stats", "random"}
    m = rows["musly"]
    assert m["status"] == "ok" and m["role"] == "classic_baseline" and m["dim"] is None
    assert m["n_embedded"] == 6 and m["n_failed_tracks"] == 0 and m["n_queries"] == 6
    assert m["metrics"]["precision_at_k"]["value"] == 1.0
    assert m["peak_memory_bytes"] > 0 and m["sec_per_track"] > 0 and m["embed_sec"] > 0
    assert m["similarity_info"]["method"] == "timbre" and m["similarity_info"]["kind"] == "distance"
    assert "similarity_info" not in rows["dsp-stats"]
    layout = ArtifactLayout(out / m["version_dir"])
    matrix, ids, meta = sm.read_matrix(layout)
    assert matrix.shape == (6, 6) and meta["files"]["matrix_sha256"] == m["similarity_info"]["matrix_sha256"]
    assert not layout.embeddings_dir.exists()
    _, unknown = listed_files(layout)
    assert unknown == []  # every file of the folder is in artifacts.json
    assert "| `musly` |" in (out / "comparison.md").read_text()
    # a rerun with --reuse-embeddings keeps the complete matrix and evaluates it again
    again = runner.invoke(
        cli, [*args, "--entries", "musly", "--bootstrap-resamples", "50", "--k", "2", "--reuse-embeddings"]
    )
    assert again.exit_code == 0, again.output
    doc2 = json.loads((out / "comparison.json").read_text())
    m2 = next(r for r in doc2["rows"] if r["label"] == "musly")
    assert m2["embeddings_reused"] is True and m2["metrics"] == m["metrics"]
    # the evaluate step evaluates the matrix folder with the same figures, and other labels too
    from research_job.steps import evaluate as evaluate_step

    cfg = EvaluateConfig(common=CommonConfig(version_dir=layout.version_dir), k=2, bootstrap_resamples=50)
    res_ev = evaluate_step.run(cfg)
    assert res_ev["search"] == "matrix" and res_ev["embeddings_sha256"] == meta["files"]["matrix_sha256"]
    assert res_ev["overall"]["metrics"]["precision_at_k"] == m["metrics"]["precision_at_k"]["value"]
    by_album = evaluate_step.run(
        EvaluateConfig(common=cfg.common, k=2, bootstrap_resamples=50, label="album_id")
    )
    assert by_album["relevance"] == "same_album_id" and by_album["exclude_same_album"] is None


@needs_pymusly
def test_musly_in_an_isolated_child(clean: CommonConfig, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = run(
        CompareModelsConfig(
            common=clean,
            entries="musly?method=mandelellis",
            out_dir=out,
            bootstrap_resamples=30,
            k=2,
            isolate=True,
        )
    )
    m = next(r for r in result["rows"] if r["role"] == "classic_baseline")
    assert m["status"] == "ok", m["error"]
    assert m["similarity_info"]["normalization"] == "none" and m["peak_memory_bytes"] > 20 * 2**20


def test_without_pymusly_the_row_fails_naming_the_package(
    clean: CommonConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymusly", None)  # import pymusly -> ImportError
    out = tmp_path / "cmp"
    result = run(
        CompareModelsConfig(
            common=clean, entries="musly,random", out_dir=out, bootstrap_resamples=30, isolate=False
        )
    )
    bad = result["rows"][-1]
    assert bad["label"] == "musly" and bad["status"] == "failed"
    assert "'pymusly'" in bad["error"] and "pip install pymusly==2.0.0" in bad["error"]
    assert [r["status"] for r in result["rows"][:-1]] == ["ok", "ok"]
    with pytest.raises(ModelError, match="pymusly"):
        musly.import_pymusly()
