"""A head folder end to end on real audio files: embed --frames --views -> train-head -> build-index -> validate ->
the real Node server serves /tracks/:id/nearest from it -> find-similar queries through the head, and refuses a
head or backbone that differs from the record (naming both values).

The backbone is a fake frame encoder with known outputs (FFT band energies per 0.25 s frame,
tests/helpers/head_factory.py), registered for this module as ``fake-frames``, so no weights are needed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job import artifact_checks, schema
from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError, ModelError
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.models import registry
from research_job.search import search
from research_job.steps import build_index, embed, train_head
from research_job.steps.build_index import BuildIndexConfig
from research_job.steps.embed import EmbedConfig
from research_job.steps.find_similar import find_similar
from research_job.steps.train_head import TrainHeadConfig
from tests.e2e.test_node_parity import NodeServer
from tests.helpers.audio_fixtures import write_audio
from tests.helpers.head_factory import FakeFrameEncoder
from tests.unit._audio_corpus import SOURCE_RATE, make_audio_corpus, signal

pytestmark = pytest.mark.slow


def _train_small_head(common: CommonConfig, name: str) -> dict:
    """A seconds-long head on the folder's frames: the one training configuration of this module."""
    cfg = TrainHeadConfig(
        common=common, name=name, split="track", val_fraction=0.25, test_fraction=0.25, epochs=6, batch_size=8,
        hidden=32, out_dim=16, threads=1,
    )  # fmt: skip
    return train_head.run(cfg)


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArtifactLayout]:
    root = tmp_path_factory.mktemp("head_e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(
            registry.MODELS,
            "fake-frames",
            registry.Entry("tests.helpers.head_factory:load_fake_frames", {}, "test", {"version": None}),
        )
        src = make_audio_corpus(root, 12, seconds=3.0, model="fake-frames")
        common = CommonConfig(artifacts_root=root, model="fake-frames", version_dir=src.version_dir)
        embed.run(
            EmbedConfig(common=common, frames="bands", views=2, view_sec=1.5, view_chain="query"),
            encoder=FakeFrameEncoder(),
        )
        meta = _train_small_head(common, "e2e")
        layout = ArtifactLayout(root / meta["artifact_version"])
        build_index.run(BuildIndexConfig(common=CommonConfig(version_dir=layout.version_dir), neighbors_k=5))
        yield layout


def test_the_head_folder_validates(head_dir: ArtifactLayout) -> None:
    assert head_dir.version_dir.name == "v1_model_fake-frames_head-e2e"
    assert artifact_checks.check(head_dir) == []
    res = CliRunner().invoke(cli, ["validate", "--version-dir", str(head_dir.version_dir)])
    assert res.exit_code == 0, res.output
    assert (head_dir.audio_cache_dir).is_symlink()


def test_node_serves_the_head_folder(head_dir: ArtifactLayout) -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the Node API test needs Node 20")
    vectors, ids, _ = load_embeddings(head_dir)
    ref = search(vectors, ids, vectors, ids, 3)
    srv = NodeServer(head_dir.version_dir, "exact")
    try:
        for i in (0, 4, 11):
            status, body = srv.get(f"/tracks/{ids[i]}/nearest?k=3")
            assert status == 200, body
            assert [h["track_id"] for h in body["hits"]] == [ids[r] for r in ref.rows[i]]
            np.testing.assert_allclose([h["score"] for h in body["hits"]], ref.scores[i], atol=1e-5)
    finally:
        srv.close()


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        registry.MODELS,
        "fake-frames",
        registry.Entry("tests.helpers.head_factory:load_fake_frames", {}, "test", {"version": None}),
    )


def test_find_similar_queries_through_the_head(
    head_dir: ArtifactLayout, fake_registry: None, tmp_path: Path
) -> None:
    q = write_audio(tmp_path / "q.flac", signal(4, 3.0), SOURCE_RATE, "flac")
    res = find_similar(q, head_dir, k=3)
    assert res["head"] == "e2e" and res["model"] == "fake-frames+head:e2e"
    assert res["results"][0]["track_id"] == "t04" and res["results"][0]["score"] > 0.99
    out = CliRunner().invoke(
        cli, ["find-similar", "--version-dir", str(head_dir.version_dir), "--query", str(q), "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["results"][0]["track_id"] == "t04"


def test_excerpt_evaluation_runs_through_the_head(head_dir: ArtifactLayout, fake_registry: None) -> None:
    """evaluate --task excerpt (research_job.excerpt) queries the head's test tracks, frozen beside it."""
    from research_job.heads import test_rows
    from research_job.steps import evaluate
    from research_job.steps.evaluate import EvaluateConfig

    res = evaluate.run(
        EvaluateConfig(
            common=CommonConfig(version_dir=head_dir.version_dir),
            task="excerpt",
            excerpt_sec=1.5,
            excerpt_chain="none",
            bootstrap_resamples=20,
        )
    )
    assert res["n_queries"] == len(test_rows(head_dir)) == 3 and res["frozen"] is not None
    assert res["n_candidates"] == 12


def test_find_similar_refuses_a_mismatching_backbone_or_head(
    head_dir: ArtifactLayout, fake_registry: None, tmp_path: Path
) -> None:
    q = write_audio(tmp_path / "q.wav", signal(4, 3.0), SOURCE_RATE, "wav")
    with pytest.raises(ModelError, match=r"version: artifacts '1' vs loaded '2'"):
        find_similar(q, head_dir, encoder=FakeFrameEncoder("2"))
    copy = ArtifactLayout(tmp_path / head_dir.version_dir.name)
    shutil.copytree(head_dir.version_dir, copy.version_dir, symlinks=True)
    # head_meta.json says another backbone version
    meta = schema.read_artifact(copy.head_meta, "head_meta")
    meta["backbone"]["model"]["version"] = "0"
    schema.write_artifact(copy.head_meta, "head_meta", meta)
    with pytest.raises(ModelError, match=r"version: artifacts '0' vs loaded '1'"):
        find_similar(q, copy)
    meta["backbone"]["model"]["version"] = "1"
    schema.write_artifact(copy.head_meta, "head_meta", meta)
    # head.pt is not the recorded head
    recorded = meta["files"]["head_sha256"]
    with open(copy.head_pt, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match=rf"head.pt: sha256 [0-9a-f]{{64}} differs from .* {recorded}"):
        find_similar(q, copy)
    # head_meta.json names another head than the embeddings were made with
    meta["files"]["head_sha256"] = "0" * 64
    schema.write_artifact(copy.head_meta, "head_meta", meta)
    with pytest.raises(ArtifactError, match=rf"weights '{recorded}'.*'{'0' * 64}'"):
        find_similar(q, copy)


def test_evaluate_puts_head_and_frozen_side_by_side_on_the_test_split(head_dir: ArtifactLayout) -> None:
    from research_job.heads import test_rows
    from research_job.steps import evaluate
    from research_job.steps.evaluate import EvaluateConfig, score_vectors

    res = evaluate.run(
        EvaluateConfig(common=CommonConfig(version_dir=head_dir.version_dir), bootstrap_resamples=50)
    )
    hc = res["head_comparison"]
    rows = sorted(test_rows(head_dir))
    assert hc["split"] == "track" and hc["n_test"] == len(rows) >= 3
    # the frozen block is exactly the frozen vectors scored on the same test tracks
    vectors, ids, _ = load_embeddings(head_dir)
    frozen = np.fromfile(head_dir.path("head_frozen"), dtype="<f4").reshape(len(ids), -1)
    meta = {r.track_id: r for r in read_tracks_csv(head_dir.tracks_csv)}
    sub = [ids[i] for i in rows]
    cfg = EvaluateConfig(common=CommonConfig(version_dir=head_dir.version_dir), bootstrap_resamples=50)
    ref = score_vectors(
        frozen[rows], sub, [meta[t].composer for t in sub], [meta[t].album_id for t in sub], cfg
    )
    assert hc["frozen"]["overall"] == ref.block["overall"]
    assert hc["head"]["n_tracks"] == hc["frozen"]["n_tracks"] == len(rows)
    assert "test split" in evaluate.format_table(res)


FUSED = "fusion:fake-frames+fake-frames?version=2"


def test_a_head_trains_on_a_fusions_fused_frames_and_queries_through_it(
    fake_registry: None, tmp_path: Path
) -> None:
    """The default model is a fusion: its frames (each layer of every member side by side) feed train-head, and
    find-similar queries through the fusion and the head."""
    src = make_audio_corpus(tmp_path, 12, seconds=3.0, model=FUSED)
    common = CommonConfig(artifacts_root=tmp_path, model=FUSED, version_dir=src.version_dir)
    embed.run(EmbedConfig(common=common, frames="bands", views=2, view_sec=1.5, view_chain="query"))
    frames_meta = schema.read_artifact(common.layout.frames_meta, "frames_meta")
    assert frames_meta["layers"] == [{"name": "bands", "dim": 24, "offset": 0}]
    meta = _train_small_head(common, "fused")
    assert meta["backbone"]["model"]["name"] == FUSED and meta["in_dim"] == 24
    layout = ArtifactLayout(tmp_path / meta["artifact_version"])
    build_index.run(BuildIndexConfig(common=CommonConfig(version_dir=layout.version_dir), neighbors_k=5))
    assert artifact_checks.check(layout) == []
    q = write_audio(tmp_path / "q.flac", signal(4, 3.0), SOURCE_RATE, "flac")
    res = find_similar(q, layout, k=3)
    assert res["model"] == f"{FUSED}+head:fused" and res["results"][0]["track_id"] == "t04"
