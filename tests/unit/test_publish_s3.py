"""S3 publishing against moto's S3 server over HTTP: publish, verify, tamper, interrupt, no-op, conflict, multipart.

Bucket versioning is on in every test bucket, so the number of stored versions of a key counts the PUTs the
server accepted (the no-op test uses it).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.errors import ArtifactError
from research_job.publish.s3 import latest_key, publish_s3, read_latest, verify_published
from research_job.schema import validate
from research_job.steps import evaluate
from research_job.steps.evaluate import EvaluateConfig
from tests.helpers.artifact_factory import make_version
from tests.helpers.publish_fixtures import FAKE_AWS_ENV, moto_s3_server, object_versions, s3_client

pytestmark = pytest.mark.network_services
PREFIX = "vector-artifacts"
SECRET = "s3cr3t-never-logged-7f3a"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    for k, v in {**FAKE_AWS_ENV, "AWS_SECRET_ACCESS_KEY": SECRET}.items():
        mp.setenv(k, v)
    with moto_s3_server() as url:
        yield url
    mp.undo()


@pytest.fixture
def bucket(endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "t-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:20]
    c = _client(endpoint)
    c.create_bucket(Bucket=name)
    c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def client(endpoint: str) -> Any:
    return _client(endpoint)


_CLIENTS: dict[str, Any] = {}


def _client(endpoint: str) -> Any:
    # one client per server: making a boto3 client costs ~0.5 s (service model loading)
    if endpoint not in _CLIENTS:
        _CLIENTS[endpoint] = s3_client(endpoint)
    return _CLIENTS[endpoint]


def _publish(version_dir: Path, bucket: str, endpoint: str, **kw: Any) -> dict[str, Any]:
    return publish_s3(version_dir, bucket=bucket, prefix=PREFIX, client=_client(endpoint), **kw)


def _verify(bucket: str, endpoint: str, dest: Path, **kw: Any) -> dict[str, Any]:
    return verify_published(bucket, PREFIX, "fake-model", dest=dest, client=_client(endpoint), **kw)


def _keys(client: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_publish_then_verify_round_trip(
    tmp_path: Path, bucket: str, endpoint: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c = make_version(tmp_path / "art", n=60, dim=8)
    v = c.layout.version_dir
    (v / "audio_wav").mkdir()
    (v / "audio_wav/t00001.wav").write_bytes(b"RIFF" + b"\x00" * 64)
    (v / "embeddings/partial").mkdir()
    (v / "embeddings/partial/ckpt.npy").write_bytes(b"x")
    (v / "eval/leftover.json.tmp").write_text("{")
    with caplog.at_level(logging.DEBUG):  # credentials from the env chain, client made by publish_s3
        r = publish_s3(v, bucket=bucket, prefix=PREFIX, endpoint_url=endpoint)
    assert SECRET not in caplog.text
    assert r["status"] == "published" and r["latest_moved"] and r["uploaded"] == r["files"]
    prefix = f"{PREFIX}/v1_model_fake-model/20261122T040000Z/"
    keys = _keys(client, bucket)
    assert f"{prefix}manifest.json" in keys and latest_key(PREFIX, "v1_model_fake-model") in keys
    assert not any(k.endswith((".wav", ".npy", ".tmp")) for k in keys)

    pointer = read_latest(client, bucket, PREFIX, "v1_model_fake-model")
    assert pointer is not None
    validate("latest_pointer", pointer)
    raw = client.get_object(Bucket=bucket, Key=pointer["manifest_key"])["Body"].read()
    assert hashlib.sha256(raw).hexdigest() == pointer["manifest_sha256"]
    manifest = json.loads(raw)
    validate("manifest", manifest)
    assert {prefix + f["path"] for f in manifest["files"]} | {prefix + "manifest.json"} == {
        k for k in keys if k.startswith(prefix)
    }
    head = client.head_object(Bucket=bucket, Key=prefix + "embeddings/embeddings.f32")
    assert head["Metadata"]["sha256"] == hashlib.sha256(c.layout.embeddings_f32.read_bytes()).hexdigest()

    got = _verify(bucket, endpoint, tmp_path / "cache")
    assert got["downloaded"] == len(manifest["files"]) and got["cached"] == 0
    for f in manifest["files"]:
        assert (got["dir"] / f["path"]).read_bytes() == (v / f["path"]).read_bytes()
    emb = np.fromfile(got["dir"] / "embeddings/embeddings.f32", dtype="<f4").reshape(60, 8)
    np.testing.assert_array_equal(emb, c.vectors)
    again = _verify(bucket, endpoint, tmp_path / "cache")
    assert (again["downloaded"], again["cached"]) == (0, len(manifest["files"]))


def test_tampered_object_is_refused_naming_the_file(
    tmp_path: Path, bucket: str, endpoint: str, client: Any
) -> None:
    c = make_version(tmp_path / "art", n=30, dim=4)
    r = _publish(c.layout.version_dir, bucket, endpoint)
    key = r["version_prefix"] + "eval/eval_results.json"
    # overwrite with other bytes, even keeping the sha256 metadata: only re-hashing catches it
    old = client.head_object(Bucket=bucket, Key=key)
    client.put_object(Bucket=bucket, Key=key, Body=b'{"schema_version": "1.0"}', Metadata=old["Metadata"])
    with pytest.raises(ArtifactError, match=r"eval/eval_results\.json: size \d+ != manifest"):
        _verify(bucket, endpoint, tmp_path / "cache")
    assert not (tmp_path / "cache/v1_model_fake-model/20261122T040000Z/eval/eval_results.json").exists()

    # same size, different bytes: the sha256 check names it
    emb_key = r["version_prefix"] + "embeddings/embeddings.f32"
    data = bytearray(c.layout.embeddings_f32.read_bytes())
    data[0] ^= 0x01
    client.put_object(Bucket=bucket, Key=emb_key, Body=bytes(data))
    with pytest.raises(ArtifactError, match=r"embeddings/embeddings\.f32: (size|sha256) .* != manifest"):
        _verify(bucket, endpoint, tmp_path / "cache2")

    # a tampered manifest no longer matches the latest pointer
    mraw = client.get_object(Bucket=bucket, Key=r["manifest_key"])["Body"].read()
    client.put_object(Bucket=bucket, Key=r["manifest_key"], Body=mraw.replace(b'"count": 30', b'"count": 31'))
    with pytest.raises(ArtifactError, match=r"manifest\.json: sha256 .* != latest pointer"):
        _verify(bucket, endpoint, tmp_path / "cache3")

    # re-publishing repairs the broken objects (they no longer match the manifest) without a conflict
    r2 = _publish(c.layout.version_dir, bucket, endpoint)
    assert r2["status"] == "repaired" and r2["uploaded"] == 2
    _verify(bucket, endpoint, tmp_path / "cache4")


def test_interrupted_publish_keeps_previous_latest(
    tmp_path: Path, bucket: str, endpoint: str, client: Any
) -> None:
    a = make_version(tmp_path / "a", n=40, dim=8, seed=1, created_at="2026-11-20T00:00:00Z")
    ra = _publish(a.layout.version_dir, bucket, endpoint)
    pointer_a = read_latest(client, bucket, PREFIX, "v1_model_fake-model")
    b = make_version(tmp_path / "b", n=40, dim=8, seed=2, created_at="2026-11-21T00:00:00Z")
    done: list[str] = []

    def crash_after_half(path: str) -> None:
        done.append(path)
        if len(done) == 4:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        _publish(b.layout.version_dir, bucket, endpoint, max_concurrency=1, on_file_done=crash_after_half)
    keys = _keys(client, bucket)
    b_prefix = f"{PREFIX}/v1_model_fake-model/20261121T000000Z/"
    assert any(k.startswith(b_prefix) for k in keys), "some files of the new release were uploaded"
    assert b_prefix + "manifest.json" not in keys, "the manifest goes up only after every file"
    assert read_latest(client, bucket, PREFIX, "v1_model_fake-model") == pointer_a
    got = _verify(bucket, endpoint, tmp_path / "cache")
    assert got["manifest"]["release"] == "20261120T000000Z"
    assert hashlib.sha256((got["dir"] / "manifest.json").read_bytes()).hexdigest() == ra["manifest_sha256"]
    np.testing.assert_array_equal(
        np.fromfile(got["dir"] / "embeddings/embeddings.f32", dtype="<f4").reshape(40, 8), a.vectors
    )

    # running it again resumes: the verified objects are not uploaded again, then latest moves
    rb = _publish(b.layout.version_dir, bucket, endpoint)
    assert rb["status"] == "published" and rb["skipped"] >= 4 and rb["latest_moved"]
    assert read_latest(client, bucket, PREFIX, "v1_model_fake-model")["release"] == "20261121T000000Z"
    # the old release is still complete and can be fetched by name
    old = _verify(bucket, endpoint, tmp_path / "cache", release="20261120T000000Z")
    assert old["cached"] == old["manifest"]["files"].__len__()


def test_republish_identical_content_is_a_no_op(
    tmp_path: Path, bucket: str, endpoint: str, client: Any
) -> None:
    c = make_version(tmp_path / "art", n=30, dim=4)
    r1 = _publish(c.layout.version_dir, bucket, endpoint)
    before = object_versions(client, bucket)
    assert before and all(n == 1 for n in before.values())
    r2 = _publish(c.layout.version_dir, bucket, endpoint)
    assert r2["status"] == "unchanged" and r2["uploaded"] == 0 and not r2["latest_moved"]
    assert r2["manifest_sha256"] == r1["manifest_sha256"]
    assert object_versions(client, bucket) == before, "the server stored no new object version: no PUT"


def test_different_content_is_refused_then_forced(
    tmp_path: Path, bucket: str, endpoint: str, client: Any
) -> None:
    c = make_version(tmp_path / "art", n=30, dim=4)
    v = c.layout.version_dir
    _publish(v, bucket, endpoint)
    # a rerun of evaluate with another seed: other intervals (validate recomputes them), and the sample files
    ev = evaluate.run(EvaluateConfig(common=CommonConfig(version_dir=v), bootstrap_resamples=100, seed=1))
    before = object_versions(client, bucket)
    with pytest.raises(
        ArtifactError,
        match=r"different content: changed eval/eval_results\.json, added eval/sample_top5\.json, "
        r"added eval/sample_top5\.md",
    ):
        _publish(v, bucket, endpoint)
    assert object_versions(client, bucket) == before, "a refused publish writes nothing"

    r = _publish(v, bucket, endpoint, force=True)
    assert r["status"] == "overwritten" and r["uploaded"] == 3
    got = _verify(bucket, endpoint, tmp_path / "cache")
    assert json.loads((got["dir"] / "eval/eval_results.json").read_text())["overall"] == ev["overall"]

    # forcing a release without a file deletes the stale object
    (v / "eval/sample_top5.md").unlink()
    r = _publish(v, bucket, endpoint, force=True)
    assert r["deleted_stale"] == 1
    assert r["version_prefix"] + "eval/sample_top5.md" not in _keys(client, bucket)


def test_multipart_upload_is_verified(tmp_path: Path, bucket: str, endpoint: str, client: Any) -> None:
    c = make_version(tmp_path / "art", n=30, dim=4)
    v = c.layout.version_dir
    (v / "audio_wav").mkdir()
    big = np.random.default_rng(3).integers(0, 256, size=6 * 1024 * 1024 + 123, dtype=np.uint8).tobytes()
    (v / "audio_wav/t00000.wav").write_bytes(big)
    r = _publish(
        v,
        bucket,
        endpoint,
        include_audio=True,
        multipart_threshold=1024 * 1024,
        multipart_chunksize=5 * 1024 * 1024,
    )
    assert r["multipart_uploads"] == 1
    head = client.head_object(Bucket=bucket, Key=r["version_prefix"] + "audio_wav/t00000.wav")
    assert head["ETag"].strip('"').endswith("-2"), "6 MiB in 5 MiB parts: a two-part upload"
    assert head["ContentLength"] == len(big) and head["Metadata"]["sha256"] == hashlib.sha256(big).hexdigest()
    got = _verify(bucket, endpoint, tmp_path / "cache")
    assert (got["dir"] / "audio_wav/t00000.wav").read_bytes() == big


def test_threshold_one_byte_forces_multipart_on_small_files(
    tmp_path: Path, bucket: str, endpoint: str, client: Any
) -> None:
    c = make_version(tmp_path / "art", n=20, dim=4)
    r = _publish(c.layout.version_dir, bucket, endpoint, multipart_threshold=1)
    assert r["multipart_uploads"] == r["files"]
    head = client.head_object(Bucket=bucket, Key=r["version_prefix"] + "embeddings/track_ids.json")
    assert head["ETag"].strip('"').endswith("-1")
    _verify(bucket, endpoint, tmp_path / "cache")
    # other transfer settings the second time: objects are matched on size + sha256, not on the ETag
    before = object_versions(client, bucket)
    r2 = _publish(c.layout.version_dir, bucket, endpoint)
    assert (r2["status"], r2["uploaded"]) == ("unchanged", 0)
    assert object_versions(client, bucket) == before


def test_nothing_published_and_missing_bucket_are_named(tmp_path: Path, bucket: str, endpoint: str) -> None:
    with pytest.raises(ArtifactError, match=r"Nothing published for v1_model_other-model"):
        verify_published(bucket, PREFIX, "other-model", dest=tmp_path, endpoint_url=endpoint)
    c = make_version(tmp_path / "art", n=10, dim=4)
    from research_job.errors import StorageError

    with pytest.raises(StorageError, match="NoSuchBucket"):
        _publish(c.layout.version_dir, "no-such-bucket-x", endpoint)


def test_step_run_from_config_layers(tmp_path: Path, bucket: str, endpoint: str) -> None:
    from research_job.config import build_config
    from research_job.errors import ConfigError
    from research_job.steps import publish
    from research_job.steps.publish import PublishConfig

    c = make_version(tmp_path / "art", n=10, dim=4)
    cfg = build_config(
        PublishConfig,
        section="publish",
        file_data={"publish": {"bucket": bucket, "endpoint_url": endpoint, "release": "from-file"}},
        env={"RESEARCH_JOB_MULTIPART_THRESHOLD": "1"},
        overrides={"version_dir": str(c.layout.version_dir)},
    )
    assert cfg.multipart_threshold == 1 and cfg.prefix == PREFIX and cfg.to == "s3"
    r = publish.run(cfg)
    assert (r["status"], r["release"], r["multipart_uploads"]) == ("published", "from-file", r["files"])
    with pytest.raises(ConfigError, match=r"Unknown publish target 'gcs'. Known: pgvector, s3"):
        publish.run(build_config(PublishConfig, section="publish", overrides={"to": "gcs"}, env={}))
    with pytest.raises(ConfigError, match="needs a bucket"):
        publish.run(
            build_config(
                PublishConfig, section="publish", overrides={"version_dir": str(c.layout.version_dir)}, env={}
            )
        )
