"""embed --incremental on the inline engine: what is copied from the base, what is embedded again, the counts.

Each test builds a base version folder and a new one from the same seeded tones (so unchanged tracks have the
same bytes, hence the same fingerprint), with the originals in ``audio_cache/`` as pull-audio leaves them; a
counting encoder shows which tracks reached the model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from research_job import embeddings, schema
from research_job.errors import ArtifactError, ConfigError
from research_job.io.audio import cached_path
from research_job.metadata import read_tracks_csv
from research_job.steps import embed
from research_job.steps.embed import EmbedConfig
from tests.unit._core_corpus import make_corpus, tone
from tests.unit.test_embed import SR, FakeEncoder


class CountingEncoder(FakeEncoder):
    """FakeEncoder that records the first sample of every waveform it embeds (each track's is distinct)."""

    def __init__(self, version: str = "1") -> None:
        super().__init__(version)
        self.firsts: list[float] = []

    def embed(self, batch: Any) -> np.ndarray:
        self.firsts += [float(w[0]) for w in batch]
        return super().embed(batch)


def _folder(root: Path, n: int = 8, like: Any = None) -> Any:
    """A version folder of ``n`` tones whose originals (the same WAVs) sit in ``audio_cache/``; with ``like``,
    the tracks it has get its very files (libsndfile stamps float WAVs with the time, so a rewrite differs)."""
    common = make_corpus(root, SR, n=n)
    for r in read_tracks_csv(common.layout.tracks_csv):
        wav = common.layout.wav(r.track_id)
        if like is not None and like.layout.wav(r.track_id).is_file():
            shutil.copyfile(like.layout.wav(r.track_id), wav)
        dest = cached_path(common.layout, r)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wav, dest)
    return common


def _rewrite(common: Any, track: str, seed: int) -> None:
    """Give ``track`` other audio, in both its original and its standardised WAV."""
    r = next(r for r in read_tracks_csv(common.layout.tracks_csv) if r.track_id == track)
    for path in (common.layout.wav(track), cached_path(common.layout, r)):
        sf.write(path, tone(seed, SR), SR, subtype="FLOAT")


def _cfg(common: Any, base: Path | None = None, **kw: Any) -> EmbedConfig:
    return EmbedConfig(
        common=common, batch_size=3, checkpoint_every=4, incremental=base is not None, base=base, **kw
    )


def _first(common: Any, track: str) -> float:
    return float(sf.read(common.layout.wav(track), dtype="float32")[0][0])


def test_unchanged_catalogue_copies_every_row_without_a_model_call(tmp_path: Path) -> None:
    base = _folder(tmp_path / "base")
    embed.run(_cfg(base), encoder=FakeEncoder())
    new = _folder(tmp_path / "new", like=base)
    enc = CountingEncoder()
    meta = embed.run(_cfg(new, base.layout.version_dir), encoder=enc)
    assert enc.firsts == []
    assert meta["incremental"]["copied"] == 8 and meta["incremental"]["reason"] is None
    assert meta["incremental"]["embedded_new"] == meta["incremental"]["embedded_changed"] == 0
    assert new.layout.raw_f32.read_bytes() == base.layout.raw_f32.read_bytes()
    assert new.layout.embeddings_f32.read_bytes() == base.layout.embeddings_f32.read_bytes()
    schema.read_artifact(new.layout.embeddings_meta, "embeddings_meta")
    schema.read_artifact(new.layout.embed_sources, "embed_sources")


def test_new_changed_and_removed_tracks_are_counted_and_only_they_are_embedded(tmp_path: Path) -> None:
    base = _folder(tmp_path / "base", n=8)
    embed.run(_cfg(base), encoder=FakeEncoder())
    new = _folder(tmp_path / "new", n=9, like=base)  # t08 is new
    _rewrite(new, "t03", seed=99)  # changed audio
    rows = [r for r in read_tracks_csv(new.layout.tracks_csv) if r.track_id != "t05"]  # t05 removed
    from research_job.metadata import write_tracks_csv

    write_tracks_csv(new.layout.tracks_csv, rows)
    enc = CountingEncoder()
    meta = embed.run(_cfg(new, base.layout.version_dir), encoder=enc)
    assert sorted(enc.firsts) == sorted([_first(new, "t03"), _first(new, "t08")])
    inc = meta["incremental"]
    assert (inc["copied"], inc["embedded_new"], inc["embedded_changed"], inc["removed"]) == (6, 1, 1, 1)

    full = _folder(tmp_path / "full", n=9, like=new)  # the same catalogue embedded from scratch
    write_tracks_csv(full.layout.tracks_csv, rows)
    embed.run(_cfg(full), encoder=FakeEncoder())
    v_inc, ids_inc, _ = embeddings.load_embeddings(new.layout)
    v_full, ids_full, _ = embeddings.load_embeddings(full.layout)
    assert ids_inc == ids_full == [r.track_id for r in rows]
    np.testing.assert_allclose(v_inc, v_full, atol=1e-6)  # the centring is refitted on the new corpus


def test_another_model_version_copies_nothing_and_says_why(tmp_path: Path) -> None:
    base = _folder(tmp_path / "base")
    embed.run(_cfg(base), encoder=FakeEncoder("1"))
    new = _folder(tmp_path / "new", like=base)
    enc = CountingEncoder("2")
    meta = embed.run(_cfg(new, base.layout.version_dir), encoder=enc)
    assert len(enc.firsts) == 8
    assert meta["incremental"]["copied"] == 0 and meta["incremental"]["embedded_new"] == 8
    assert "another model" in meta["incremental"]["reason"]


def test_failures_of_unchanged_audio_are_copied_and_missing_files_are_retried(tmp_path: Path) -> None:
    base = _folder(tmp_path / "base")
    rows = read_tracks_csv(base.layout.tracks_csv)
    for path in (base.layout.wav("t02"), cached_path(base.layout, rows[2])):
        path.write_bytes(b"not audio")  # a decode failure
    cached_path(base.layout, rows[6]).unlink()  # t06's original absent in the base (no fingerprint)
    base_meta = embed.run(_cfg(base), encoder=FakeEncoder())
    assert [f["track_id"] for f in base_meta["failures"]] == ["t02"]
    sources = json.loads(base.layout.embed_sources.read_text())
    assert next(t for t in sources["tracks"] if t["track_id"] == "t06")["size"] is None

    new = _folder(tmp_path / "new", like=base)
    enc = CountingEncoder()
    meta = embed.run(_cfg(new, base.layout.version_dir), encoder=enc)
    inc = meta["incremental"]
    assert (inc["copied"], inc["copied_failures"], inc["retried_missing"]) == (6, 1, 1)
    assert enc.firsts == [_first(new, "t06")]
    assert [f["track_id"] for f in meta["failures"]] == ["t02"]
    assert meta["failures"][0]["reason"] == base_meta["failures"][0]["reason"]


def test_a_tampered_base_is_not_trusted(tmp_path: Path) -> None:
    base = _folder(tmp_path / "base")
    embed.run(_cfg(base), encoder=FakeEncoder())
    raw = bytearray(base.layout.raw_f32.read_bytes())
    raw[0] ^= 0xFF
    base.layout.raw_f32.write_bytes(bytes(raw))
    new = _folder(tmp_path / "new", like=base)
    enc = CountingEncoder()
    meta = embed.run(_cfg(new, base.layout.version_dir), encoder=enc)
    assert len(enc.firsts) == 8 and meta["incremental"]["copied"] == 0
    assert "sha256" in meta["incremental"]["reason"]


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"incremental": True}, ConfigError, "--incremental needs --base"),
        ({"base": Path("elsewhere")}, ConfigError, "add --incremental or drop --base"),
        ({"incremental": True, "base": Path("elsewhere"), "frames": "penultimate"}, ConfigError, "frames"),
    ],
)
def test_incremental_options_are_checked(
    tmp_path: Path, kw: dict[str, Any], error: type[Exception], message: str
) -> None:
    common = _folder(tmp_path / "v")
    with pytest.raises(error, match=message):
        embed.run(EmbedConfig(common=common, **kw), encoder=FakeEncoder())


def test_a_base_that_is_not_a_folder_is_named(tmp_path: Path) -> None:
    common = _folder(tmp_path / "v")
    with pytest.raises(ArtifactError, match="is not a folder"):
        embed.run(_cfg(common, tmp_path / "no-such-version"), encoder=FakeEncoder())


def test_version_folder_fingerprints_take_the_pulled_etag_and_hash_only_without_one(tmp_path: Path) -> None:
    from research_job.io.track_audio import VersionFolderAudio
    from research_job.provenance import sha256_file

    common = _folder(tmp_path / "v", n=3)
    rows = read_tracks_csv(common.layout.tracks_csv)
    size = cached_path(common.layout, rows[0]).stat().st_size
    tracks = [
        {"track_id": "t00", "size_bytes": size, "etag": '"abc"'},  # as pulled: the ETag is trusted
        {"track_id": "t01", "size_bytes": size + 1, "etag": '"def"'},  # the file changed since: hashed
        {"track_id": "t02", "size_bytes": size, "etag": None},  # a store without ETags: hashed
    ]
    common.layout.pull_report.parent.mkdir(parents=True, exist_ok=True)
    common.layout.pull_report.write_text(json.dumps({"tracks": tracks}))
    fp = VersionFolderAudio(common.layout, SR).fingerprints(rows)
    assert fp["t00"] == {"size": size, "etag": '"abc"', "sha256": None}
    for t, r in (("t01", rows[1]), ("t02", rows[2])):
        assert fp[t] == {"size": size, "etag": None, "sha256": sha256_file(cached_path(common.layout, r))}


def test_ray_engine_with_nothing_to_embed_starts_no_cluster(tmp_path: Path) -> None:
    """Nor imports ray (whose import fixes Ray's settings, e.g. its auth mode, for the whole process)."""
    import sys

    imported_before = "ray" in sys.modules
    base = _folder(tmp_path / "base")
    embed.run(_cfg(base), encoder=FakeEncoder())
    new = _folder(tmp_path / "new", like=base)
    meta = embed.run(_cfg(new, base.layout.version_dir, engine="ray"), encoder=FakeEncoder())
    if imported_before:  # an earlier test imported it: the cluster must still not have been started
        assert not sys.modules["ray"].is_initialized()
    else:
        assert "ray" not in sys.modules
    assert meta["engine"]["name"] == "ray" and meta["engine"]["hosts"] == []
    assert meta["incremental"]["copied"] == 8


def test_a_failure_of_the_corpus_post_processing_is_tried_again(tmp_path: Path) -> None:
    """A track rejected only once centred (stage validate) failed because of that corpus, not of its audio."""
    from research_job.provenance import sha256_bytes

    base = _folder(tmp_path / "base")
    embed.run(_cfg(base), encoder=FakeEncoder())
    lay = base.layout  # make t03 a validate-stage failure of the base, as _finish writes one
    ids = json.loads(lay.track_ids_json.read_text())
    raw = np.fromfile(lay.raw_f32, dtype="<f4").reshape(8, -1)
    keep = [i for i, t in enumerate(ids["track_ids"]) if t != "t03"]
    data = np.ascontiguousarray(raw[keep]).tobytes()
    lay.raw_f32.write_bytes(data)
    src = json.loads(lay.embed_sources.read_text())
    src["raw"].update(sha256=sha256_bytes(data), count=7)
    lay.embed_sources.write_text(json.dumps(src))
    lay.track_ids_json.write_text(
        json.dumps({**ids, "track_ids": [ids["track_ids"][i] for i in keep], "count": 7})
    )
    meta = json.loads(lay.embeddings_meta.read_text())
    meta["failures"] = [
        {"track_id": "t03", "stage": "validate", "reason": "near-zero vector after postprocess"}
    ]
    meta["count"] = 7
    lay.embeddings_meta.write_text(json.dumps(meta))

    new = _folder(tmp_path / "new", like=base)
    enc = CountingEncoder()
    out = embed.run(_cfg(new, lay.version_dir), encoder=enc)
    assert out["incremental"]["retried_failures"] == 1 and out["incremental"]["copied"] == 7
    assert enc.firsts == [_first(new, "t03")] and out["failures"] == []
