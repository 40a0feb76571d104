"""pull-audio over the real S3 protocol (moto server + a fault-injecting proxy) and from a local directory."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.errors import StorageError
from research_job.metadata import TrackRow, write_tracks_csv
from research_job.schema import read_artifact
from research_job.steps import pull_audio
from research_job.steps.pull_audio import PullAudioConfig
from tests.helpers.s3server import FaultProxy

pytestmark = pytest.mark.network_services


def blob(i: int, size: int = 2048) -> bytes:
    return np.random.default_rng(100 + i).bytes(size + 37 * i)


def tracks(n: int, missing: tuple[int, ...] = (), prefix: str = "catalogue") -> list[TrackRow]:
    rows = []
    for i in range(n):
        ext = ["m4a", "mp3", "ogg", "flac", "wav"][i % 5]
        album = f"alb{i % 3}"
        key = f"{prefix}/{album}/trk{i}.{ext}" if i not in missing else f"{prefix}/{album}/absent{i}.{ext}"
        rows.append(TrackRow(f"t{i}", album, i, f"T{i}", "x", key, 1.0, "X", False))
    return rows


def setup_version(tmp_path: Path, rows: list[TrackRow]) -> CommonConfig:
    common = CommonConfig(version_dir=tmp_path / "v1_model_test")
    write_tracks_csv(common.layout.tracks_csv, rows)
    return common


def upload(client, bucket: str, rows: list[TrackRow], missing: tuple[int, ...] = ()) -> None:  # type: ignore[no-untyped-def]
    client.create_bucket(Bucket=bucket)
    for i, r in enumerate(rows):
        if i not in missing:
            client.put_object(Bucket=bucket, Key=r.audio_s3_key, Body=blob(i))


def cached(common: CommonConfig, r: TrackRow) -> Path:
    return common.layout.cached_audio(r.album_id, r.track_id, r.audio_ext)


def test_s3_missing_transient_and_rerun(tmp_path: Path, moto_s3, aws_env) -> None:  # type: ignore[no-untyped-def]
    rows = tracks(6, missing=(4,))
    upload(moto_s3.client(), "bucket-pull-a", rows, missing=(4,))
    common = setup_version(tmp_path, rows)
    # a stale .tmp of an interrupted run must be overwritten, never used
    stale = cached(common, rows[0]).with_name("t0.m4a.tmp")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a download")
    with FaultProxy(moto_s3.endpoint_url, fail_first={"/trk1.mp3": 2}) as proxy:
        cfg = PullAudioConfig(
            common=common,
            source="s3://bucket-pull-a/catalogue",
            endpoint_url=proxy.endpoint_url,
            workers=4,
            max_attempts=4,
            backoff_sec=0.01,
        )
        report = pull_audio.run(cfg)
        by_id = {e["track_id"]: e for e in report["tracks"]}
        assert [e["track_id"] for e in report["tracks"]] == [r.track_id for r in rows]
        assert by_id["t4"]["status"] == "missing" and by_id["t4"]["attempts"] == 1  # 404: no retry
        assert "absent4" in by_id["t4"]["reason"] and by_id["t4"]["path"] is None
        assert by_id["t1"]["status"] == "downloaded" and by_id["t1"]["attempts"] == 3  # 2 x 503, then 200
        assert proxy.injected["/trk1.mp3"] == 2
        for i, r in enumerate(rows):
            if i == 4:
                continue
            e = by_id[r.track_id]
            assert e["status"] == "downloaded" and e["verified_by"] == "md5"
            assert e["etag"] == hashlib.md5(blob(i)).hexdigest()
            assert cached(common, r).read_bytes() == blob(i)
            assert e["path"] == f"audio_cache/{r.album_id}/{r.track_id}.{r.audio_ext}"
        assert report["counts"] == {
            "tracks": 6,
            "downloaded": 5,
            "skipped_verified": 0,
            "missing": 1,
            "failed": 0,
        }
        assert report["bytes_downloaded"] == sum(len(blob(i)) for i in range(6) if i != 4)
        assert report["source"] == {
            "kind": "s3",
            "url": "s3://bucket-pull-a/catalogue",
            "endpoint_url": proxy.endpoint_url,
        }
        assert read_artifact(common.layout.pull_report, "pull_report") == report
        assert not list(common.layout.audio_cache_dir.rglob("*.tmp"))
        gets_first = proxy.count("GET")

        # rerun: everything present is verified by HEAD (size + md5 == ETag), no GET at all
        report2 = pull_audio.run(cfg)
        assert report2["counts"] == {
            "tracks": 6,
            "downloaded": 0,
            "skipped_verified": 5,
            "missing": 1,
            "failed": 0,
        }
        assert proxy.count("GET") == gets_first + 1  # only the still-missing key is asked for again
        assert proxy.count("GET", "/absent4.wav") == 2

        # a corrupted cache file (same size, other bytes) fails md5 and is downloaded again
        p = cached(common, rows[2])
        p.write_bytes(bytes(len(blob(2))))
        report3 = pull_audio.run(cfg)
        assert {e["track_id"]: e["status"] for e in report3["tracks"]}["t2"] == "downloaded"
        assert p.read_bytes() == blob(2)
        assert proxy.count("GET", "/trk2.ogg") == 2


def test_s3_transient_until_give_up(tmp_path: Path, moto_s3, aws_env) -> None:  # type: ignore[no-untyped-def]
    rows = tracks(3)
    upload(moto_s3.client(), "bucket-pull-b", rows)
    common = setup_version(tmp_path, rows)
    with FaultProxy(moto_s3.endpoint_url, fail_first={"/trk0.m4a": 10}) as proxy:
        cfg = PullAudioConfig(
            common=common,
            source="s3://bucket-pull-b",
            endpoint_url=proxy.endpoint_url,
            max_attempts=3,
            backoff_sec=0.01,
        )
        report = pull_audio.run(cfg)
    e = report["tracks"][0]
    assert (
        e["status"] == "failed" and e["attempts"] == 3 and "503" in e["reason"] and "SlowDown" in e["reason"]
    )
    assert [x["status"] for x in report["tracks"][1:]] == ["downloaded", "downloaded"]
    assert not cached(common, rows[0]).exists()
    assert not list(common.layout.audio_cache_dir.rglob("*.tmp"))


@pytest.mark.parametrize(("status", "retried"), [(500, True), (403, False)])
def test_s3_error_classes(tmp_path: Path, moto_s3, aws_env, status: int, retried: bool) -> None:  # type: ignore[no-untyped-def]
    rows = tracks(2)
    upload(moto_s3.client(), f"bucket-pull-status-{status}", rows)
    common = setup_version(tmp_path, rows)
    with FaultProxy(moto_s3.endpoint_url, fail_first={"/trk0.m4a": 1}, status=status) as proxy:
        cfg = PullAudioConfig(
            common=common,
            source=f"s3://bucket-pull-status-{status}",
            endpoint_url=proxy.endpoint_url,
            max_attempts=4,
            backoff_sec=0.01,
        )
        e = pull_audio.run(cfg)["tracks"][0]
    if retried:  # 5xx: retried, then downloaded
        assert e["status"] == "downloaded" and e["attempts"] == 2
    else:  # 403: permanent, one attempt, reported as failed with the S3 error code
        assert e["status"] == "failed" and e["attempts"] == 1 and "403 AccessDenied" in e["reason"]


def test_s3_endpoint_from_environment(tmp_path: Path, moto_s3, aws_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rows = tracks(2)
    upload(moto_s3.client(), "bucket-pull-env", rows)
    rows.append(TrackRow("other", "alb0", 9, "T", None, "s3://another-bucket/k.m4a", None, None, True))
    common = setup_version(tmp_path, rows)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint_url)
    report = pull_audio.run(PullAudioConfig(common=common, source="s3://bucket-pull-env"))
    assert report["source"]["endpoint_url"] == moto_s3.endpoint_url
    assert [e["status"] for e in report["tracks"]] == ["downloaded", "downloaded", "failed"]
    assert "not in the store's bucket" in report["tracks"][2]["reason"]


def test_s3_nothing_pulled_raises_after_report(tmp_path: Path, moto_s3, aws_env) -> None:  # type: ignore[no-untyped-def]
    rows = tracks(2)
    moto_s3.client().create_bucket(Bucket="bucket-pull-empty")
    common = setup_version(tmp_path, rows)
    cfg = PullAudioConfig(common=common, source="s3://bucket-pull-empty", endpoint_url=moto_s3.endpoint_url)
    with pytest.raises(StorageError, match="none of 2 tracks"):
        pull_audio.run(cfg)
    assert read_artifact(common.layout.pull_report, "pull_report")["counts"]["missing"] == 2


def test_s3_no_such_bucket_is_failed_not_retried(tmp_path: Path, moto_s3, aws_env) -> None:  # type: ignore[no-untyped-def]
    rows = tracks(1)
    common = setup_version(tmp_path, rows)
    cfg = PullAudioConfig(
        common=common, source="s3://bucket-does-not-exist", endpoint_url=moto_s3.endpoint_url
    )
    with pytest.raises(StorageError):
        pull_audio.run(cfg)
    e = read_artifact(common.layout.pull_report, "pull_report")["tracks"][0]
    assert e["status"] in {"missing", "failed"} and e["attempts"] == 1 and "NoSuchBucket" in e["reason"]


def test_s3_throughput_50_objects_8_workers(tmp_path: Path, moto_s3, aws_env) -> None:  # type: ignore[no-untyped-def]
    rows = tracks(50, prefix="bench")
    upload(moto_s3.client(), "bucket-pull-bench", rows)
    common = setup_version(tmp_path, rows)
    cfg = PullAudioConfig(
        common=common, source="s3://bucket-pull-bench", endpoint_url=moto_s3.endpoint_url, workers=8
    )
    t0 = time.perf_counter()
    report = pull_audio.run(cfg)
    dt = time.perf_counter() - t0
    assert report["counts"]["downloaded"] == 50
    print(
        f"\npull 50 objects, 8 workers: {dt:.2f}s, {50 / dt:.1f} objects/s, {report['bytes_downloaded'] / dt / 1e6:.2f} MB/s"
    )


def test_local_directory_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rows = tracks(4, missing=(2,))
    for i, r in enumerate(rows):
        if i != 2:
            (store / r.audio_s3_key).parent.mkdir(parents=True, exist_ok=True)
            (store / r.audio_s3_key).write_bytes(blob(i))
    rows.append(TrackRow("esc", "alb0", 9, "T", "x", "../outside.m4a", 1.0, "X", False))
    common = setup_version(tmp_path, rows)
    cfg = PullAudioConfig(common=common, source=str(store), workers=2)
    report = pull_audio.run(cfg)
    st = {e["track_id"]: e for e in report["tracks"]}
    assert [st[f"t{i}"]["status"] for i in range(4)] == ["downloaded", "downloaded", "missing", "downloaded"]
    assert st["t0"]["verified_by"] == "sha256" and st["t0"]["etag"] is None
    assert st["esc"]["status"] == "failed" and "not a safe relative path" in st["esc"]["reason"]
    assert cached(common, rows[3]).read_bytes() == blob(3)
    assert report["source"] == {"kind": "local", "url": str(store), "endpoint_url": None}
    # rerun: verified by size + sha256; a changed source file is pulled again
    (store / rows[1].audio_s3_key).write_bytes(blob(11))
    report2 = pull_audio.run(PullAudioConfig(common=common, source=f"file://{store}"))
    st2 = {e["track_id"]: e["status"] for e in report2["tracks"]}
    assert st2 == {
        "t0": "skipped_verified",
        "t1": "downloaded",
        "t2": "missing",
        "t3": "skipped_verified",
        "esc": "failed",
    }
    assert cached(common, rows[1]).read_bytes() == blob(11)


def test_bad_source(tmp_path: Path) -> None:
    common = setup_version(tmp_path, tracks(1))
    from research_job.errors import ConfigError

    with pytest.raises(ConfigError, match="No object store"):
        pull_audio.run(PullAudioConfig(common=common, source=""))
    with pytest.raises(ConfigError, match="Unknown object store"):
        pull_audio.run(PullAudioConfig(common=common, source="gs://bucket/x"))
    with pytest.raises(StorageError, match="not found"):
        pull_audio.run(PullAudioConfig(common=common, source=str(tmp_path / "nope")))


def test_store_list_and_head(tmp_path: Path, moto_s3, aws_env) -> None:  # type: ignore[no-untyped-def]
    from research_job.io.storage import ObjectNotFound, open_store

    rows = tracks(3)
    upload(moto_s3.client(), "bucket-list", rows)
    s3 = open_store("s3://bucket-list/catalogue", endpoint_url=moto_s3.endpoint_url)
    assert sorted(o.key for o in s3.list()) == sorted(r.audio_s3_key for r in rows)
    assert [o.key for o in s3.list("alb1")] == ["catalogue/alb1/trk1.mp3"]
    assert s3.resolve_key("s3://bucket-list/catalogue/alb1/trk1.mp3") == "catalogue/alb1/trk1.mp3"
    with pytest.raises(StorageError, match="not in the store's bucket 'bucket-list'"):
        s3.resolve_key("s3://other-bucket/catalogue/alb1/trk1.mp3")
    head = s3.head(s3.resolve_key("alb1/trk1.mp3"))  # key relative to the prefix
    assert head.size == len(blob(1)) and head.etag_is_md5
    with pytest.raises(ObjectNotFound):
        s3.head("catalogue/nope.m4a")
    root = tmp_path / "store"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.mp3").write_bytes(b"abc")
    local = open_store(root)
    assert [(o.key, o.size) for o in local.list()] == [("a/x.mp3", 3)]
    assert local.head("a/x.mp3").sha256 == hashlib.sha256(b"abc").hexdigest()
    assert local.resolve_key("s3://any-bucket/a/x.mp3") == "a/x.mp3"  # a local mirror of a bucket
