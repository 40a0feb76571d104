"""End to end: ``research-job run`` from a SQLite catalogue and a local object store of real audio files.

Tiny seeded corpus: 3 composers with distinct timbres, 2 albums each, files in WAV, FLAC, OGG (soundfile) and
MP3 (PyAV, when its encoder is available); plus a silent track, a track with no composer and a missing object.
The run uses ``--model dsp-stats`` (no weights) and ends with ``validate``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("research_job.steps.export_metadata")
pytest.importorskip("research_job.steps.pull_audio")
pytest.importorskip("research_job.steps.standardize_audio")

from research_job import schema  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SR = 44100


def _signal(composer: int, seed: int, seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    if composer == 0:  # low pure tones
        f = rng.uniform(100, 160)
        x = 0.5 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 2 * f * t)
    elif composer == 1:  # bright chords with harmonics
        f = rng.uniform(500, 700)
        x = sum(0.15 / h * np.sin(2 * np.pi * f * h * t) for h in range(1, 9))
    else:  # noisy percussive clicks
        x = 0.05 * rng.standard_normal(t.size)
        for onset in rng.integers(0, t.size - 2000, size=12):
            x[onset : onset + 2000] += rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300)
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


def _write(path: Path, x: np.ndarray, codec: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec in {"wav", "flac", "ogg"}:
        sf.write(path, x, SR, format={"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[codec])
        return True
    try:
        import av

        with av.open(str(path), "w") as out:
            stream = out.add_stream("mp3", rate=SR)
            frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
            frame.sample_rate = SR
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return True
    except Exception:  # noqa: BLE001 - no MP3 encoder in this PyAV build: fall back to WAV
        return False


def _catalogue(tmp_path: Path) -> tuple[Path, Path, int]:
    store = tmp_path / "objects"
    db = tmp_path / "catalogue.sqlite"
    rows = []
    composers = ["J. S. Bach", "Franz Liszt", "Erik Satie"]
    codecs = ["wav", "flac", "ogg", "mp3"]
    i = 0
    for c, name in enumerate(composers):
        for album in range(2):
            for no in range(1, 3):
                codec = codecs[i % 4]
                key = f"catalogue/alb{c}{album}/trk{i}.{codec}"
                if not _write(store / key, _signal(c, i), codec):
                    key = key.rsplit(".", 1)[0] + ".wav"
                    _write(store / key, _signal(c, i), "wav")
                rows.append((f"t{i:02d}", f"alb{c}{album}", no, f"Piece {i}", name, key, 2.0))
                i += 1
    # edge cases: a silent track, a track without composer, an object that is not in the store
    _write(store / "catalogue/alb99/silent.wav", np.zeros(SR, np.float32), "wav")
    rows.append(("t90", "alb99", 1, "Silence", "Erik Satie", "catalogue/alb99/silent.wav", 1.0))
    _write(store / "catalogue/alb99/anon.wav", _signal(1, 99), "wav")
    rows.append(("t91", "alb99", 2, "Anonymous", None, "catalogue/alb99/anon.wav", 2.0))
    rows.append(("t92", "alb99", 3, "Lost", "Franz Liszt", "catalogue/alb99/lost.wav", 2.0))
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TABLE tracks (track_id TEXT, album_id TEXT, track_no INTEGER, title TEXT, composer TEXT, "
            "audio_s3_key TEXT, duration_sec REAL)"
        )
        con.executemany("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return db, store, len(rows)


def test_full_run_with_dsp_stats(tmp_path: Path) -> None:
    db, store, n_rows = _catalogue(tmp_path)
    vd = tmp_path / "artifacts" / "v1_model_dsp-stats"
    cmd = [
        sys.executable,
        "-m",
        "research_job.cli",
        "run",
        "--model",
        "dsp-stats",
        "--database-url",
        f"sqlite:///{db}",
        "--source",
        str(store),
        "--artifacts-root",
        str(tmp_path / "artifacts"),
        "--recall-queries",
        "50",
        "--bootstrap-resamples",
        "100",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Precision@5" in proc.stdout
    for phase_name in (
        "export-metadata",
        "pull-audio",
        "standardize-audio",
        "embed",
        "build-index",
        "evaluate",
        "validate",
    ):
        assert f"{phase_name} done in" in proc.stderr
    meta = schema.read_artifact(vd / "embeddings" / "embeddings_meta.json", "embeddings_meta")
    failed = {f["track_id"]: f for f in meta["failures"]}
    assert set(failed) == {"t90", "t92"}, failed  # silent, and not pulled
    assert meta["count"] == n_rows - 2 and meta["model"]["name"] == "dsp-stats"
    ev = schema.read_artifact(vd / "eval" / "eval_results.json", "eval_results")
    assert ev["query_policy"]["n_excluded_missing_composer"] == 1
    assert ev["overall"]["n_queries"] == 12
    # distinct timbres per composer: far above chance
    assert (
        ev["overall"]["metrics"]["precision_at_k"] > ev["overall"]["random_baseline"]["precision_at_k"] + 0.2
    )
    im = json.loads((vd / "index" / "index_meta.json").read_text())
    assert all(e["recall_at_5"] is None or e["recall_at_5"] >= 0.99 for e in im["indexes"])
    # a second run reuses what is complete and still validates
    proc2 = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc2.returncode == 0, proc2.stderr
    # the validate command alone, on a corrupted copy, exits 2 with a one-line error
    (vd / "embeddings" / "embeddings.f32").write_bytes(b"\0" * 8)
    bad = subprocess.run(
        [sys.executable, "-m", "research_job.cli", "validate", "--version-dir", str(vd)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert [ln for ln in bad.stderr.splitlines() if ln.startswith("Error:")] and "Traceback" not in bad.stderr
