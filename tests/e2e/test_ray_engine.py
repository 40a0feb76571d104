"""embed --engine ray on a real local Ray cluster, reading the audio over the real S3 protocol (moto's server).

A head node is started by the fixture on 127.0.0.1 with 2 CPUs (``ray start --head``); the driver joins it with
``ray_address``. The catalogue is seeded audio in real codecs (flac, ogg/vorbis, mp3, m4a/aac, wav) uploaded to
a bucket, plus a corrupt file, a silent track and a key that is not in the bucket. The reference is the inline
engine after pull-audio + standardize-audio, the product's path before Ray; the cases:

* equality: the same ids in the same order, the same failures (track, stage; and, read from the version folder,
  the same reasons), per-row cosine >= 0.99999; the Ray folder passes build-index and validate;
* an actor process killed mid-run (SIGKILL to its PID, found by its process title): its shards are retried, the
  run finishes with every track exactly once;
* the driver interrupted after two shards: the rerun resumes from the finished shards only;
* incremental on Ray: one track added, one changed, one removed -> only those two are embedded.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.embeddings import load_embeddings
from research_job.metadata import TrackRow, write_tracks_csv
from research_job.steps import build_index, embed, pull_audio, standardize_audio, validate
from research_job.steps.build_index import BuildIndexConfig
from research_job.steps.embed import EmbedConfig
from research_job.steps.pull_audio import PullAudioConfig
from research_job.steps.standardize_audio import StandardizeAudioConfig
from research_job.steps.validate import ValidateConfig
from tests.helpers.audio_fixtures import write_audio, write_corrupt

pytestmark = [pytest.mark.network_services, pytest.mark.slow]

MODEL = "musicnn-msd"
BUCKET = "catalogue-ray"
CODECS = ("flac", "ogg", "mp3", "m4a", "wav")
N_GOOD = 12
SECONDS = 6.0
SR = 22050
COS_MIN = 0.99999


def _signal(seed: int, seconds: float = SECONDS) -> np.ndarray:
    """A seeded, track-specific signal: a few partials at seed-drawn pitches under a slow envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for f in rng.uniform(110, 1760, size=4):
        x += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
    x += 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _row(i: int, ext: str, key: str | None = None) -> TrackRow:
    album = f"al{i // 3}"
    return TrackRow(
        f"t{i:02d}", album, i % 3 + 1, f"Title {i}", ["bach", "liszt", "satie"][i % 3],
        key or f"tracks/{album}/t{i:02d}.{ext}", SECONDS, None, False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def catalogue(moto_s3: Any, tmp_path_factory: pytest.TempPathFactory) -> list[TrackRow]:
    """Upload the seeded catalogue: 12 good tracks, a silent one, a corrupt one, one key absent from the bucket."""
    files = tmp_path_factory.mktemp("ray_audio")
    client = moto_s3.client()
    client.create_bucket(Bucket=BUCKET)
    rows = []
    for i in range(N_GOOD + 3):
        ext = CODECS[i % len(CODECS)]
        row = _row(i, ext)
        path = files / f"{row.track_id}.{ext}"
        if i == N_GOOD:  # silent: validate failure
            write_audio(path, np.zeros(int(SECONDS * SR), np.float32), SR)
        elif i == N_GOOD + 1:  # corrupt: decode failure
            write_corrupt(path, seed=7)
        elif i == N_GOOD + 2:  # never uploaded: a missing object
            rows.append(row)
            continue
        else:
            write_audio(path, _signal(i), SR)
        client.put_object(Bucket=BUCKET, Key=row.audio_s3_key, Body=path.read_bytes())
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A Ray head on 127.0.0.1 with 2 CPUs, started and stopped by the test; yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # token authentication, as a real cluster runs: the head and every driver share one token (RAY_AUTH_TOKEN,
    # made here: a fresh machine has no ~/.ray/auth_token, and `ray start` in token mode refuses to run
    # without one); an unauthenticated driver is refused
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    # the workers find S3 credentials through the standard chain of their node (here its environment), never
    # through the task graph: a head started without them fails every track with NoCredentialsError
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    subprocess.run(
        [ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        check=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "token")  # the drivers of this module: in-process and the CLI's subprocess
    mp.setenv("RAY_AUTH_TOKEN", token)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        mp.undo()
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _version(root: Path, name: str, rows: list[TrackRow]) -> CommonConfig:
    common = CommonConfig(model=MODEL, version_dir=root / name / f"v1_model_{MODEL}")
    write_tracks_csv(common.layout.tracks_csv, rows)
    return common


def _s3(moto_s3: Any) -> dict[str, Any]:
    """embed's options to stream the tracks from the moto store."""
    return {"stream_from": f"s3://{BUCKET}", "stream_endpoint_url": moto_s3.endpoint_url}


@pytest.fixture(scope="module")
def reference(
    catalogue: list[TrackRow], moto_s3: Any, tmp_path_factory: pytest.TempPathFactory
) -> CommonConfig:
    """The inline engine after pull-audio and standardize-audio: the path the Ray engine must equal."""
    with pytest.MonkeyPatch.context() as mp:
        _aws(mp, tmp_path_factory.mktemp("aws"))
        common = _version(tmp_path_factory.mktemp("ref"), "inline", catalogue)
        pull_audio.run(
            PullAudioConfig(
                common=common, source=f"s3://{BUCKET}", endpoint_url=moto_s3.endpoint_url, workers=4
            )
        )
        standardize_audio.run(StandardizeAudioConfig(common=common))
        embed.run(EmbedConfig(common=common, postprocess="center"))
    return common


def _aws(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp / "none"),
                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none")}.items():  # fmt: skip
        mp.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(k, raising=False)


def _same_rows(a: CommonConfig, b: CommonConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Assert equal ids in equal order and per-row cosine >= COS_MIN; return both metas."""
    va, ia, ma = load_embeddings(a.layout)
    vb, ib, mb = load_embeddings(b.layout)
    assert ia == ib
    cos = np.sum(va.astype(np.float64) * vb, axis=1)
    assert cos.min() >= COS_MIN, f"min per-row cosine {cos.min():.7f}"
    return ma, mb


def _failures(meta: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["track_id"], f["stage"]) for f in meta["failures"]]


def test_ray_from_s3_equals_inline_and_validates(
    catalogue: list[TrackRow], reference: CommonConfig, ray_cluster: str, moto_s3: Any, tmp_path: Path
) -> None:
    common = _version(tmp_path, "ray", catalogue)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    cli = [str(Path(sys.executable).with_name("research-job")), "embed", "--model", MODEL,
           "--version-dir", str(common.layout.version_dir), "--engine", "ray", "--ray-address", ray_cluster,
           "--ray-workers", "2", "--shard-size", "4", "--stream-from", f"s3://{BUCKET}",
           "--stream-endpoint-url", moto_s3.endpoint_url, "--postprocess", "center"]  # fmt: skip
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "testing" not in done.stderr  # no credential in the logs
    ref_meta, meta = _same_rows(reference, common)
    assert _failures(meta) == _failures(ref_meta)
    assert [f for f in _failures(meta)] == [("t12", "validate"), ("t13", "decode"), ("t14", "decode")]
    by_id = {f["track_id"]: f["reason"] for f in meta["failures"]}
    assert by_id["t12"] == {f["track_id"]: f["reason"] for f in ref_meta["failures"]}["t12"]
    assert f"s3://{BUCKET}/tracks/al4/t13.m4a" in by_id["t13"]  # names the object, not a temporary file
    assert "t14" in by_id["t14"] and "tracks/al4/t14.wav" in by_id["t14"]
    engine = meta["engine"]
    assert engine["name"] == "ray" and engine["source"] == {"kind": "store", "url": f"s3://{BUCKET}"}
    assert engine["cluster"] == ray_cluster and engine["workers"] == 2 and engine["retries"] == 0
    shards = engine["shards"]
    assert sorted(s["shard"] for s in shards) == [f"{i:05d}" for i in range(4)]
    assert sum(s["tracks"] for s in shards) == len(catalogue)
    assert len({s["worker"]["pid"] for s in shards}) == 2  # both actors worked
    sources = json.loads(common.layout.embed_sources.read_text())
    fp = {t["track_id"]: t for t in sources["tracks"]}
    assert fp["t00"]["size"] > 0 and fp["t00"]["etag"] and fp["t14"] == {
        "track_id": "t14", "size": None, "etag": None, "sha256": None
    }  # fmt: skip
    assert not common.layout.audio_cache_dir.exists()  # nothing was pulled: the workers read the store
    build_index.run(BuildIndexConfig(common=common))
    assert validate.run(ValidateConfig(common=common))["problems"] == []


def test_ray_from_version_folder_same_reasons(
    catalogue: list[TrackRow],
    reference: CommonConfig,
    ray_cluster: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read from a shared version folder (the pulled files), the failures are the inline ones, reasons included.
    The cluster is named by RAY_ADDRESS only, as a RayJob or `ray job submit` names it; two shards go to two
    actors."""
    common = _version(tmp_path, "ray_folder", catalogue)
    import shutil

    for sub in ("audio_cache", "audio_wav"):
        shutil.copytree(reference.layout.version_dir / sub, common.layout.version_dir / sub)
    shutil.copy(reference.layout.pull_report, common.layout.pull_report)
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)
    half = -(-len(catalogue) // 2)  # two shards for two actors: each must get one (none idles)
    embed.run(EmbedConfig(common=common, engine="ray", shard_size=half))
    ref_meta, meta = _same_rows(reference, common)
    assert meta["engine"]["cluster"] == ray_cluster
    assert len({s["worker"]["pid"] for s in meta["engine"]["shards"]}) == 2, meta["engine"]["shards"]
    root_a, root_b = str(reference.layout.version_dir), str(common.layout.version_dir)
    assert [{**f, "reason": f["reason"].replace(root_b, root_a)} for f in meta["failures"]] == ref_meta[
        "failures"
    ]
    assert meta["engine"]["source"]["kind"] == "version_folder"


def _actor_pids() -> list[int]:
    """PIDs of the live Ray actor processes of the Ray engine (their process title is ``ray::EmbedActor...``)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            title = (d / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::EmbedActor"):
            pids.append(int(d.name))
    return pids


def test_killed_actor_shard_is_retried(
    catalogue: list[TrackRow], reference: CommonConfig, ray_cluster: str, moto_s3: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _aws(monkeypatch, tmp_path)
    common = _version(tmp_path, "killed", catalogue)
    killed: list[int] = []

    def kill_one(_done: int) -> None:
        if killed:
            return
        pids = _actor_pids()
        assert pids, "no Ray actor process found"
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    cfg = EmbedConfig(common=common, engine="ray", ray_address=ray_cluster, shard_size=2, **_s3(moto_s3))
    meta = embed.run(cfg, on_chunk_committed=kill_one)
    assert killed
    ref_meta, meta = _same_rows(reference, common)
    assert _failures(meta) == _failures(ref_meta)
    engine = meta["engine"]
    assert engine["retries"] >= 1 and engine["isolated_tracks"] == 0
    tracks = [s["tracks"] for s in engine["shards"]]
    assert sum(tracks) == len(catalogue)  # nothing lost, nothing twice
    assert any(s["attempts"] > 1 for s in engine["shards"])
    assert killed[0] not in {s["worker"]["pid"] for s in engine["shards"] if s["attempts"] > 1}


def test_interrupted_driver_resumes_from_finished_shards(
    catalogue: list[TrackRow], reference: CommonConfig, ray_cluster: str, moto_s3: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _aws(monkeypatch, tmp_path)
    common = _version(tmp_path, "resumed", catalogue)
    cfg = EmbedConfig(common=common, engine="ray", ray_address=ray_cluster, shard_size=3, **_s3(moto_s3))

    def stop_after_two(done: int) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed.run(cfg, on_chunk_committed=stop_after_two)
    committed = sorted(common.layout.embed_checkpoint_dir.glob("chunk_*.json"))
    assert len(committed) == 2 and not common.layout.embeddings_meta.exists()
    first = [json.loads(p.read_text())["ids"] + [f["track_id"] for f in json.loads(p.read_text())["failures"]]
             for p in committed]  # fmt: skip
    embed.run(cfg)
    ref_meta, meta = _same_rows(reference, common)
    assert _failures(meta) == _failures(ref_meta)
    shards = meta["engine"]["shards"]
    assert sum(s["tracks"] for s in shards) == len(catalogue)  # the rerun did only what was left
    assert len(shards) == 2 + -(-(len(catalogue) - sum(map(len, first))) // 3)
    assert not common.layout.embed_checkpoint_dir.exists()


def test_incremental_on_ray_embeds_only_new_and_changed(
    catalogue: list[TrackRow], reference: CommonConfig, ray_cluster: str, moto_s3: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _aws(monkeypatch, tmp_path)
    client = moto_s3.client()
    files = tmp_path / "audio"
    added = _row(20, "flac")
    write_audio(files / "t20.flac", _signal(20), SR)
    client.put_object(Bucket=BUCKET, Key=added.audio_s3_key, Body=(files / "t20.flac").read_bytes())
    changed = replace(catalogue[1], track_id="t01", audio_s3_key="tracks/changed/t01.ogg")
    write_audio(files / "t01.ogg", _signal(101), SR)
    client.put_object(Bucket=BUCKET, Key=changed.audio_s3_key, Body=(files / "t01.ogg").read_bytes())
    rows = [changed if r.track_id == "t01" else r for r in catalogue if r.track_id != "t02"] + [added]
    base = _version(tmp_path, "base", catalogue)
    embed.run(EmbedConfig(common=base, engine="ray", ray_address=ray_cluster, **_s3(moto_s3)))
    new = _version(tmp_path, "nightly", rows)
    cfg = EmbedConfig(
        common=new, engine="ray", ray_address=ray_cluster, shard_size=1, incremental=True,
        base=base.layout.version_dir, **_s3(moto_s3),
    )  # fmt: skip
    meta = embed.run(cfg)
    inc = meta["incremental"]
    assert inc == {"base": str(base.layout.version_dir), "copied": N_GOOD - 2, "copied_failures": 2,
                   "embedded_new": 1, "embedded_changed": 1, "retried_missing": 1, "retried_failures": 0,
                   "removed": 1, "reason": None}  # fmt: skip
    assert sorted(s["tracks"] for s in meta["engine"]["shards"]) == [1, 1, 1]  # t01, t20 and the missing t14
    dim = meta["dim"]
    raw_base = dict(
        zip(
            load_embeddings(base.layout)[1],
            np.fromfile(base.layout.raw_f32, "<f4").reshape(-1, dim),
            strict=True,
        )
    )
    raw_new = dict(
        zip(
            load_embeddings(new.layout)[1],
            np.fromfile(new.layout.raw_f32, "<f4").reshape(-1, dim),
            strict=True,
        )
    )
    assert np.array_equal(raw_new["t00"], raw_base["t00"])  # copied bit for bit
    assert (
        float(raw_new["t01"] @ raw_base["t01"])
        / (np.linalg.norm(raw_new["t01"]) * np.linalg.norm(raw_base["t01"]))
        < 0.9999
    )  # the changed track was embedded again from its new audio
    assert "t02" not in raw_new and "t20" in raw_new
