"""previews: Ogg/Opus excerpts from the middle of each embedded track, their names, reuse, failures, validate.

Every input is made here: seeded stepped tones (one frequency per second, so where an excerpt was cut from can
be heard back) encoded with PyAV in several codecs under ``audio_cache/`` with a pull report, or float32 WAVs
under ``audio_wav/``; the previews written are decoded again with PyAV.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from research_job import artifact_checks, previews
from research_job.config import CommonConfig
from research_job.embeddings import write_embeddings
from research_job.errors import AudioDecodeError, ConfigError
from research_job.io.audio import write_wav
from research_job.layout import ArtifactLayout
from research_job.previews import PreviewOptions, build_previews, preview_name
from research_job.publish.manifest import is_published_path
from research_job.schema import SCHEMA_DIR, write_artifact
from tests.helpers.audio_fixtures import write_audio, write_corrupt

SR = 22050
#: frequency of second k of a stepped tone
STEP_HZ = (300.0, 450.0, 600.0, 750.0, 900.0, 1050.0, 1200.0, 1350.0)
FAST = PreviewOptions(duration_sec=2.0, bitrate_kbps=48, fade_ms=50.0, workers=2)


def stepped(seconds: int, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Second k is a sine at STEP_HZ[k] with a seeded phase, plus a little seeded noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(sr) / sr
    parts = [0.4 * np.sin(2 * np.pi * STEP_HZ[k] * t + rng.uniform(0, 2 * np.pi)) for k in range(seconds)]
    return (np.concatenate(parts) + 0.005 * rng.standard_normal(seconds * sr)).astype(np.float32)


def embedded(layout: ArtifactLayout, ids: list[str]) -> None:
    """track_ids.json + embeddings_meta.json (+ the vectors) for ``ids``, as embed writes them."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((len(ids), 4))
    write_embeddings(
        layout,
        (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32),
        ids,
        model_name="test",
        info={"version": "1", "weights_sha256": None, "pooling": "mean", "layer": None, "params": {}},
        dim=4,
        sample_rate=16000,
        stats={
            "n_input_tracks": len(ids),
            "n_embedded": len(ids),
            "n_failed": 0,
            "audio_sec": 1.0,
            "wall_sec": 1.0,
        },
        created_at="2026-11-22T04:00:00Z",
    )


def pulled(layout: ArtifactLayout, files: dict[str, Path | None]) -> None:
    """audio_cache/pull_report.json recording ``files`` (None: missing)."""
    tracks = []
    for tid, p in files.items():
        ok = p is not None
        tracks.append(
            {
                "track_id": tid,
                "album_id": "al",
                "key": f"al/{tid}",
                "path": layout.rel(p) if p is not None else None,
                "status": "downloaded" if ok else "missing",
                "reason": None if ok else "no such key",
                "attempts": 1,
                "size_bytes": p.stat().st_size if p is not None else None,
                "etag": None,
                "verified_by": "size" if ok else None,
                "elapsed_sec": 0.0,
            }
        )
    n_ok = sum(p is not None for p in files.values())
    write_artifact(
        layout.pull_report,
        "pull_report",
        {
            "schema_version": "1.0",
            "artifact_version": layout.version_dir.name,
            "source": {"kind": "local", "url": "/store", "endpoint_url": None},
            "params": {"workers": 1, "max_attempts": 1, "backoff_sec": 0.0},
            "counts": {
                "tracks": len(files),
                "downloaded": n_ok,
                "skipped_verified": 0,
                "missing": len(files) - n_ok,
                "failed": 0,
            },  # fmt: skip
            "bytes_downloaded": 0,
            "elapsed_sec": 0.0,
            "tracks": tracks,
            "created_at": "2026-11-22T04:00:00Z",
            "code_version": "0.1.0",
        },
    )


@pytest.fixture
def folder(tmp_path: Path) -> ArtifactLayout:
    """Four pulled tracks of 6 s in four codecs (seeds differ), plus a 1 s one: all embedded."""
    layout = ArtifactLayout(tmp_path / "v1_model_test")
    files: dict[str, Path | None] = {}
    for i, codec in enumerate(("wav", "flac", "mp3", "ogg")):
        tid = f"t{i}"
        files[tid] = write_audio(layout.cached_audio("al", tid, codec), stepped(6, seed=i), SR, codec)
    files["short"] = write_audio(layout.cached_audio("al", "short", "m4a"), stepped(1, seed=9), SR, "m4a")
    pulled(layout, files)
    embedded(layout, list(files))
    return layout


def decode(path: Path) -> tuple[np.ndarray, av.AudioStream, int]:
    """(mono float samples, the stream, the container's bit_rate) of an Ogg/Opus file."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        bit_rate = c.bit_rate
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(s)])
    return x.astype(np.float32), s, bit_rate


def dominant_hz(x: np.ndarray, sr: int = previews.SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[int(np.argmax(spec))])


# ---------------------------------------------------------------- names


HOSTILE = [
    "a/b",
    "../../etc/passwd",
    "..",
    ".",
    ".hidden",
    "..x",
    "Für Elise, WoO 59",
    "日本語",
    "a b\tc",
    "x" * 201,
    "é" * 256,
    "previews.json",
    "-rf",
]


@pytest.mark.parametrize("tid", HOSTILE, ids=lambda t: ascii(t)[:30])
def test_hostile_ids_get_safe_stable_names(tid: str) -> None:
    schema = json.loads((SCHEMA_DIR / "previews.schema.json").read_text())
    pattern = schema["properties"]["tracks"]["items"]["properties"]["file"]["pattern"]
    name = preview_name(tid)
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,200}\.ogg", name) and not name.startswith(".")
    assert previews.NAME_PATTERN.fullmatch(name)
    assert re.search(pattern, f"previews/{name}"), name
    assert name == preview_name(tid)  # stable
    assert "/" not in name and name not in {".ogg", "..ogg"}


def test_plain_ids_keep_their_names_and_others_do_not_collide() -> None:
    assert preview_name("bach-bwv253") == "bach-bwv253.ogg"
    assert preview_name("a" * 200) == "a" * 200 + ".ogg"
    assert preview_name("a" * 201) != preview_name("a" * 202)
    # ids that sanitise to the same prefix still differ by their hash
    assert preview_name("a b") != preview_name("a_b") != preview_name("a\tb")
    assert preview_name("a b").startswith("a_b-")
    assert len({preview_name(t) for t in HOSTILE}) == len(HOSTILE)


def test_hostile_ids_end_to_end_and_a_case_clash_is_recorded(tmp_path: Path) -> None:
    layout = ArtifactLayout(tmp_path / "v1_model_test")
    ids = ["Für Elise, WoO 59", "..hidden", "é" * 256, "Track", "track", "ok-1"]
    for i, tid in enumerate(ids):
        write_wav(layout.wav(tid), stepped(3, 16000, seed=i), 16000)
    embedded(layout, ids)
    out = build_previews(layout, FAST)  # no pull report: every preview comes from audio_wav/
    assert out["counts"] == {"tracks": 6, "written": 5, "reused": 0, "failed": 1}
    assert out["failed"] == [
        {"track_id": "track", "reason": "preview file name 'track.ogg' is already that of track 'Track'"}
    ]
    files = sorted(p.name for p in layout.previews_dir.iterdir())
    assert files == sorted([*(Path(t["file"]).name for t in out["tracks"]), "previews.json"])
    for t in out["tracks"]:
        assert (layout.version_dir / t["file"]).resolve().parent == layout.previews_dir.resolve()


# ---------------------------------------------------------------- what is written


def test_previews_are_opus_48k_mono_at_the_bitrate_from_the_middle(folder: ArtifactLayout) -> None:
    out = build_previews(folder, FAST)
    assert out["counts"] == {"tracks": 5, "written": 5, "reused": 0, "failed": 0}
    by_id = {t["track_id"]: t for t in out["tracks"]}
    for i in range(4):
        t = by_id[f"t{i}"]
        path = folder.version_dir / t["file"]
        assert t["file"] == f"previews/t{i}.ogg" and t["size_bytes"] == path.stat().st_size
        x, stream, bit_rate = decode(path)
        assert stream.codec_context.name == "opus"
        assert stream.codec_context.sample_rate == 48000 and stream.codec_context.channels == 1
        assert len(x) / 48000 == pytest.approx(2.0, abs=0.03)
        assert t["duration_sec"] == pytest.approx(2.0, abs=0.01)
        assert t["size_bytes"] * 8 / 2.0 / 1000 == pytest.approx(48, rel=0.15)
        assert bit_rate / 1000 == pytest.approx(48, rel=0.15)
        # 6 s track, 2 s preview: seconds 2..4 of the source (600 Hz then 750 Hz), not the start (300 Hz)
        assert t["start_sec"] == pytest.approx(2.0, abs=0.03)
        first, second = x[2400:45600], x[50400:93600]  # 0.05..0.95 s and 1.05..1.95 s
        assert dominant_hz(first) == pytest.approx(600, abs=10), f"t{i}"
        assert dominant_hz(second) == pytest.approx(750, abs=10), f"t{i}"
        # faded in and out: the first and last millisecond are near silence, the middle is not
        peak = np.abs(x[4800:-4800]).max()
        assert np.abs(x[:48]).max() < 0.05 * peak and np.abs(x[-48:]).max() < 0.05 * peak
    short = by_id["short"]  # 1 s track: the whole of it
    assert short["start_sec"] == pytest.approx(0.0, abs=0.03)
    assert short["duration_sec"] == pytest.approx(1.0, abs=0.03)


def test_bitrate_option_changes_the_size(folder: ArtifactLayout) -> None:
    low = build_previews(folder, PreviewOptions(duration_sec=2.0, bitrate_kbps=24))
    sizes_low = {t["track_id"]: t["size_bytes"] for t in low["tracks"]}
    high = build_previews(folder, PreviewOptions(duration_sec=2.0, bitrate_kbps=96))
    assert high["counts"]["written"] == 5, "a changed bitrate must not reuse the old files"
    for t in high["tracks"]:
        if t["track_id"] != "short":
            assert t["size_bytes"] / sizes_low[t["track_id"]] == pytest.approx(4.0, rel=0.2)


def test_apply_fades_ramps_in_and_out() -> None:
    x = np.ones(48000, np.float32)
    y = previews.apply_fades(x, 50.0)
    assert x.min() == 1.0  # the input is left alone
    assert y[0] < 0.001 and y[-1] < 0.001 and y[2399] > 0.999 and y[24000] == 1.0
    assert np.all(np.diff(y[:2400]) > 0) and np.all(np.diff(y[-2400:]) < 0)
    assert previews.apply_fades(np.ones(10, np.float32), 50.0).max() <= 1.0  # fade capped at half the length


# ---------------------------------------------------------------- reruns and failures


def test_a_rerun_reuses_what_is_intact_and_rewrites_what_is_not(folder: ArtifactLayout) -> None:
    first = build_previews(folder, FAST)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.previews_dir.glob("*.ogg")}
    again = build_previews(folder, PreviewOptions(duration_sec=2.0, workers=1))  # workers: not a bytes param
    assert again["counts"] == {"tracks": 5, "written": 0, "reused": 5, "failed": 0}
    assert again["tracks"] == first["tracks"]
    assert {p.name: p.stat().st_mtime_ns for p in folder.previews_dir.glob("*.ogg")} == stamps
    tampered = folder.previews_dir / "t1.ogg"
    data = bytearray(tampered.read_bytes())
    data[-10] ^= 0xFF
    tampered.write_bytes(bytes(data))
    (folder.previews_dir / "t2.ogg").unlink()
    third = build_previews(folder, FAST)
    assert third["counts"] == {"tracks": 5, "written": 2, "reused": 3, "failed": 0}
    assert third["tracks"] == first["tracks"], "bit-exact Ogg: the same samples give the same bytes"


def test_a_corrupt_track_is_recorded_and_the_others_are_written(folder: ArtifactLayout) -> None:
    write_corrupt(folder.cached_audio("al", "t1", "flac"))
    write_corrupt(folder.cached_audio("al", "t2", "mp3"))
    write_wav(folder.wav("t2"), stepped(6, 16000, seed=2), 16000)  # t2 falls back to its WAV
    out = build_previews(folder, FAST)
    assert out["counts"] == {"tracks": 5, "written": 4, "reused": 0, "failed": 1}
    (failed,) = out["failed"]
    assert failed["track_id"] == "t1"
    assert "t1.flac" in failed["reason"] and "t1.wav" in failed["reason"]  # both sources, both reasons
    assert sorted(t["track_id"] for t in out["tracks"]) == ["short", "t0", "t2", "t3"]
    x, _, _ = decode(folder.version_dir / "previews/t2.ogg")
    assert dominant_hz(x[2400:45600]) == pytest.approx(600, abs=10)  # the WAV's middle
    assert not (folder.previews_dir / "t1.ogg").exists()


def test_a_track_that_now_fails_loses_its_old_file(folder: ArtifactLayout) -> None:
    build_previews(folder, FAST)
    write_corrupt(folder.cached_audio("al", "t3", "ogg"))
    out = build_previews(folder, PreviewOptions(duration_sec=3.0))
    assert [f["track_id"] for f in out["failed"]] == ["t3"]
    assert not (folder.previews_dir / "t3.ogg").exists()


def test_the_step_fails_only_when_no_track_gets_a_preview(tmp_path: Path) -> None:
    from research_job.steps.previews import PreviewsConfig, run

    layout = ArtifactLayout(tmp_path / "v1_model_test")
    bad = write_corrupt(layout.cached_audio("al", "t0", "wav"))
    pulled(layout, {"t0": bad, "t1": None})
    embedded(layout, ["t0", "t1"])
    cfg = PreviewsConfig(common=CommonConfig(version_dir=layout.version_dir), duration_sec=2.0)
    with pytest.raises(AudioDecodeError, match="none of 2 tracks"):
        run(cfg)
    report = json.loads(layout.previews_json.read_text())
    assert [f["track_id"] for f in report["failed"]] == ["t0", "t1"]
    assert "not pulled" in report["failed"][1]["reason"]


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"bitrate_kbps": 5}, "Bad bitrate_kbps 5: Opus takes 6..510"),
        ({"duration_sec": 0.0}, "Bad duration_sec 0.0"),
        ({"duration_sec": 100.0, "bitrate_kbps": 510}, "larger than 4194304 bytes"),
        ({"vbr": "cbr"}, "Unknown vbr mode 'cbr'. Known: constrained, on, off"),
        ({"workers": 0}, "workers >= 1"),
    ],
)
def test_bad_options_are_refused_naming_the_value(kwargs: dict[str, object], said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        PreviewOptions(**kwargs).check()  # type: ignore[arg-type]


def test_no_embeddings_is_an_error_naming_the_file(tmp_path: Path) -> None:
    from research_job.errors import ArtifactError

    with pytest.raises(ArtifactError, match="track_ids.json.*run embed first"):
        build_previews(ArtifactLayout(tmp_path / "v1_model_x"), FAST)


def test_a_pull_report_path_outside_audio_cache_is_not_read(folder: ArtifactLayout) -> None:
    report = json.loads(folder.pull_report.read_text())
    outside = folder.version_dir / "metadata" / "t0.wav"
    write_audio(outside, stepped(6, seed=5), SR, "wav")
    report["tracks"][0]["path"] = "metadata/t0.wav"
    folder.pull_report.write_text(json.dumps(report))
    assert "t0" not in previews.original_paths(folder)


# ---------------------------------------------------------------- validate and publish


def test_validate_catches_a_tampered_missing_or_stray_preview(tmp_path: Path) -> None:
    from tests.helpers.artifact_factory import make_version

    lay = make_version(tmp_path, n=6, dim=4, n_composers=2, album_size=3, with_eval=False).layout
    ids = json.loads(lay.track_ids_json.read_text())["track_ids"]
    for i, tid in enumerate(ids):
        write_wav(lay.wav(tid), stepped(3, 16000, seed=i), 16000)
    out = build_previews(lay, FAST)
    assert out["counts"]["written"] == 6
    assert artifact_checks.check(lay) == []

    victim = lay.version_dir / out["tracks"][0]["file"]
    good = victim.read_bytes()
    victim.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    problems = artifact_checks.check(lay)
    assert (
        len(problems) == 1
        and "sha256 differs from previews.json" in problems[0]
        and victim.name in problems[0]
    )
    victim.write_bytes(good[:-1])
    assert any("bytes != previews.json size_bytes" in p for p in artifact_checks.check(lay))
    victim.unlink()
    assert any("missing (named in previews.json" in p for p in artifact_checks.check(lay))
    victim.write_bytes(good)
    assert artifact_checks.check(lay) == []

    (lay.previews_dir / "stray.ogg").write_bytes(good)
    assert any("stray.ogg: not named in previews.json" in p for p in artifact_checks.check(lay))
    (lay.previews_dir / "stray.ogg").unlink()

    doc = json.loads(lay.previews_json.read_text())
    doc["tracks"][1]["track_id"] = "not-embedded"
    lay.previews_json.write_text(json.dumps(doc))
    assert any("'not-embedded' is not in track_ids.json" in p for p in artifact_checks.check(lay))
    doc["tracks"][1]["file"] = "previews/../index/hnsw.ogg"
    lay.previews_json.write_text(json.dumps(doc))
    assert any("previews.json" in p and "does not match" in p for p in artifact_checks.check(lay))


def test_previews_are_published_with_the_audio_only() -> None:
    for rel in ("previews/t1.ogg", "previews/previews.json"):
        assert not is_published_path(rel, include_audio=False)
        assert is_published_path(rel, include_audio=True)
    assert not is_published_path("previews/t1.ogg.tmp", include_audio=True)


def test_opus_encoding_of_a_waveform_round_trips() -> None:
    x = stepped(2, 48000)
    data = previews.encode_opus(x, 48)
    with av.open(io.BytesIO(data)) as c:
        n = sum(f.samples for f in c.decode(c.streams.audio[0]))
    assert n == len(x)
    assert previews.encode_opus(x, 48) == data  # bit-exact
    with pytest.raises(ValueError, match="non-empty 1-D"):
        previews.encode_opus(np.zeros((2, 10), np.float32), 48)
