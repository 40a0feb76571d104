"""find-similar: query-by-audio over a real embedded corpus (dsp-stats and a fake encoder, real codecs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job import embeddings
from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.errors import ArtifactError, AudioDecodeError, ConfigError, ModelError
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.models import registry
from research_job.query import embed_query_file, load_query_encoder
from research_job.steps import embed
from research_job.steps.embed import EmbedConfig
from research_job.steps.find_similar import find_similar, format_table
from tests.helpers.audio_fixtures import write_audio, write_corrupt
from tests.unit._audio_corpus import SOURCE_RATE, FakeEncoder, make_audio_corpus, signal


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArtifactLayout, Path]:
    """9 tracks as WAV, embedded with dsp-stats + pca_whiten; the query dir holds FLAC/MP3 copies."""
    root = tmp_path_factory.mktemp("fs")
    common = make_audio_corpus(root, 9, codec="wav")
    embed.run(EmbedConfig(common=common, postprocess="center"))
    qdir = root / "queries"
    for i in (0, 4):
        write_audio(qdir / f"t{i:02d}.flac", signal(i), SOURCE_RATE, "flac")
    write_audio(qdir / "t04.mp3", signal(4), SOURCE_RATE, "mp3")
    return common.layout, qdir


def test_flac_query_of_a_wav_corpus_track_returns_it_first(corpus: tuple[ArtifactLayout, Path]) -> None:
    layout, qdir = corpus
    for i in (0, 4):
        res = find_similar(qdir / f"t{i:02d}.flac", layout, k=5)
        hits = res["results"]
        assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
        assert hits[0]["track_id"] == f"t{i:02d}"
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert hits[1]["score"] < 0.999
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert hits[0]["title"] == f"Title t{i:02d}" and hits[0]["composer"] in {"Bach", "Liszt", "Satie"}
        assert hits[0]["album_id"] == f"al{i // 3}"


def test_query_vector_equals_the_corpus_row(corpus: tuple[ArtifactLayout, Path]) -> None:
    layout, qdir = corpus
    vectors, ids, _ = embeddings.load_embeddings(layout)
    q = embed_query_file(qdir / "t04.flac", load_query_encoder(layout))
    assert q.shape == (1, vectors.shape[1]) and q.dtype == np.float32
    assert float(np.linalg.norm(q)) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(q[0], vectors[ids.index("t04")], atol=2e-3)


def test_lossy_query_still_finds_its_track(corpus: tuple[ArtifactLayout, Path]) -> None:
    layout, qdir = corpus
    # mp3 adds encoder delay and padding, and centring magnifies small differences: lower score, same winner
    hits = find_similar(qdir / "t04.mp3", layout, k=3)["results"]
    assert hits[0]["track_id"] == "t04" and hits[0]["score"] > hits[1]["score"]


def test_exclude_track_id_and_hnswlib_agree_with_exact(corpus: tuple[ArtifactLayout, Path]) -> None:
    from research_job.steps import build_index
    from research_job.steps.build_index import BuildIndexConfig

    layout, qdir = corpus
    exact = find_similar(qdir / "t04.flac", layout, k=4, exclude_track_id="t04")["results"]
    assert "t04" not in [h["track_id"] for h in exact] and len(exact) == 4
    build_index.run(BuildIndexConfig(common=CommonConfig(version_dir=layout.version_dir)))
    approx = find_similar(qdir / "t04.flac", layout, k=4, exclude_track_id="t04", index="hnswlib")["results"]
    assert [h["track_id"] for h in approx] == [h["track_id"] for h in exact]
    np.testing.assert_allclose([h["score"] for h in approx], [h["score"] for h in exact], atol=1e-6)
    # k larger than the corpus: every other track once
    assert len(find_similar(qdir / "t04.flac", layout, k=50)["results"]) == 9


def test_a_crafted_hnsw_index_is_refused_not_a_crash(
    corpus: tuple[ArtifactLayout, Path], tmp_path: Path
) -> None:
    """A level-0 link far out of range would make hnswlib read outside its buffer (SIGSEGV): find-similar checks
    the graph first and exits 2 naming the file. Run as a subprocess, so a crash fails the test instead of pytest."""
    import shutil
    import struct
    import subprocess
    import sys

    from research_job.steps import build_index
    from research_job.steps.build_index import BuildIndexConfig

    layout, qdir = corpus
    copy = ArtifactLayout(tmp_path / layout.version_dir.name)
    shutil.copytree(layout.version_dir, copy.version_dir, symlinks=True)
    if not copy.hnsw_index.is_file():
        build_index.run(BuildIndexConfig(common=CommonConfig(version_dir=copy.version_dir)))
    b = bytearray(copy.hnsw_index.read_bytes())
    struct.pack_into("<H", b, 96, max(1, struct.unpack_from("<H", b, 96)[0]))
    struct.pack_into("<I", b, 100, 0xFFFFFF00)
    copy.hnsw_index.write_bytes(bytes(b))
    args = [
        "find-similar",
        "--query",
        str(qdir / "t04.flac"),
        "--version-dir",
        str(copy.version_dir),
        "--index",
        "hnswlib",
    ]
    code = "from research_job.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "hnsw.index: element 0 links to 4294967040 at level 0" in r.stderr


def test_refuses_a_different_model(
    corpus: tuple[ArtifactLayout, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, qdir = corpus
    with pytest.raises(ModelError, match="'random'.*'dsp-stats'"):
        find_similar(qdir / "t04.flac", layout, model="random")

    class Renamed(FakeEncoder):
        name = "dsp-stats"
        dim = 88
        sample_rate = 16000

    with pytest.raises(ModelError, match=r"version: artifacts '.+' vs loaded '9'"):
        find_similar(qdir / "t04.flac", layout, encoder=Renamed("9"))


def test_bad_inputs_give_clear_errors(corpus: tuple[ArtifactLayout, Path], tmp_path: Path) -> None:
    layout, qdir = corpus
    with pytest.raises(AudioDecodeError, match="not found: .*nope.wav"):
        find_similar(tmp_path / "nope.wav", layout)
    bad = write_corrupt(tmp_path / "bad.mp3")
    with pytest.raises(AudioDecodeError, match="bad.mp3"):
        find_similar(bad, layout)
    with pytest.raises(ConfigError, match="Known: exact, hnswlib"):
        find_similar(qdir / "t04.flac", layout, index="faiss")
    with pytest.raises(ConfigError, match="k must be"):
        find_similar(qdir / "t04.flac", layout, k=0)


def test_fake_encoder_with_recorded_postprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        registry.MODELS, "fake-stats", registry.Entry("tests.unit._audio_corpus:load_fake", {}, "test")
    )
    common = make_audio_corpus(tmp_path, 6, codec="flac", seconds=[1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    common = CommonConfig(model="fake-stats", version_dir=common.version_dir)
    embed.run(EmbedConfig(common=common, postprocess="standardize"))
    q = write_audio(tmp_path / "q.wav", signal(3, 2.5), SOURCE_RATE, "wav")
    res = find_similar(q, common.layout, k=3, model="fake-stats")
    assert res["results"][0]["track_id"] == "t03" and res["postprocess"] == "standardize"
    with pytest.raises(ModelError, match=r"version: artifacts '1' vs loaded '2'"):
        find_similar(q, common.layout, encoder=registry.load_model("fake-stats?version=2"))
    with pytest.raises(ArtifactError, match="run embed-segments first"):
        find_similar(q, common.layout, by_segment=True)


def test_search_by_segment_finds_the_excerpt(corpus: tuple[ArtifactLayout, Path], tmp_path: Path) -> None:
    from research_job.steps.embed_segments import EmbedSegmentsConfig
    from research_job.steps.embed_segments import run as embed_segments

    layout, _ = corpus
    embed_segments(
        EmbedSegmentsConfig(
            common=CommonConfig(model="dsp-stats", version_dir=layout.version_dir),
            window_sec=1.0,
            hop_sec=0.5,
        )
    )
    # a 1 s excerpt (0.5 s .. 1.5 s) of track t04, as FLAC
    x = signal(4)[int(0.5 * SOURCE_RATE) : int(1.5 * SOURCE_RATE)]
    q = write_audio(tmp_path / "excerpt.flac", x, SOURCE_RATE, "flac")
    res = find_similar(q, layout, k=3, by_segment=True)
    top = res["results"][0]
    assert res["index"] == "segments" and top["track_id"] == "t04"
    assert top["segment"]["start_sec"] == pytest.approx(0.5, abs=1e-3)
    assert top["segment"]["end_sec"] == pytest.approx(1.5, abs=1e-3)
    assert top["score"] > 0.99 and len({h["track_id"] for h in res["results"]}) == 3
    assert "[0.5-1.5 s]" in format_table(res)
    other = find_similar(q, layout, k=3, by_segment=True, exclude_track_id="t04")["results"]
    assert "t04" not in [h["track_id"] for h in other]


def test_query_is_cut_like_the_standardised_corpus(tmp_path: Path) -> None:
    from research_job.steps import standardize_audio
    from research_job.steps.standardize_audio import StandardizeAudioConfig

    common = make_audio_corpus(tmp_path, 6, codec="wav", seconds=3.0)
    standardize_audio.run(StandardizeAudioConfig(common=common, max_duration_sec=1.0, workers=1))
    embed.run(EmbedConfig(common=common))
    q = write_audio(tmp_path / "q.flac", signal(2, 3.0), SOURCE_RATE, "flac")
    qe = load_query_encoder(common.layout)
    assert qe.max_duration_sec == 1.0
    top = find_similar(q, common.layout, k=1, model="dsp-stats")["results"][0]
    assert top["track_id"] == "t02" and top["score"] == pytest.approx(1.0, abs=1e-3)


def test_cli_table_and_json(corpus: tuple[ArtifactLayout, Path]) -> None:
    layout, qdir = corpus
    runner = CliRunner()
    args = ["find-similar", "--query", str(qdir / "t00.flac"), "--version-dir", str(layout.version_dir)]
    t0 = time.perf_counter()
    out = runner.invoke(cli, [*args, "--k", "3", "--json"])
    assert out.exit_code == 0, out.output
    print(f"find-similar CLI latency (dsp-stats, 9 tracks): {time.perf_counter() - t0:.3f}s")
    doc = json.loads(out.output)
    assert set(doc) >= {"query", "model", "k", "results", "timings"}
    assert doc["model"] == "dsp-stats" and doc["k"] == 3
    assert [set(h) for h in doc["results"]] == [
        {"rank", "track_id", "title", "composer", "composer_key", "album_id", "score"}
    ] * 3
    assert doc["results"][0]["track_id"] == "t00"
    # the composer as exported for people, the standardised key beside it
    rows = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    for h in doc["results"]:
        r = rows[h["track_id"]]
        assert (h["composer"], h["composer_key"]) == (r.composer_raw or r.composer, r.composer)
    table = runner.invoke(cli, [*args, "--k", "2"])
    assert table.exit_code == 0, table.output
    assert "rank" in table.output and "Title t00" in table.output
    assert format_table(doc).splitlines()[2].split()[0] == "1"
    refused = runner.invoke(cli, [*args, "--model", "random"])
    assert refused.exit_code == 2 and "'random'" in refused.output and "'dsp-stats'" in refused.output
    missing = runner.invoke(
        cli, ["find-similar", "--query", "/nonexistent.ogg", "--version-dir", str(layout.version_dir)]
    )
    assert missing.exit_code == 2 and "/nonexistent.ogg" in missing.output
