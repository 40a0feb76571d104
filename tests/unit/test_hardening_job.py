"""Hardening of the research job's file handling (issue 13, items 8, 10, 11, 12).

* per-track file names: a track id of any allowed length (256 characters, up to 1 KiB of UTF-8) gets a file name
  the file system accepts, and a track whose file cannot be read fails alone, never the embed run;
* the local object store does not follow a symbolic link out of its root, nor read what is not a regular file;
* embed's worker processes (and multiprocessing's resource tracker) die with their parent, even on ``kill -9``;
* composer keys: placeholders (``NULL``, ``N/A``) are missing, invisible characters and odd spaces do not make a
  second composer; the metadata CSV keeps exact values (a machine contract, no formula escaping).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from research_job.config import CommonConfig
from research_job.errors import StorageError
from research_job.io.audio import write_wav
from research_job.io.storage import ObjectNotFound, open_store
from research_job.layout import ID_NAME_BYTES, NAME_MAX, id_file_name
from research_job.metadata import (
    CSV_COLUMNS,
    _cell,
    normalize_records,
    read_tracks_csv,
    standardize_composer,
    tracks_csv_text,
    write_tracks_csv,
)
from research_job.steps import embed, pull_audio, standardize_audio
from research_job.steps.embed import EmbedConfig
from tests.unit._core_corpus import row, tone, write_csv

REPO = Path(__file__).resolve().parents[2]
SR = 8000


class StatsEncoder:
    """A picklable toy encoder with content-dependent outputs (dim 4, 8 kHz)."""

    name = "stats"
    dim = 4
    sample_rate = SR

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(
            [[w.mean() + 1.0, np.abs(w).mean(), np.sqrt((w**2).mean()), w.size / SR] for w in batch]
        ).astype(np.float32)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": "1", "weights_sha256": None, "params": {}}


# ---------------------------------------------------------------- item 8: per-track file names


def test_id_file_name_keeps_names_that_fit_and_hashes_the_others() -> None:
    # ids that fit (with room for an extension and the ".tmp" of an atomic write) are the name, as before
    assert id_file_name("t00", "wav") == "t00.wav"
    assert id_file_name("t00", ".M4A") == "t00.m4a"
    assert id_file_name("al0") == "al0"
    fits = "x" * ID_NAME_BYTES
    assert id_file_name(fits, "wav") == fits + ".wav"
    assert id_file_name(fits) == fits
    assert len((id_file_name(fits, "opus_longex") + ".tmp").encode("utf-8")) <= NAME_MAX
    # one byte more, or 256 characters, or few characters of many bytes: a stable hashed name that fits
    for ident in ("x" + fits, "x" * 256, "é" * 124, "音" * 256, "a" * (NAME_MAX + 1)):
        for ext in (None, "wav", "flac"):
            name = id_file_name(ident, ext)
            assert name != ident + ("" if ext is None else f".{ext}")
            assert len((name + ".tmp").encode("utf-8")) <= NAME_MAX
            assert name == id_file_name(ident, ext)
            assert name.startswith(ident.encode("utf-8")[:60].decode("utf-8", errors="ignore"))
        # the choice depends on the id alone: the folder name is the file name without its extension
        assert id_file_name(ident, "wav") == id_file_name(ident) + ".wav"
    assert id_file_name("é" * 100, "wav") == "é" * 100 + ".wav"  # 200 bytes: fits; 124 "é" (248 bytes) do not
    assert id_file_name("x" * 256, "wav") != id_file_name("x" * 255 + "y", "wav")  # same prefix, other hash


def test_ids_whose_file_names_clash_are_refused() -> None:
    long_id = "L" * 256
    cols = ["track_id", "album_id", "title", "composer", "audio_s3_key"]
    recs = [
        {"track_id": long_id, "album_id": "a", "title": "t", "composer": "x", "audio_s3_key": "a/1.wav"},
        {"track_id": id_file_name(long_id), "album_id": "a", "title": "t", "composer": "x", "audio_s3_key": "a/2.wav"},
    ]  # fmt: skip
    with pytest.raises(Exception, match="would share the audio file name"):
        normalize_records(cols, recs, source="catalogue")
    # an id of 240-255 bytes is hashed for every extension too, so its clash is seen as well
    mid = "M" * (ID_NAME_BYTES + 5)
    recs[0]["track_id"], recs[1]["track_id"] = mid, id_file_name(mid)
    with pytest.raises(Exception, match="would share the audio file name"):
        normalize_records(cols, recs, source="catalogue")


def _store_corpus(tmp_path: Path, ids: Sequence[str], albums: Sequence[str]) -> tuple[CommonConfig, Path]:
    """A local store with one seeded WAV per track and a version folder whose metadata lists them."""
    store = tmp_path / "store"
    rows = []
    for i, (tid, album) in enumerate(zip(ids, albums, strict=True)):
        r = row(tid, album, "Bach")
        r["audio_s3_key"] = f"a{i}/track{i}.wav"
        (store / f"a{i}").mkdir(parents=True)
        sf.write(store / r["audio_s3_key"], tone(i, 22050), 22050, subtype="PCM_16")
        rows.append(r)
    common = CommonConfig(artifacts_root=tmp_path, model="dsp-stats", version_dir=tmp_path / "v1_model_t")
    write_csv(common.layout, rows)
    return common, store


def test_a_256_character_track_id_goes_through_pull_standardize_and_embed(tmp_path: Path) -> None:
    ids = ["t00", "L" * 256, "é" * 200, "t03"]
    albums = ["al0", "A" * 256, "al1", "al1"]
    common, store = _store_corpus(tmp_path, ids, albums)
    pulled = pull_audio.run(pull_audio.PullAudioConfig(common=common, source=str(store), workers=2))
    assert {e["track_id"]: e["status"] for e in pulled["tracks"]} == dict.fromkeys(ids, "downloaded")
    std = standardize_audio.run(standardize_audio.StandardizeAudioConfig(common=common, sample_rate=SR))
    assert std["counts"]["ok"] == 4, std["tracks"]
    meta = embed.run(EmbedConfig(common=common, postprocess="none"), encoder=StatsEncoder())
    assert meta["count"] == 4 and meta["failures"] == []
    layout = common.layout
    # short ids keep their readable names, so folders made before keep working
    assert (layout.audio_wav_dir / "t00.wav").is_file()
    assert (layout.audio_cache_dir / "al0" / "t00.wav").is_file()
    assert layout.wav("L" * 256).is_file() and layout.wav("L" * 256).name.startswith("L" * 64 + "-")


def _deep_dir(base: Path, total: int) -> Path:
    """A folder whose absolute path is about ``total`` bytes long (made one short component at a time)."""
    d = base
    while len(os.fsencode(d)) < total - 200:
        d = d / ("d" * 200)
    d = d / ("e" * (total - len(os.fsencode(d)) - 1))
    d.mkdir(parents=True)
    return d


def test_a_track_whose_path_the_file_system_refuses_fails_alone_in_embed(tmp_path: Path) -> None:
    # The version folder sits so deep that only the longest track's path passes PATH_MAX (4096 bytes): reading it
    # raises OSError (ENAMETOOLONG). That track fails (stage decode); the others embed.
    version = _deep_dir(tmp_path, 4096 - len("/audio_wav/") - 80)
    common = CommonConfig(artifacts_root=version.parent, model="dsp-stats", version_dir=version)
    rows = [row("t00", "al0", "Bach"), row("t" * 200, "al0", "Bach"), row("t02", "al0", "Bach")]
    write_csv(common.layout, rows)
    common.layout.audio_wav_dir.mkdir()
    for i in (0, 2):  # (libsndfile refuses such long paths itself)
        write_wav(common.layout.wav(rows[i]["track_id"]), tone(i, SR), SR)
    with pytest.raises(OSError, match="File name too long"):
        common.layout.wav("t" * 200).is_file()
    meta = embed.run(EmbedConfig(common=common, postprocess="none"), encoder=StatsEncoder())
    assert meta["count"] == 2
    assert [(f["track_id"], f["stage"]) for f in meta["failures"]] == [("t" * 200, "decode")]
    assert "File name too long" in meta["failures"][0]["reason"]


# ---------------------------------------------------------------- item 10: the local store stays in its root


@pytest.fixture
def linked_store(tmp_path: Path) -> Path:
    """A store with a good file, a link inside the root, a link out of it, a linked folder out of it and a FIFO."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_text("SECRET-CONTENT\n")
    store = tmp_path / "store"
    (store / "audio" / "bad").mkdir(parents=True)
    sf.write(store / "audio" / "ok.wav", tone(1, 22050), 22050, subtype="PCM_16")
    (store / "audio" / "alias.wav").symlink_to("ok.wav")
    (store / "audio" / "bad" / "passwd.wav").symlink_to(outside / "secret.wav")
    (store / "audio" / "outdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(store / "audio" / "fifo.wav")
    return store


def test_local_store_refuses_links_out_of_its_root_and_non_files(
    linked_store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(linked_store)
    with caplog.at_level(logging.WARNING):
        assert [o.key for o in store.list()] == ["audio/alias.wav", "audio/ok.wav"]
    assert "audio/bad/passwd.wav" in caplog.text and "audio/fifo.wav" in caplog.text
    assert store.head("audio/alias.wav").sha256 == store.head("audio/ok.wav").sha256  # links inside: followed
    for key, why in (
        ("audio/bad/passwd.wav", "leads out of the store root"),
        ("audio/outdir/secret.wav", "leads out of the store root"),
        ("audio/fifo.wav", "not a regular file"),
        ("audio/bad", "not a regular file"),
    ):
        for call in (store.head, lambda k: store.get_to_file(k, tmp_path / "dest")):
            with pytest.raises(StorageError, match=why) as e:
                call(key)
            assert repr(key) in str(e.value) and "SECRET" not in str(e.value)
            assert not isinstance(e.value, ObjectNotFound)
    assert not (tmp_path / "dest").exists()
    with pytest.raises(ObjectNotFound):
        store.head("audio/absent.wav")


def test_pull_audio_fails_a_linked_out_track_alone(linked_store: Path, tmp_path: Path) -> None:
    rows = [row("ok", "al", "Bach"), row("evil", "al", "Bach"), row("pipe", "al", "Bach")]
    for r, key in zip(rows, ("audio/ok.wav", "audio/bad/passwd.wav", "audio/fifo.wav"), strict=True):
        r["audio_s3_key"] = key
    common = CommonConfig(artifacts_root=tmp_path, version_dir=tmp_path / "v1_model_t")
    write_csv(common.layout, rows)
    report = pull_audio.run(pull_audio.PullAudioConfig(common=common, source=str(linked_store), workers=2))
    st = {e["track_id"]: e for e in report["tracks"]}
    assert [st[t]["status"] for t in ("ok", "evil", "pipe")] == ["downloaded", "failed", "failed"]
    assert "'audio/bad/passwd.wav'" in st["evil"]["reason"] and "SECRET" not in st["evil"]["reason"]
    cached = [p.read_bytes() for p in (common.layout.audio_cache_dir / "al").iterdir()]
    assert len(cached) == 1 and b"SECRET" not in cached[0]


# ---------------------------------------------------------------- item 11: workers die with their parent


class BlockingEncoder(StatsEncoder):
    """Marks ``<marker_dir>/<pid>`` when a worker first embeds, then blocks for good: a worker mid-track."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        Path(self.marker_dir, str(os.getpid())).write_text("embedding\n")
        threading.Event().wait()
        raise AssertionError("unreachable")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                out.add(int(p.name))
    return out


def _wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _run_blocked_embed(root: str, marker_dir: str) -> None:
    """The parent the test kills: ``embed --processes 2`` on a small generated corpus, workers blocked."""
    import functools

    common = CommonConfig(artifacts_root=Path(root), model="dsp-stats", version_dir=Path(root) / "v1_model_t")
    rows = [row(f"t{i:02d}", "al0", "Bach") for i in range(6)]
    write_csv(common.layout, rows)
    common.layout.audio_wav_dir.mkdir(parents=True)
    for i, r in enumerate(rows):
        sf.write(common.layout.wav(r["track_id"]), tone(i, SR), SR, subtype="FLOAT")
    cfg = EmbedConfig(common=common, processes=2, threads_per_process=1)
    embed.run(cfg, encoder_factory=functools.partial(BlockingEncoder, marker_dir))


def _kill_parent_and_check_children(code: str, markers: Path, n_markers: int) -> None:
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    children: set[int] = set()
    try:
        _wait_for(lambda: len(list(markers.iterdir())) >= n_markers, 60, f"{n_markers} blocked worker(s)")
        workers = {int(p.name) for p in markers.iterdir()}
        children = _children(parent.pid)  # the workers and multiprocessing's resource tracker
        assert workers <= children
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        _wait_for(lambda: not any(_alive(p) for p in children), 10, f"the children {sorted(children)} to die")
    finally:  # leave no orphan behind when the test fails (they are no longer the parent's children then)
        children |= _children(parent.pid) if parent.poll() is None else set()
        parent.kill()
        parent.wait(10)
        for p in children:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if _alive(p) and b"multiprocessing" in Path(f"/proc/{p}/cmdline").read_bytes():
                    os.kill(p, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_embed_takes_its_worker_processes_with_it(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    code = (
        "from tests.unit.test_hardening_job import _run_blocked_embed; "
        f"_run_blocked_embed({str(tmp_path / 'art')!r}, {str(markers)!r})"
    )
    _kill_parent_and_check_children(code, markers, 2)


def _orphan_target(parent_pid: int, marker_dir: str) -> None:
    """A spawned child with only the portable watcher (no prctl): it must still end when its parent dies."""
    embed._watch_parent(parent_pid, poll_sec=0.05)
    Path(marker_dir, str(os.getpid())).write_text("watching\n")
    threading.Event().wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_portable_parent_watch_ends_an_orphan(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    code = textwrap.dedent(f"""
        import multiprocessing, os
        from tests.unit.test_hardening_job import _orphan_target
        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            p = ctx.Process(target=_orphan_target, args=(os.getpid(), {str(markers)!r}))
            p.start()
            p.join()
    """)
    _kill_parent_and_check_children(code, markers, 1)


# ---------------------------------------------------------------- item 12: composer keys and the metadata CSV


@pytest.mark.parametrize(
    "raw",
    ["NULL", "null", "None", "N/A", "n/a", "(null)", "NaN", "-", "?", " ", "\u00a0", "\u200b", "\ufeff "],
)
def test_placeholder_composers_are_missing(raw: str) -> None:
    assert standardize_composer(raw) is None
    cols = ["track_id", "album_id", "title", "composer", "audio_s3_key"]
    rows, stats = normalize_records(
        cols, [{"track_id": "t", "album_id": "a", "title": "T", "composer": raw, "audio_s3_key": "a/t.wav"}], source="s"
    )  # fmt: skip
    assert rows[0].composer is None and rows[0].composer_missing and rows[0].composer_raw == raw
    assert stats.composers == 0 and stats.composer_missing == 1


def test_invisible_characters_and_odd_spaces_make_no_second_composer() -> None:
    variants = [
        "Johann Sebastian Bach",
        "Johann \u200bSebastian Bach",  # zero-width space
        "Bach\u200b, Johann Sebastian",
        "\ufeffJohann Sebastian Bach",
        "Johann\u00a0Sebastian\u2009Bach",  # NBSP, thin space
        "Johann  Sebastian\u3000Bach",  # ideographic space
        "Jo\u00adhann Sebastian Bach",  # soft hyphen
        "Johann Sebastian Bach\u200e",  # left-to-right mark
        "\uff2aohann Sebastian Bach",  # fullwidth J (NFKC)
        "JOHANN SEBASTIAN BACH",
    ]
    assert {standardize_composer(v) for v in variants} == {"johann sebastian bach"}
    cols = ["track_id", "album_id", "title", "composer", "audio_s3_key"]
    recs = [
        {"track_id": f"t{i}", "album_id": "a", "title": "T", "composer": v, "audio_s3_key": f"a/{i}.wav"}
        for i, v in enumerate(variants)
    ]
    rows, stats = normalize_records(cols, recs, source="s")
    assert stats.composers == 1 and {r.composer for r in rows} == {"johann sebastian bach"}
    assert rows[4].composer_raw == variants[4]  # the catalogue's spelling is kept for display


def test_metadata_csv_keeps_formula_like_cells_exactly(tmp_path: Path) -> None:
    # tracks_metadata.csv is read back by Python and Node: values are exact, never formula-escaped
    cols = ["track_id", "album_id", "title", "composer", "audio_s3_key"]
    titles = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tTab", "\rCR", "'quoted"]
    recs = [
        {
            "track_id": f"=t{i}",
            "album_id": "@a",
            "title": t,
            "composer": f"-{t}x",
            "audio_s3_key": f"+a/{i}.wav",
        }
        for i, t in enumerate(titles)
    ]
    rows, _ = normalize_records(cols, recs, source="s")
    path = tmp_path / "tracks_metadata.csv"
    write_tracks_csv(path, rows)
    back = read_tracks_csv(path)
    assert [r.title for r in back] == titles  # "\rCR" was written unquoted and split its row
    assert back == rows


def test_metadata_csv_bytes_of_ordinary_rows_are_unchanged() -> None:
    # the writer quotes CR now; every other cell is written as the csv module wrote it, so existing files (and
    # the sha256 the export report records) stay the same
    import csv
    import io

    cols = ["track_id", "album_id", "track_no", "title", "composer", "audio_s3_key", "duration_sec"]
    recs = [
        {"track_id": "t1", "album_id": "a", "track_no": 3, "title": 'Suite, "No. 1"\nPrelude', "composer": "Bach, J. S.",
         "audio_s3_key": "a/t1.m4a", "duration_sec": 1 / 3},
        {"track_id": "t2", "album_id": "a", "track_no": None, "title": " spaced ", "composer": None,
         "audio_s3_key": "a/t2.mp3", "duration_sec": None},
    ]  # fmt: skip
    rows, _ = normalize_records(cols, recs, source="s")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([_cell(r.to_dict()[c]) for c in CSV_COLUMNS])
    assert tracks_csv_text(rows) == buf.getvalue()


def _musicnn_corpus(root: Path, name: str) -> CommonConfig:
    common = CommonConfig(artifacts_root=root, model="musicnn-msd", version_dir=root / name)
    rows = [row(f"t{i:02d}", f"al{i // 2}", "Bach") for i in range(5)]
    write_csv(common.layout, rows)
    for i, r in enumerate(rows):  # t03 silent: a validate failure in both engines
        write_wav(common.layout.wav(r["track_id"]), tone(i, 16000, 4.0, silent=i == 3), 16000)
    return common


def test_worker_processes_match_one_process_with_a_real_model(tmp_path: Path) -> None:
    # README: --processes N gives the rows and failures of one process, and vectors equal up to float32 rounding
    # (~4e-8). Measured on this 2-core VM with musicnn-msd: max |diff| 3.0e-8 here (4.5e-8 on 8 tracks of 10 s);
    # with the default postprocess center 9.7e-8 (1.5e-7), as removing the mean leaves shorter vectors whose
    # rounding the norm enlarges. The bound leaves room for other CPUs' kernels (a few float32 ulps more).
    postprocess = "none"
    metas, vecs = [], []
    for p in (1, 2):
        common = _musicnn_corpus(tmp_path, f"v_{p}")
        cfg = EmbedConfig(common=common, processes=p, threads_per_process=1, postprocess=postprocess)
        metas.append(embed.run(cfg))
        vecs.append(np.fromfile(common.layout.embeddings_f32, dtype="<f4").reshape(metas[-1]["count"], -1))
    one, two = metas
    assert [f["track_id"] for f in one["failures"]] == [f["track_id"] for f in two["failures"]] == ["t03"]
    assert (tmp_path / "v_1" / "embeddings" / "track_ids.json").read_bytes() == (
        tmp_path / "v_2" / "embeddings" / "track_ids.json"
    ).read_bytes()
    diff = float(np.abs(vecs[0] - vecs[1]).max())
    print(f"max |diff| processes 1 vs 2, postprocess {postprocess}: {diff:.3g}")
    assert diff <= 2e-7
