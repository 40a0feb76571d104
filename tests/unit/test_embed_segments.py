"""embed-segments: window times, counts, normalisation, rows equal to the model's embedding of the sliced audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job import embeddings, schema
from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.errors import ConfigError, ModelError
from research_job.io.audio import load_track_audio
from research_job.metadata import read_tracks_csv
from research_job.models.dsp import DspStatsEncoder
from research_job.segments import load_segments, paths, segment_bounds
from research_job.steps import embed
from research_job.steps.embed import EmbedConfig
from research_job.steps.embed_segments import EmbedSegmentsConfig, run
from tests.unit._audio_corpus import FakeEncoder, make_audio_corpus


def test_segment_bounds() -> None:
    sr = 10
    assert segment_bounds(100, sr, 4, 2) == [(0, 40), (20, 60), (40, 80), (60, 100)]
    # regular windows stop at 80 < 110: one more window ending at the end
    assert segment_bounds(110, sr, 4, 2) == [(0, 40), (20, 60), (40, 80), (60, 100), (70, 110)]
    assert segment_bounds(15, sr, 4, 2) == [(0, 15)]  # shorter than a window: one segment covering it
    assert segment_bounds(40, sr, 4, 2) == [(0, 40)]
    assert segment_bounds(0, sr, 4, 2) == []
    assert segment_bounds(100, sr, 4, 4) == [(0, 40), (40, 80), (60, 100)]


@pytest.fixture(scope="module")
def seg_corpus(tmp_path_factory: pytest.TempPathFactory) -> CommonConfig:
    # durations 5.0, 1.5 (shorter than a window), 4.0, 3.0 (silent), 4.5; mixed codecs via flac
    return make_audio_corpus(
        tmp_path_factory.mktemp("seg"), 5, codec="flac", seconds=[5.0, 1.5, 4.0, 3.0, 4.5], silent=[3]
    )


def test_segments_without_track_embeddings(seg_corpus: CommonConfig) -> None:
    layout = seg_corpus.layout
    meta = run(EmbedSegmentsConfig(common=seg_corpus, window_sec=2.0, hop_sec=1.0))
    vectors, rows, meta2 = load_segments(layout)
    assert meta2 == meta
    schema.validate("segments_meta", meta)
    # 5.0 s -> starts 0,1,2,3 ; 1.5 s -> one ; 4.0 s -> 0,1,2 ; silent -> none ; 4.5 s -> 0,1,2 + 2.5
    expected = (
        [("t00", s, s + 2.0) for s in (0.0, 1.0, 2.0, 3.0)]
        + [("t01", 0.0, 1.5)]
        + [("t02", s, s + 2.0) for s in (0.0, 1.0, 2.0)]
        + [("t04", s, s + 2.0) for s in (0.0, 1.0, 2.0, 2.5)]
    )
    got = [(r["track_id"], r["start_sec"], r["end_sec"]) for r in rows]
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=1e-4)
    assert [r["segment_row"] for r in rows] == list(range(len(rows)))
    assert meta["count"] == len(rows) == vectors.shape[0] and vectors.shape[1] == 88 == meta["dim"]
    np.testing.assert_allclose(np.linalg.norm(vectors.astype(np.float64), axis=1), 1.0, atol=1e-5)
    assert meta["n_tracks"] == 5 and meta["n_tracks_with_segments"] == 4
    assert {s["track_id"] for s in meta["skipped"]} == {"t03"} and len(meta["skipped"]) == 2
    assert all("silent" in s["reason"] for s in meta["skipped"])
    assert meta["postprocess"] == {"type": "none", "sha256": None}
    # row i is the model's embedding of the sliced audio, L2-normalised
    enc = DspStatsEncoder()
    tracks = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    for i in (0, 3, 4, len(rows) - 1):
        r = rows[i]
        wav = load_track_audio(layout, tracks[r["track_id"]], enc.sample_rate)
        a, b = round(r["start_sec"] * enc.sample_rate), round(r["end_sec"] * enc.sample_rate)
        v = enc.embed([wav[a:b]])[0].astype(np.float64)
        np.testing.assert_allclose(vectors[i], v / np.linalg.norm(v), atol=1e-5)


class NanOnShort(FakeEncoder):
    """A fake with NaN output for any waveform shorter than 2 s (the short track's only segment)."""

    name = "dsp-stats"

    def embed(self, batch):  # type: ignore[no-untyped-def]
        out = super().embed(batch)
        out[[len(w) < 2 * self.sample_rate for w in batch]] = np.nan
        return out


def test_nan_segments_are_skipped_and_reported(seg_corpus: CommonConfig, tmp_path: Path) -> None:
    common = CommonConfig(model="dsp-stats", version_dir=tmp_path / "v1_model_x")
    # same metadata + audio, separate version folder (no track embeddings)
    import shutil

    shutil.copytree(seg_corpus.layout.version_dir, common.version_dir)
    meta = run(EmbedSegmentsConfig(common=common, window_sec=2.0, hop_sec=1.0), encoder=NanOnShort())
    nan = [s for s in meta["skipped"] if "non-finite" in s["reason"]]
    assert [(s["track_id"], s["start_sec"], s["end_sec"]) for s in nan] == [("t01", 0.0, 1.5)]
    assert meta["n_tracks_with_segments"] == 3 and meta["count"] == 11


def test_segments_follow_the_track_embeddings(seg_corpus: CommonConfig, tmp_path: Path) -> None:
    import shutil

    common = CommonConfig(model="dsp-stats", version_dir=tmp_path / "v1_model_dsp-stats")
    shutil.copytree(seg_corpus.layout.version_dir, common.version_dir)
    layout = common.layout
    emb_meta = embed.run(EmbedConfig(common=common, postprocess="center"))
    meta = run(EmbedSegmentsConfig(common=common, window_sec=2.0, hop_sec=2.0))
    vectors, rows, _ = load_segments(layout)
    assert meta["postprocess"] == {"type": "center", "sha256": emb_meta["postprocess"]["sha256"]}
    assert meta["model"]["name"] == emb_meta["model"]["name"]
    # the embeddings' meta now points at the segments
    pointer = schema.read_artifact(layout.embeddings_meta, "embeddings_meta")["segments"]
    assert pointer["count"] == meta["count"] and pointer["sha256"] == meta["files"]["segments_sha256"]
    # a segment equal to a whole track (1.5 s track, one window) gets exactly that track's vector
    tv, ids, _ = embeddings.load_embeddings(layout)
    short = next(i for i, r in enumerate(rows) if r["track_id"] == "t01")
    np.testing.assert_allclose(vectors[short], tv[ids.index("t01")], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors.astype(np.float64), axis=1), 1.0, atol=1e-5)
    # another model than the one that embedded the tracks is refused
    with pytest.raises(ModelError, match="version: artifacts"):
        run(EmbedSegmentsConfig(common=common), encoder=NanOnShort("7"))
    with pytest.raises(ConfigError, match="hop_sec 3.0 > window_sec 2.0"):
        run(EmbedSegmentsConfig(common=common, window_sec=2.0, hop_sec=3.0))
    # the whole-folder validator still accepts the embeddings after the pointer update
    from research_job.steps.validate import check

    assert [p for p in check(layout, 1e-4) if "embeddings" in p] == []
    # atomic writes: no temp files left behind
    assert not [p for p in layout.embeddings_dir.iterdir() if p.name.endswith(".tmp")]
    assert paths(layout)["csv"].read_text().splitlines()[0] == "segment_row,track_id,start_sec,end_sec"


def test_cli(seg_corpus: CommonConfig) -> None:
    runner = CliRunner()
    vd = str(seg_corpus.layout.version_dir)
    out = runner.invoke(
        cli,
        [
            "embed-segments",
            "--model",
            "dsp-stats",
            "--version-dir",
            vd,
            "--window-sec",
            "3",
            "--hop-sec",
            "1.5",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "segments (3 s windows, 1.5 s hop)" in out.output
    bad = runner.invoke(
        cli, ["embed-segments", "--model", "dsp-stats", "--version-dir", vd, "--window-sec", "0"]
    )
    assert bad.exit_code == 2 and "window_sec and hop_sec must be > 0" in bad.output
