"""compare-models over a tiny real corpus: table structure, ordering, floors, failed rows, schema validity."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from research_job import schema
from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.errors import ConfigError
from research_job.layout import ArtifactLayout
from research_job.steps.compare_models import CompareModelsConfig, Entry, parse_entries, run
from tests.unit._audio_corpus import make_audio_corpus


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> CommonConfig:
    return make_audio_corpus(tmp_path_factory.mktemp("cmp"), 9, codec="wav", seconds=2.0)


def test_parse_entries_adds_floors_and_checks_values() -> None:
    assert parse_entries("musicnn-msd?layer=max_pool#pca_whiten") == [
        Entry("musicnn-msd?layer=max_pool", "pca_whiten", "candidate"),
        Entry("dsp-stats", "none", "dsp_baseline"),
        Entry("random", "none", "random_floor"),
    ]
    assert parse_entries(["random?seed=3", "dsp-stats#center"]) == [
        Entry("random?seed=3", "none", "random_floor"),
        Entry("dsp-stats", "center", "dsp_baseline"),
    ]
    with pytest.raises(ConfigError, match="Known: block_standardize, center, none, pca_whiten, standardize"):
        parse_entries("dsp-stats#whiten")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_entries("random, random#none")
    with pytest.raises(ConfigError, match="no model spec"):
        parse_entries("#center")


def test_entries_from_a_config_file(tmp_path: Path) -> None:
    import research_job.cli  # noqa: F401 - registers the compare_models config section
    from research_job.config import build_config, load_config_file

    f = tmp_path / "job.yaml"
    f.write_text("compare_models:\n  entries: [musicnn-mtt, 'dsp-stats#center']\n  k: 3\n")
    cfg = build_config(CompareModelsConfig, file_data=load_config_file(f), section="compare_models", env={})
    assert cfg.k == 3
    assert [e.label for e in parse_entries(cfg.entries)] == ["musicnn-mtt", "dsp-stats#center", "random"]


def _check_table(result: dict, out: Path) -> None:
    schema.validate("model_comparison", result)
    assert schema.read_artifact(out / "comparison.json", "model_comparison") == result
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    failed = [r for r in result["rows"] if r["status"] == "failed"]
    assert result["rows"] == ok + failed  # failed rows last
    assert [r["rank"] for r in ok] == list(range(1, len(ok) + 1))
    p5 = [r["metrics"]["precision_at_k"]["value"] for r in ok]
    assert p5 == sorted(p5, reverse=True)
    for r in ok:
        for m in ("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr"):
            cell = r["metrics"][m]
            assert 0 <= cell["ci_low"] <= cell["value"] <= cell["ci_high"] <= 1 and 0 < cell["random"] <= 1
        assert r["exclude_same_album"]["precision_at_k"]["value"] >= 0
        assert r["n_embedded"] == 9 and r["sec_per_track"] > 0 and r["x_realtime"] > 0
        assert r["peak_memory_bytes"] > 0
        layout = ArtifactLayout(out / r["version_dir"])
        assert layout.eval_results.is_file() and layout.audio_cache_dir.is_symlink()
        assert (
            layout.tracks_csv.read_bytes()
            == Path(result["source_version_dir"], "metadata", "tracks_metadata.csv").read_bytes()
        )
    md = (out / "comparison.md").read_text()
    assert md.count("\n| ") == len(result["rows"]) + 1  # header + one line per row
    for r in result["rows"]:
        assert f"`{r['model']}`" in md


def test_in_process_with_a_failing_entry(source: CommonConfig, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    t0 = time.perf_counter()
    result = run(
        CompareModelsConfig(
            common=source,
            entries="dsp-stats#pca_whiten,no-such-model,random",
            out_dir=out,
            bootstrap_resamples=200,
            isolate=False,
        )
    )
    print(f"compare-models in-process, 3 entries (1 failing), 9 tracks: {time.perf_counter() - t0:.2f}s")
    _check_table(result, out)
    assert result["peak_memory_method"] == "tracemalloc"
    assert [r["label"] for r in result["rows"]][-1] == "no-such-model"
    bad = result["rows"][-1]
    assert (
        bad["status"] == "failed" and bad["rank"] is None and "Unknown model 'no-such-model'" in bad["error"]
    )
    assert "dsp-stats" in bad["error"]  # lists the known ones
    labels = {r["label"]: r for r in result["rows"]}
    assert set(labels) == {"dsp-stats#pca_whiten", "no-such-model", "random"}
    assert labels["random"]["role"] == "random_floor" and labels["random"]["dim"] == 200
    assert (
        labels["dsp-stats#pca_whiten"]["role"] == "dsp_baseline"
        and labels["dsp-stats#pca_whiten"]["dim"] == 88
    )
    assert result["n_entries"] == 3 and result["n_failed"] == 1 and result["n_tracks"] == 9
    assert "failed: Unknown model" in (out / "comparison.md").read_text()


def test_isolated_children_report_peak_rss(source: CommonConfig, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    t0 = time.perf_counter()
    result = run(
        CompareModelsConfig(
            common=source, entries="random?dim=16", out_dir=out, bootstrap_resamples=100, isolate=True
        )
    )
    print(f"compare-models isolated, 2 entries, 9 tracks: {time.perf_counter() - t0:.2f}s")
    _check_table(result, out)
    assert result["peak_memory_method"] == "child_ru_maxrss"
    assert [r["label"] for r in result["rows"]] in (
        ["random?dim=16", "dsp-stats"],
        ["dsp-stats", "random?dim=16"],
    )
    # a whole interpreter with numpy: tens of MiB at least
    assert all(r["peak_memory_bytes"] > 20 * 2**20 for r in result["rows"])
    assert not list(out.glob("*/.compare_entry.json"))


def test_cli_writes_the_table_and_missing_source_is_exit_2(source: CommonConfig, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cmp"
    args = ["compare-models", "--version-dir", str(source.version_dir), "--out-dir", str(out)]
    res = runner.invoke(cli, [*args, "--entries", "random", "--no-isolate", "--bootstrap-resamples", "50"])
    assert res.exit_code == 0, res.output
    assert "| rank | model |" in res.output
    doc = json.loads((out / "comparison.json").read_text())
    assert [r["status"] for r in doc["rows"]] == ["ok", "ok"]
    assert [r["embeddings_reused"] for r in doc["rows"]] == [False, False]
    # a rerun measures afresh unless asked to reuse the complete embeddings
    again = runner.invoke(
        cli,
        [*args, "--entries", "random", "--no-isolate", "--reuse-embeddings", "--bootstrap-resamples", "50"],
    )
    assert again.exit_code == 0, again.output
    doc2 = json.loads((out / "comparison.json").read_text())
    assert [r["embeddings_reused"] for r in doc2["rows"]] == [True, True]
    assert [r["metrics"] for r in doc2["rows"]] == [r["metrics"] for r in doc["rows"]]
    missing = runner.invoke(
        cli,
        ["compare-models", "--version-dir", str(tmp_path / "nope"), "--out-dir", str(out), "--no-isolate"],
    )
    assert missing.exit_code == 2 and "tracks_metadata.csv" in missing.output
    # out_dir = the source's parent and an entry named like the source folder: refused, nothing touched
    clash = runner.invoke(
        cli,
        [
            "compare-models",
            "--version-dir",
            str(source.version_dir),
            "--out-dir",
            str(source.version_dir.parent),
            "--entries",
            "source",
            "--no-isolate",
        ],
    )
    assert clash.exit_code == 2 and "would be written into the source folder" in clash.output
    bad = runner.invoke(cli, [*args, "--entries", "random#zca", "--no-isolate"])
    assert bad.exit_code == 2 and "'zca'" in bad.output
