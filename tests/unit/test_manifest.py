"""Manifest building: what is published, the content digest, consistency checks, diffs, release names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from research_job.errors import ArtifactError, ConfigError, SchemaValidationError
from research_job.publish.manifest import (
    build_manifest,
    check_release,
    content_digest,
    default_release,
    diff_manifests,
    is_published_path,
    scan_files,
    verify_file,
)
from research_job.schema import validate, write_artifact
from tests.helpers.artifact_factory import make_version


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("art")
    c = make_version(root, n=40, dim=8)
    v = c.layout.version_dir
    # things that must never be published by default
    (v / "audio_cache/al0000").mkdir(parents=True)
    (v / "audio_cache/al0000/t00000.m4a").write_bytes(b"\x00" * 100)
    # a real (schema-valid) pull report: reports are published and validated like every JSON artifact
    example = Path(__file__).parents[2] / "artifact_schema/examples/valid/pull_report.json"
    (v / "audio_cache/pull_report.json").write_text(example.read_text())
    (v / "audio_wav").mkdir()
    (v / "audio_wav/t00000.wav").write_bytes(b"RIFF")
    (v / "embeddings/partial").mkdir()
    (v / "embeddings/partial/chunk_0001.npy").write_bytes(b"x")
    (v / "eval/eval_results.json.tmp").write_text("{")
    return c


@pytest.mark.parametrize(
    ("rel", "audio", "expected"),
    [
        ("embeddings/embeddings.f32", False, True),
        ("eval/eval_results.json.tmp", False, False),
        ("eval/eval_results.json.tmp", True, False),
        ("embeddings/partial/x.npy", True, False),
        ("audio_cache/al/t.m4a", False, False),
        ("audio_cache/al/t.m4a", True, True),
        ("audio_wav/t.wav", False, False),
        ("audio_cache/pull_report.json", False, True),
        ("audio_wav/standardize_report.json", False, True),
        ("manifest.json", False, False),
        ("index/.DS_Store", False, False),
    ],
)
def test_is_published_path(rel: str, audio: bool, expected: bool) -> None:
    assert is_published_path(rel, include_audio=audio) is expected


def test_scan_skips_audio_and_intermediates(corpus) -> None:
    files = [p.as_posix() for p in scan_files(corpus.layout.version_dir)]
    assert "embeddings/embeddings.f32" in files and "index/hnsw.index" in files
    assert "audio_cache/pull_report.json" in files
    assert not any(f.endswith((".m4a", ".wav", ".tmp", ".npy")) for f in files)
    with_audio = [p.as_posix() for p in scan_files(corpus.layout.version_dir, include_audio=True)]
    assert set(with_audio) - set(files) == {"audio_cache/al0000/t00000.m4a", "audio_wav/t00000.wav"}
    assert files == sorted(files)


def test_manifest_lists_every_file_with_size_and_sha256(corpus) -> None:
    v = corpus.layout.version_dir
    m = build_manifest(v, published_at="2026-11-22T05:00:00Z")
    validate("manifest", m)
    assert (m["artifact_version"], m["model"], m["count"], m["dim"]) == (
        "v1_model_fake-model",
        "fake-model",
        40,
        8,
    )
    assert m["release"] == "20261122T040000Z"
    for f in m["files"]:
        data = (v / f["path"]).read_bytes()
        assert f["size_bytes"] == len(data)
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
    by_path = {f["path"]: f for f in m["files"]}
    assert by_path["embeddings/track_ids.json"]["schema"] == "track_ids"
    assert by_path["embeddings/track_ids.json"]["schema_version"] == "1.0"
    assert by_path["embeddings/embeddings.f32"]["schema"] is None


def test_content_digest_is_the_documented_formula(corpus) -> None:
    m = build_manifest(corpus.layout.version_dir)
    lines = "".join(
        f"{f['sha256']}  {f['size_bytes']}  {f['path']}\n"
        for f in sorted(m["files"], key=lambda f: f["path"])
    )
    assert m["content_sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert content_digest(list(reversed(m["files"]))) == m["content_sha256"]
    # published_at is not part of the content
    assert (
        build_manifest(corpus.layout.version_dir, published_at="2030-01-01T00:00:00Z")["content_sha256"]
        == m["content_sha256"]
    )


def test_diff_names_changed_added_removed_files(corpus) -> None:
    m = build_manifest(corpus.layout.version_dir)
    other = json.loads(json.dumps(m))
    other["files"][0]["sha256"] = "0" * 64
    other["files"].pop()
    other["files"].append({**m["files"][1], "path": "eval/new.json"})
    diffs = diff_manifests(m, other)
    assert f"changed {m['files'][0]['path']}" in diffs
    assert f"removed {m['files'][-1]['path']}" in diffs
    assert "added eval/new.json" in diffs
    assert diff_manifests(m, m) == []


def test_inconsistent_folder_is_refused(tmp_path: Path) -> None:
    c = make_version(tmp_path, n=10, dim=4, indexes=("hnswlib",))
    with open(c.layout.embeddings_f32, "ab") as f:
        f.write(b"\x00\x00\x00\x00")
    with pytest.raises(ArtifactError, match=r"embeddings\.f32 has 164 bytes, expected N x D x 4 = 160"):
        build_manifest(c.layout.version_dir)


def test_index_file_not_matching_index_meta_is_refused(tmp_path: Path) -> None:
    c = make_version(tmp_path, n=10, dim=4, indexes=("hnswlib",))
    c.layout.hnsw_index.write_bytes(c.layout.hnsw_index.read_bytes()[:-1] + b"\x01")
    with pytest.raises(ArtifactError, match=r"index/hnsw\.index: sha256 differs from index_meta\.json"):
        build_manifest(c.layout.version_dir)


def test_missing_required_file_is_named(tmp_path: Path) -> None:
    c = make_version(tmp_path, n=10, dim=4, indexes=("hnswlib",))
    c.layout.tracks_csv.unlink()
    with pytest.raises(ArtifactError, match=r"metadata/tracks_metadata\.csv: missing"):
        build_manifest(c.layout.version_dir)


def test_invalid_json_artifact_is_refused(tmp_path: Path) -> None:
    c = make_version(tmp_path, n=10, dim=4, indexes=("hnswlib",))
    ev = json.loads(c.layout.eval_results.read_text())
    ev["k"] = 0
    c.layout.eval_results.write_text(json.dumps(ev))
    with pytest.raises(SchemaValidationError, match="eval_results"):
        build_manifest(c.layout.version_dir)


def test_release_names() -> None:
    assert default_release("2026-11-22T04:00:00Z") == "20261122T040000Z"
    assert default_release("2026-11-22T05:00:00+01:00") == "20261122T040000Z"
    assert check_release("2026-rc.1") == "2026-rc.1"
    for bad in ["", "../x", "a/b", "-x", "x" * 65]:
        with pytest.raises(ConfigError, match="Bad release"):
            check_release(bad)


def test_verify_file_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "a.bin"
    p.write_bytes(b"abc")
    entry = {"path": "x/a.bin", "size_bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    verify_file(p, entry)
    p.write_bytes(b"abd")
    with pytest.raises(ArtifactError, match=r"x/a\.bin: sha256 .* != manifest"):
        verify_file(p, entry)
    p.write_bytes(b"ab")
    with pytest.raises(ArtifactError, match=r"x/a\.bin: size 2 != manifest 3"):
        verify_file(p, entry)


def test_factory_writes_schema_valid_json(corpus) -> None:
    # the generator itself goes through write_artifact; re-check the files as read back
    v = corpus.layout.version_dir
    for rel, name in [
        ("embeddings/embeddings_meta.json", "embeddings_meta"),
        ("embeddings/track_ids.json", "track_ids"),
        ("index/index_meta.json", "index_meta"),
        ("eval/eval_results.json", "eval_results"),
    ]:
        validate(name, json.loads((v / rel).read_text()))
    with pytest.raises(SchemaValidationError):
        write_artifact(v / "tmp.json", "track_ids", {"schema_version": "1.0"})
