"""embed: row order, rejection of silent / NaN / zero / undecodable tracks, resume after interruption, postprocess."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from research_job import embeddings, schema
from research_job.errors import ArtifactError, ConfigError
from research_job.io.track_audio import VersionFolderAudio
from research_job.steps import embed
from research_job.steps.embed import EmbedConfig
from tests.unit._core_corpus import make_corpus

SR = 8000


class FakeEncoder:
    """Content-dependent toy encoder; marker samples trigger NaN / zero outputs or an exception."""

    name = "fake"
    dim = 8
    sample_rate = SR

    def __init__(self, version: str = "1") -> None:
        self.calls: list[int] = []
        self.version = version

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(batch), self.dim), np.float32)
        for i, w in enumerate(batch):
            self.calls.append(w.size)
            if w[0] == np.float32(0.5):
                out[i] = np.nan
            elif w[0] == np.float32(0.25):
                out[i] = 0.0
            elif w[0] == np.float32(0.125):
                raise RuntimeError("model blew up")
            else:
                out[i] = [np.sum(w[d :: self.dim] ** 2) + d for d in range(self.dim)]
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": "fake",
            "version": self.version,
            "weights_sha256": None,
            "pooling": "mean",
            "layer": None,
            "params": {},
        }


def _cfg(common: Any, **kw: Any) -> EmbedConfig:
    return EmbedConfig(common=common, **{"batch_size": 3, "checkpoint_every": 4, **kw})


def _poke(common: Any, track: str, first: float) -> None:
    path = common.layout.wav(track)
    w, sr = sf.read(path, dtype="float32")
    w[0] = first
    sf.write(path, w, sr, subtype="FLOAT")


def test_embed_writes_normalised_rows_in_csv_order(tmp_path: Path) -> None:
    common = make_corpus(tmp_path, SR, n=7)
    meta = embed.run(_cfg(common), encoder=FakeEncoder())
    vecs, ids, meta2 = embeddings.load_embeddings(common.layout)
    assert ids == [f"t{i:02d}" for i in range(7)]
    assert meta == meta2 and meta["count"] == 7 and meta["dim"] == 8
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    assert meta["failures"] == [] and meta["stats"]["audio_sec"] == pytest.approx(7.0)
    assert not common.layout.embed_checkpoint_dir.exists()
    assert (common.layout.embeddings_f32.stat().st_size) == 7 * 8 * 4


@pytest.mark.parametrize("ahead", [0, 1, 8])
def test_bad_tracks_are_reported_and_skipped(tmp_path: Path, ahead: int) -> None:
    """Also: decoding inline (0) or ahead in a thread (1, 8) gives the same rows, failures and order."""
    common = make_corpus(tmp_path, SR, n=8, silent=[1])
    _poke(common, "t02", 0.5)  # NaN output
    _poke(common, "t03", 0.25)  # zero vector
    _poke(common, "t04", 0.125)  # the model raises
    common.layout.wav("t05").write_bytes(b"not audio at all")  # decode failure
    common.layout.wav("t06").unlink()  # missing file
    meta = embed.run(_cfg(common, decode_ahead=ahead), encoder=FakeEncoder())
    _, ids, _ = embeddings.load_embeddings(common.layout)
    assert ids == ["t00", "t07"]
    reasons = {f["track_id"]: (f["stage"], f["reason"]) for f in meta["failures"]}
    assert list(reasons) == ["t01", "t02", "t03", "t04", "t05", "t06"]  # CSV order
    assert reasons["t01"][0] == "validate" and "silent" in reasons["t01"][1]
    assert "non-finite" in reasons["t02"][1]
    assert "near-zero" in reasons["t03"][1]
    assert "model blew up" in reasons["t04"][1]
    assert reasons["t05"][0] == "decode" and reasons["t06"][0] == "decode"
    assert meta["stats"]["n_failed"] == 6 and meta["stats"]["n_embedded"] == 2


def test_all_tracks_failing_raises(tmp_path: Path) -> None:
    common = make_corpus(tmp_path, SR, n=3, silent=[0, 1, 2])
    with pytest.raises(ArtifactError, match="All 3 tracks failed"):
        embed.run(_cfg(common), encoder=FakeEncoder())
    assert not common.layout.embeddings_f32.exists()


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_identical_output(tmp_path: Path) -> None:
    ref = make_corpus(tmp_path / "ref", SR, n=11, silent=[3])
    embed.run(_cfg(ref), encoder=FakeEncoder())
    ref_bytes = ref.layout.embeddings_f32.read_bytes()
    ref_ids = ref.layout.track_ids_json.read_bytes()

    common = make_corpus(tmp_path / "run", SR, n=11, silent=[3])

    def stop(done: int) -> None:
        if done >= 8:
            raise Interrupt

    with pytest.raises(Interrupt):
        embed.run(_cfg(common), encoder=FakeEncoder(), on_chunk_committed=stop)
    part = common.layout.embed_checkpoint_dir
    assert sorted(p.name for p in part.glob("chunk_*.json")) == ["chunk_00000.json", "chunk_00001.json"]
    assert not common.layout.embeddings_f32.exists()
    enc = FakeEncoder()
    meta = embed.run(_cfg(common), encoder=enc)
    assert len(enc.calls) == 3  # only t08, t09, t10 are embedded again
    assert common.layout.embeddings_f32.read_bytes() == ref_bytes
    assert common.layout.track_ids_json.read_bytes() == ref_ids
    assert [f["track_id"] for f in meta["failures"]] == ["t03"]
    assert not part.exists()


def test_checkpoints_of_another_model_are_discarded(tmp_path: Path) -> None:
    common = make_corpus(tmp_path, SR, n=6)

    def stop(done: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        embed.run(_cfg(common), encoder=FakeEncoder("1"), on_chunk_committed=stop)
    enc = FakeEncoder("2")
    embed.run(_cfg(common), encoder=enc)
    assert len(enc.calls) == 6


@pytest.mark.parametrize("kind", ["center", "standardize", "pca_whiten"])
def test_postprocess_recorded_and_reapplied(tmp_path: Path, kind: str) -> None:
    common = make_corpus(tmp_path, SR, n=12)
    meta = embed.run(_cfg(common, postprocess=kind), encoder=FakeEncoder())
    assert meta["postprocess"]["type"] == kind and meta["postprocess"]["fitted_on"] == 12
    schema.validate("embeddings_meta", meta)
    vecs, ids, _ = embeddings.load_embeddings(common.layout)
    enc = FakeEncoder()
    raw = np.stack([enc.embed([sf.read(common.layout.wav(t), dtype="float32")[0]])[0] for t in ids])
    again = embeddings.apply_postprocess(raw, common.layout)
    np.testing.assert_allclose(again, vecs, atol=1e-6)
    none_dir = make_corpus(tmp_path / "none", SR, n=12)
    embed.run(_cfg(none_dir, postprocess="none"), encoder=FakeEncoder())
    plain, _, _ = embeddings.load_embeddings(none_dir.layout)
    assert not np.allclose(plain, vecs, atol=1e-3)  # the transform really changed the vectors


def test_meta_is_schema_valid_and_json_sorted(tmp_path: Path) -> None:
    common = make_corpus(tmp_path, SR, n=4)
    embed.run(_cfg(common), encoder=FakeEncoder())
    meta = schema.read_artifact(common.layout.embeddings_meta, "embeddings_meta")
    assert meta["artifact_version"] == "v1_model_test"
    assert json.loads(common.layout.track_ids_json.read_text())["count"] == 4


def test_complete_output_is_reused_and_a_change_re_embeds(tmp_path: Path) -> None:
    common = make_corpus(tmp_path, SR, n=5)
    embed.run(_cfg(common), encoder=FakeEncoder())
    first = common.layout.embeddings_meta.read_bytes()
    enc = FakeEncoder()
    embed.run(_cfg(common), encoder=enc)
    assert enc.calls == [] and common.layout.embeddings_meta.read_bytes() == first
    enc2 = FakeEncoder("2")  # another model version: embed again
    embed.run(_cfg(common), encoder=enc2)
    assert len(enc2.calls) == 5
    # a corrupted output file is not reused
    common.layout.embeddings_f32.write_bytes(b"\0" * 8)
    enc3 = FakeEncoder("2")
    embed.run(_cfg(common), encoder=enc3)
    assert len(enc3.calls) == 5


def test_decode_ahead_keeps_order_and_waveforms(tmp_path: Path) -> None:
    common = make_corpus(tmp_path, SR, n=9)
    rows = embed.read_tracks_csv(common.layout.tracks_csv)
    inline = list(embed._decoded(VersionFolderAudio(common.layout, SR), rows, 0))
    ahead = list(embed._decoded(VersionFolderAudio(common.layout, SR), rows, 3))
    assert (
        [g.item.track_id for g in ahead]
        == [g.item.track_id for g in inline]
        == [f"t{i:02d}" for i in range(9)]
    )
    for a, b in zip(inline, ahead, strict=True):
        assert a.error is None and b.error is None and np.array_equal(a.value, b.value)
    with pytest.raises(embed.ConfigError, match="decode_ahead must be >= 0.*-1"):
        embed.run(_cfg(common, decode_ahead=-1), encoder=FakeEncoder())


def _bad_corpus(root: Path) -> Any:
    common = make_corpus(root, SR, n=10, silent=[1])
    _poke(common, "t02", 0.5)  # NaN output
    _poke(common, "t03", 0.25)  # zero vector
    _poke(common, "t04", 0.125)  # the model raises (its batch is retried one track at a time)
    common.layout.wav("t05").write_bytes(b"not audio at all")  # decode failure
    common.layout.wav("t06").unlink()  # missing file
    return common


def test_worker_processes_give_the_same_rows_failures_and_bytes(tmp_path: Path) -> None:
    one = _bad_corpus(tmp_path / "one")
    meta1 = embed.run(_cfg(one), encoder=FakeEncoder())
    two = _bad_corpus(tmp_path / "two")
    meta2 = embed.run(_cfg(two, processes=2, threads_per_process=1), encoder_factory=FakeEncoder)
    assert two.layout.embeddings_f32.read_bytes() == one.layout.embeddings_f32.read_bytes()
    assert two.layout.track_ids_json.read_bytes() == one.layout.track_ids_json.read_bytes()

    def failures(meta: dict[str, Any], root: Path) -> list[dict[str, str]]:
        return [{**f, "reason": f["reason"].replace(str(root), "<root>")} for f in meta["failures"]]

    assert failures(meta2, tmp_path / "two") == failures(meta1, tmp_path / "one")
    assert [f["stage"] for f in meta2["failures"]] == [
        "validate",
        "embed",
        "embed",
        "embed",
        "decode",
        "decode",
    ]
    assert meta2["stats"]["n_embedded"] == 4 and meta2["stats"]["audio_sec"] == pytest.approx(4.0)
    assert not two.layout.embed_checkpoint_dir.exists()


def test_worker_processes_resume_an_interrupted_run(tmp_path: Path) -> None:
    ref = _bad_corpus(tmp_path / "ref")
    embed.run(_cfg(ref), encoder=FakeEncoder())
    common = _bad_corpus(tmp_path / "run")

    def stop_after_first(n_done: int) -> None:
        raise Interrupt(n_done)

    with pytest.raises(Interrupt):
        embed.run(_cfg(common, processes=2), encoder_factory=FakeEncoder, on_chunk_committed=stop_after_first)
    assert list(common.layout.embed_checkpoint_dir.glob("chunk_*.json"))  # something was committed
    embed.run(_cfg(common, processes=2), encoder_factory=FakeEncoder)
    assert common.layout.embeddings_f32.read_bytes() == ref.layout.embeddings_f32.read_bytes()
    assert common.layout.track_ids_json.read_bytes() == ref.layout.track_ids_json.read_bytes()


def test_auto_processes_start_one_worker_per_cpu_only_for_a_catalogue_sized_cpu_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embed, "_usable_cpus", lambda: 2)
    auto = EmbedConfig()
    assert auto.processes == 0
    n = embed.AUTO_MIN_TRACKS
    assert embed.effective_processes(auto, n, loaded_encoder_only=False) == 2
    assert embed.effective_processes(auto, n - 1, loaded_encoder_only=False) == 1
    assert embed.effective_processes(auto, n, loaded_encoder_only=True) == 1
    for kw in ({"device": "cuda"}, {"decode_ahead": 4}, {"engine": "ray"}):
        assert embed.effective_processes(EmbedConfig(**kw), n, loaded_encoder_only=False) == 1, kw
    assert embed.effective_processes(EmbedConfig(processes=1), n, loaded_encoder_only=False) == 1
    assert embed.effective_processes(EmbedConfig(processes=3), 1, loaded_encoder_only=False) == 3
    monkeypatch.setattr(embed, "_usable_cpus", lambda: 1)
    assert embed.effective_processes(auto, 10 * n, loaded_encoder_only=False) == 1
    monkeypatch.setattr(embed, "_usable_cpus", lambda: 64)
    assert embed.effective_processes(auto, n, loaded_encoder_only=False) == embed.AUTO_MAX_PROCESSES


def test_auto_processes_run_workers_and_give_the_rows_of_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embed, "AUTO_MIN_TRACKS", 6)
    monkeypatch.setattr(embed, "_usable_cpus", lambda: 2)
    one = make_corpus(tmp_path / "one", SR, n=7)
    meta1 = embed.run(_cfg(one, processes=1), encoder=FakeEncoder())
    auto = make_corpus(tmp_path / "auto", SR, n=7)
    meta2 = embed.run(_cfg(auto), encoder_factory=FakeEncoder)
    assert meta1["engine"]["name"] == "inline"
    assert meta2["engine"]["name"] == "processes" and meta2["engine"]["workers"] == 2
    assert meta2["engine"]["threads_per_worker"] == 1
    assert auto.layout.embeddings_f32.read_bytes() == one.layout.embeddings_f32.read_bytes()
    # a loaded encoder (no factory) cannot go to workers: auto embeds in this process
    again = make_corpus(tmp_path / "again", SR, n=7)
    assert embed.run(_cfg(again), encoder=FakeEncoder())["engine"]["name"] == "inline"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"processes": -1},
            r"processes must be >= 0 \(0 = auto, 1 = embed in this process, N = N workers\), got -1",
        ),
        ({"processes": 2, "threads_per_process": 0}, r"threads_per_process must be >= 1 or unset, got 0"),
        ({"processes": 2, "device": "cuda"}, r"processes = 2 needs device 'cpu' \(got 'cuda'\)"),
        ({"processes": 2, "decode_ahead": 4}, r"decode_ahead = 4 applies to processes = 1 only"),
        ({"processes": 2}, r"processes > 1 loads the model in each worker process: pass encoder_factory"),
    ],
)
def test_worker_options_are_checked(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    common = make_corpus(tmp_path, SR, n=2)
    with pytest.raises(ConfigError, match=message):
        embed.run(_cfg(common, **kw), encoder=FakeEncoder())
