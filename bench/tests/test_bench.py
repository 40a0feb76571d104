"""Fast tests of the benchmark harness: synthetic data, exact top-k, recall, statistics, child processes with a time
limit, the synthetic artifact generator (schema-valid, index consistent), clip rendering and the report.

Run: ``python -m pytest bench/tests -q`` (seconds; no network, seeded data only).
"""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from bench import common, index_bench, report
from bench.synthetic import dataset, exact_topk, recall_at


def test_summarize_hand_values() -> None:
    s = common.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 5.0 and s["n"] == 5
    assert s["p95"] == pytest.approx(4.8)
    with pytest.raises(ValueError):
        common.summarize([])


def test_mixture_is_seeded_unit_and_clustered() -> None:
    a = dataset(2000, 32, 50, seed=3)
    b = dataset(2000, 32, 50, seed=3)
    c = dataset(2000, 32, 50, seed=4)
    assert np.array_equal(a["base"], b["base"]) and not np.array_equal(a["base"], c["base"])
    assert np.allclose(np.linalg.norm(a["base"], axis=1), 1.0, atol=1e-5)
    x, lab = a["base"], a["labels"]
    same = x[lab == lab[0]]
    other = x[lab != lab[0]]
    # same-cluster points are much closer than points of other clusters
    assert (same @ x[0]).mean() > 0.3 > abs((other @ x[0]).mean()) + 0.2


def test_exact_topk_equals_brute_force_with_ties_by_row() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 8)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    base[10] = base[3]  # an exact tie: row 3 must come before row 10
    queries = np.vstack([base[3], rng.standard_normal((20, 8)).astype(np.float32)])
    got = exact_topk(base, queries, 5, block=64)  # several blocks
    s = queries @ base.T
    for i in range(len(queries)):
        want = sorted(range(len(base)), key=lambda j: (-s[i, j], j))[:5]
        assert got[i].tolist() == want
    assert got[0][:2].tolist() == [3, 10]


def test_recall_at_hand_worked() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 9, 1], [-1, 4, 7]])
    assert recall_at(found, truth, 3) == pytest.approx((2 + 1) / 6)
    assert recall_at(found, truth, 1) == pytest.approx(0.0)


def child_partial_then_block(params: dict, out: Path) -> None:
    """Test child: dumps a partial result, then blocks until the parent's time limit kills it."""
    common.dump_partial(out, {"phase": "build", "value": params["value"]})
    threading.Event().wait()


def test_run_child_keeps_partial_result_on_timeout(tmp_path: Path) -> None:
    r = common.run_child(
        "bench.tests.test_bench", "child_partial_then_block", {"value": 7},
        threads=1, timeout_s=3, out_path=tmp_path / "c.json",
    )  # fmt: skip
    assert r["status"] == "timeout" and r["value"] == 7 and r["phase"] == "build"


def test_index_child_flat_and_hnswlib_recall(tmp_path: Path) -> None:
    paths = dataset(3000, 16, 40, seed=1, cache_dir=tmp_path)
    truth = exact_topk(np.load(paths["base"]), np.load(paths["queries"]), index_bench.K)
    np.save(tmp_path / "truth.npy", truth)
    params = {
        "threads": 1, "base": str(paths["base"]), "queries": str(paths["queries"]),
        "truth": str(tmp_path / "truth.npy"), "n_single": 5, "batch_repeats": 1, "hnsw_ef": [200], "nprobe": [4],
    }  # fmt: skip
    results = []
    for fam in ("faiss-flat", "hnswlib", "faiss-ivf-flat"):
        index_bench.child_index({**params, "family": fam}, tmp_path / f"{fam}.json")
        results.append(json.loads((tmp_path / f"{fam}.json").read_text()))
    flat, hnsw, ivf = results
    assert flat["search"][0]["recall_at_10"] == 1.0  # the exact index must agree with exact numpy
    assert hnsw["search"][0]["recall_at_10"] > 0.95 and hnsw["index_bytes"] > 3000 * 16 * 4
    assert 0 < ivf["search"][0]["recall_at_10"] <= 1.0 and ivf["params"]["nlist"] >= 64
    result = {
        "mode": "test", "created_at": "now", "data": "d", "k": 10,
        "machine": common.machine_facts({"batched_search": 1}),
        "memory_bandwidth": {"read_bytes_per_s": {"median": 1e10}},
        "datasets": [{
            "n": 3000, "dim": 16, "full_scan_bytes": 3000 * 64, "memory_bound_ms_per_query": 0.02,
            "exact_reference": {"numpy_1t": {"single_ms": {"median": 1.0, "p95": 2.0}, "batch_qps": {"median": 100}}},
            "indexes": results,
        }],
    }  # fmt: skip
    md = index_bench.markdown(result)
    assert "| faiss-flat | - |" in md and "| hnswlib | ef=200 |" in md
    png = index_bench.plot(result, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_synthetic_artifacts_are_schema_valid_and_consistent(tmp_path: Path) -> None:
    hnswlib = pytest.importorskip("hnswlib")
    from bench.make_synthetic_artifacts import make_artifacts
    from research_job import schema

    vdir = make_artifacts(tmp_path, 400, 16, threads=1)
    emb = schema.read_artifact(vdir / "embeddings" / "embeddings_meta.json", "embeddings_meta")
    ids = schema.read_artifact(vdir / "embeddings" / "track_ids.json", "track_ids")["track_ids"]
    idx = schema.read_artifact(vdir / "index" / "index_meta.json", "index_meta")
    assert emb["count"] == idx["count"] == len(ids) == 400
    assert emb["artifact_version"] == idx["artifact_version"] == vdir.name
    x = np.fromfile(vdir / "embeddings" / "embeddings.f32", dtype="<f4").reshape(400, 16)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    with open(vdir / "metadata" / "tracks_metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["track_id"] for r in rows] == ids
    for r in rows[:50]:
        typed = {
            **{k: (v if v != "" else None) for k, v in r.items()},
            "track_no": int(r["track_no"]), "duration_sec": float(r["duration_sec"]),
            "composer_missing": r["composer_missing"] == "true",
        }  # fmt: skip
        schema.validate("tracks_metadata_row", typed)
    index = hnswlib.Index(space="ip", dim=16)
    index.load_index(str(vdir / "index" / "hnsw.index"))
    labels, _ = index.knn_query(x[:20], k=1)
    assert labels[:, 0].tolist() == list(range(20))  # labels are row numbers
    assert make_artifacts(tmp_path, 400, 16) == vdir  # complete folder reused
    from bench.make_synthetic_artifacts import add_neighbors
    from research_job.search import brute_force

    entry = add_neighbors(vdir, 7)
    assert schema.read_artifact(vdir / "index" / "index_meta.json", "index_meta")["neighbors"] == entry
    table = np.fromfile(vdir / "index" / "neighbors.i32", dtype="<i4").reshape(400, 7)
    assert np.array_equal(table, brute_force(x, ids, x, ids, 7).rows)


def test_rendered_clips_decode_to_their_duration(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    from bench.extract_bench import render_clips

    paths = render_clips(tmp_path, 4, 2.0)
    assert [p.suffix for p in paths] == [".flac", ".mp3", ".ogg", ".m4a"]
    for p in paths:
        with av.open(str(p)) as c:
            n = sum(fr.samples for fr in c.decode(audio=0))
            rate = c.streams.audio[0].rate
        assert 1.9 < n / rate < 2.2, (p, n / rate)


def test_report_writes_sections_for_present_results(tmp_path: Path) -> None:
    res = {
        "mode": "quick", "created_at": "t", "machine": {"cpu_model": "x"}, "status": "skipped",
        "reason": "not available yet: research_job.steps.evaluate",
    }  # fmt: skip
    (tmp_path / "eval_quick.json").write_text(json.dumps(res))
    out = report.write(tmp_path, tmp_path / "benchmarks.md")
    text = out.read_text()
    assert "## eval — quick" in text and "not available yet: research_job.steps.evaluate" in text
    assert "## index" not in text


def child_report_peak(params: dict, out: Path) -> None:
    """Test child: reports its own peak RSS."""
    common.dump_partial(out, {"peak_rss": common.peak_rss_bytes()})


def test_child_peak_rss_is_its_own_not_the_parents(tmp_path: Path) -> None:
    big = np.ones(300 * 2**20 // 8)  # the parent holds ~300 MiB
    r = common.run_child(
        "bench.tests.test_bench",
        "child_report_peak",
        {},
        threads=1,
        timeout_s=60,
        out_path=tmp_path / "p.json",
    )
    assert r["status"] == "ok" and 0 < r["peak_rss"] < 250 * 2**20, r
    assert common.peak_rss_bytes() >= big.nbytes


def test_index_datasets_merge_replaces_same_size_and_stamps_each_run() -> None:
    from bench.run import merge_index_result

    def res(when: str, sizes: list[tuple[int, int]], bw: float) -> dict:
        return {
            "benchmark": "index",
            "mode": "full",
            "created_at": when,
            "machine": {"loadavg_1m_5m_15m": [float(bw), 0.0, 0.0]},
            "memory_bandwidth": {"read_bytes_per_s": {"median": bw}},
            "datasets": [{"n": n, "dim": d, "tag": when} for n, d in sizes],
        }

    old = res("t1", [(100_000, 200), (100_000, 768)], 1.0)
    merged = merge_index_result(old, res("t2", [(1_000_000, 200), (100_000, 768)], 2.0))
    assert [(d["n"], d["dim"], d["tag"], d["measured_at"]) for d in merged["datasets"]] == [
        (100_000, 200, "t1", "t1"),
        (100_000, 768, "t2", "t2"),
        (1_000_000, 200, "t2", "t2"),
    ]
    assert merged["datasets"][0]["memory_bandwidth"]["read_bytes_per_s"]["median"] == 1.0
    assert merged["datasets"][2]["machine"]["loadavg_1m_5m_15m"][0] == 2.0
    # a result of another mode is not merged into
    assert len(merge_index_result({**old, "mode": "quick"}, res("t3", [(1_000, 8)], 3.0))["datasets"]) == 1


def test_soak_hostile_folders_differ_and_install_restores_the_good_one(tmp_path: Path) -> None:
    """Each hostile folder of the soak really changes the served folder, and installing the good version after
    it restores every file byte for byte (no link, FIFO or leftover survives into the next round)."""
    pytest.importorskip("hnswlib")
    from bench import soak_bench
    from bench.make_synthetic_artifacts import make_artifacts

    good = make_artifacts(tmp_path / "src", 200, 8, threads=1)
    live = tmp_path / "live" / good.name
    secret = tmp_path / "shadow"
    secret.write_text("root:x\n", encoding="utf-8")

    def snapshot(root: Path) -> dict[str, bytes | str]:
        out: dict[str, bytes | str] = {}
        for p in sorted(root.rglob("*")):
            rel = str(p.relative_to(root))
            if p.name.startswith(".complete"):
                continue
            if p.is_symlink():
                out[rel] = f"link -> {p.readlink()}"
            elif p.is_fifo():
                out[rel] = "fifo"
            elif p.is_file():
                out[rel] = p.read_bytes()
        return out

    soak_bench._install(good, live)
    want = snapshot(good)
    assert snapshot(live) == want
    for name, hostile in soak_bench.HOSTILE.items():
        hostile(live, secret)
        assert snapshot(live) != want, name
        soak_bench._install(good, live)
        assert snapshot(live) == want, name


def test_ray_sizing_hours_hand_worked_and_refuses_bad_counts() -> None:
    from bench.ray_bench import sizing_hours

    # 1M tracks x 240 s x 0.05 worker-s per audio s = 12M worker-s; over 8 workers = 1.5M s = 416.67 h
    assert sizing_hours(1_000_000, 240.0, 0.05, 8) == pytest.approx(416.6667, rel=1e-5)
    # + 0.36 worker-s per track: 1M x (12 + 0.36) / 8 / 3600 = 429.17 h
    assert sizing_hours(1_000_000, 240.0, 0.05, 8, 0.36) == pytest.approx(429.1667, rel=1e-5)
    assert sizing_hours(1000, 30.0, 0.1, 2) == pytest.approx(1000 * 3.0 / 2 / 3600)
    for bad in ((0, 240.0, 0.05, 8), (10, 240.0, 0.05, 0), (10, 0.0, 0.05, 8), (10, 240.0, 0.0, 8)):
        with pytest.raises(ValueError, match="sizing_hours"):
            sizing_hours(*bad)
    with pytest.raises(ValueError, match="overhead"):
        sizing_hours(10, 240.0, 0.05, 8, -1.0)


def test_ray_sizings_one_table_per_ray_config_from_its_own_corpus() -> None:
    from bench.ray_bench import sizings

    def cfg(name: str, corpus: str, n: int, audio: float) -> dict[str, object]:
        return {
            "config": name, "corpus": corpus, "n_tracks": n, "audio_sec": audio, "workers": 2,
            "busy_sec_per_audio_sec": {"median": 0.05}, "actor_shards": [1, 1],
        }  # fmt: skip

    out = sizings(
        [
            {"config": "local processes=1", "corpus": "demo", "n_tracks": 64, "audio_sec": 1920.0},
            cfg("ray 2x1 shard=32", "demo", 64, 1920.0),
            cfg("ray 2x1 shard=2", "long synth", 8, 1920.5),
        ]
    )
    assert [(z["from_config"], z["corpus"]) for z in out] == [
        ("ray 2x1 shard=32", "demo"),
        ("ray 2x1 shard=2", "long synth"),
    ]
    assert out[0]["mean_track_sec"] == 30.0 and {r["track_sec"] for r in out[0]["rows"]} == {30.0, 240.0}
    # 240.06 s tracks: the 4-minute row once, not twice
    assert [r["track_sec"] for r in out[1]["rows"]] == [240.0, 240.0, 240.0]


def test_ray_overheads_hand_worked() -> None:
    from bench.ray_bench import per_shard_overhead, sched_overhead

    # 10 s phase, 16 busy s over 2 workers = 8 s busy wall; 2 s idle over 64 tracks
    assert sched_overhead(10.0, 16.0, 2, 64) == pytest.approx(2.0 / 64)
    # the busiest actor idle 3.0 s over 8 shards vs 1.0 s over 1 shard -> 2 s / 7 extra shards
    small = {"idle_sec": 3.0, "shards": 8}
    large = {"idle_sec": 1.0, "shards": 1}
    assert per_shard_overhead(small, large) == pytest.approx(2.0 / 7)
    assert per_shard_overhead(small, {**small}) is None
    with pytest.raises(ValueError):
        sched_overhead(1.0, 1.0, 0, 1)


def test_ray_incremental_tracks_change_evenly_spaced_ids_and_add_rows() -> None:
    from bench.ray_bench import incremental_tracks

    base = [{"track_id": f"t{i:05d}", "file": f"/a/{i}.flac"} for i in range(8)]
    out, changed = incremental_tracks(base, ["/c/0.mp3", "/c/1.mp3"], ["/n/0.ogg"])
    assert changed == ["t00002", "t00006"]
    assert [t["file"] for t in out if t["track_id"] in changed] == ["/c/0.mp3", "/c/1.mp3"]
    assert out[-1] == {"track_id": "t00008", "file": "/n/0.ogg"} and len(out) == 9
    assert base[2]["file"] == "/a/2.flac"  # the base list is not modified
    assert sum(a != b for a, b in zip(base, out[:8], strict=True)) == 2


def test_ray_markdown_tables_from_a_hand_made_result() -> None:
    from bench import ray_bench

    def s(v: float) -> dict[str, float]:
        return {"median": v, "p95": v * 1.1, "min": v, "max": v, "n": 2}

    local = {
        "config": "local processes=1", "corpus": "demo", "status": "ok", "n_tracks": 64, "audio_sec": 1280.0,
        "wall_sec": s(20.0), "tracks_per_sec": s(3.2), "x_realtime": s(64.0), "wall_ratio_to_reference": 1.0,
        "non_compute_per_track_sec": s(0.05), "peak_rss_driver": 400 * 2**20,
    }  # fmt: skip
    ray = {
        **local, "config": "ray 2x1 shard=32", "wall_sec": s(30.0), "wall_ratio_to_reference": 1.5,
        "cluster_start_sec": s(4.5), "actors_ready_sec": s(3.25), "phase_sec": s(15.0), "teardown_sec": s(1.5),
        "shards": 2, "actor_shards": [2, 0], "imbalance": s(2.0), "sched_overhead_per_track_sec": s(0.012), "peak_rss_actors": {"1": 350 * 2**20, "2": 360 * 2**20},
        "peak_rss_descendants_total": 1400 * 2**20, "workers": 2,
    }  # fmt: skip
    broken = {
        "config": "ray 2x1 shard=4",
        "corpus": "demo",
        "status": "error",
        "error": "Traceback ... ConfigError: boom",
    }
    # the long corpus: 8 tracks of 240 s, its own reference (wall / reference 0.80 against its own local 1)
    long_local = {
        **local, "corpus": "long synth", "n_tracks": 8, "audio_sec": 1920.0, "wall_sec": s(25.0),
        "x_realtime": s(76.8), "tracks_per_sec": s(0.32), "wall_ratio_to_reference": 1.0,
    }  # fmt: skip
    long_ray = {
        **ray, "config": "ray 2x1 shard=2", "corpus": "long synth", "n_tracks": 8, "audio_sec": 1920.0,
        "wall_sec": s(20.0), "x_realtime": s(96.0), "tracks_per_sec": s(0.4), "wall_ratio_to_reference": 0.8,
        "shards": 4, "actor_shards": [2, 2], "imbalance": s(1.01), "sched_overhead_per_track_sec": s(0.25),
    }  # fmt: skip
    inc = {
        "config": "ray 2x1 shard=32 --incremental", "full_config": "ray 2x1 shard=32", "wall_sec": s(12.0),
        "wall_ratio_to_full": 0.4, "cluster_start_sec": s(4.0),
        "counts": {"base": "/x", "copied": 62, "embedded_new": 2, "embedded_changed": 2, "reason": None},
    }  # fmt: skip
    result = {
        "mode": "quick", "created_at": "t0", "input": "64 clips", "model": "musicnn-msd", "model_note": None,
        "corpora": [
            {"corpus": "demo", "input": "demo corpus, 64 of 128 tracks", "passes": 2},
            {"corpus": "long synth", "input": "8 seeded additive-synth tracks of 240 s", "passes": 1},
        ],
        "reference": "local processes=1", "ray": ray_bench.RAY,
        "configs": [local, ray, broken, long_local, long_ray],
        "per_shard_overhead_sec": 0.0425,
        "incremental": {"changed_ids": ["a", "b"], "added_ids": ["c", "d"], "n_tracks": 66, "configs": [inc]},
        "sizing": [
            ray_bench._sizing(
                {**ray, "busy_sec_per_audio_sec": s(0.05), "busiest_idle_sec": s(0.768), "busiest_actor_shards": 2,
                 "shard_size": 32}, 20.0,
            ),
            ray_bench._sizing(
                {**long_ray, "busy_sec_per_audio_sec": s(0.04), "busiest_idle_sec": s(0.0),
                 "busiest_actor_shards": 2, "shard_size": 2}, 240.0,
            ),
        ],
        "gpu": {"status": "skipped", "reason": "no CUDA device on this machine"},
    }  # fmt: skip
    md = ray_bench.markdown(result)
    rows = {" | ".join(line.split(" | ")[:2]): line for line in md.splitlines() if line.startswith("| ")}
    assert "| corpus | config | tracks |" in md
    assert (
        "| 4.50 | 3.25 | 15.00 | 1.50 | 2 (2/0; busiest x2.00) | 0.050 | 0.012 | 400 MiB | 2 actor processes "
        "(all passes) max 360 MiB, min 350 MiB; all descendants 1400 MiB |"
        in rows["| demo | ray 2x1 shard=32"]
    )
    assert "| 64 | 1280 | 20.00 | 22.00 | 3.20 | 64.0 | 1.00 | - |" in rows["| demo | local processes=1"]
    assert "error: Traceback ... ConfigError: boom" in rows["| demo | ray 2x1 shard=4"]
    # both corpora in the one table, each against its own reference
    assert "| 8 | 1920 | 25.00 | 27.50 | 0.32 | 76.8 | 1.00 | - |" in rows["| long synth | local processes=1"]
    assert "| 8 | 1920 | 20.00 | 22.00 | 0.40 | 96.0 | 0.80 |" in rows["| long synth | ray 2x1 shard=2"]
    assert "| 4 (2/2; busiest x1.01) | 0.050 | 0.250 |" in rows["| long synth | ray 2x1 shard=2"]
    assert (
        "**demo**: demo corpus, 64 of 128 tracks, 2 pass(es) each; **long synth**: 8 seeded additive-synth tracks "
        "of 240 s, 1 pass(es) each" in md
    )
    assert "**42 ms per extra shard**" in md and "Per-shard overhead (demo corpus," in md
    assert "| 12.00 | 30.00 | 0.40 | 4.00 | copied 62, embedded_new 2, embedded_changed 2 |" in md
    assert "Sizing from `ray 2x1 shard=32` on the demo corpus, mean track 20 s — **EXTRAPOLATION" in md
    assert "per audio second of the demo corpus, 1 of 2 actors running shards at the same time" in md
    assert "Sizing from `ray 2x1 shard=2` on the long synth corpus, mean track 240 s — **EXTRAPOLATION" in md
    assert "per audio second of the long synth corpus, 2 of 2 actors" in md
    assert "GPU: not measured (no CUDA device on this machine)" in md
    # 1M x 240 s x 0.05 / 8 / 3600 = 416.7 h; + 0.768 s / 2 shards / 32 tracks = 0.012 worker-s per track:
    # 1M x 12.012 / 8 / 3600 = 417.1 h
    assert "| 240 s | 416.7 h / 417.1 h |" in md
    assert "| 20 s | 34.7 h / 35.1 h |" in md
    # the long corpus: 1M x 240 s x 0.04 / 8 / 3600 = 333.3 h, no overhead measured (idle 0); one row of 240 s
    assert "| 240 s | 333.3 h / 333.3 h | 83.3 h / 83.3 h | 20.8 h / 20.8 h |" in md
    assert md.count("| 240 s |") == 2
    skipped = ray_bench.markdown(
        {"mode": "quick", "created_at": "t", "status": "skipped", "reason": "no ray"}
    )
    assert "Skipped: no ray" in skipped
    old = {k: v for k, v in result.items() if k not in ("corpora", "sizing")}
    old["configs"] = [{k: v for k, v in c.items() if k != "corpus"} for c in (local, ray)]
    old_md = ray_bench.markdown(old)
    assert "Inputs: **demo**: 64 clips. Model" in old_md and "| demo | ray 2x1 shard=32 | 64 |" in old_md


def test_runtime_bench_macs_match_the_networks_flop_count() -> None:
    """The ceiling of the int8 model splits its FLOPs into the quantised timbral convs and the rest: the two
    constants must add up to what torch counts for one patch of the real network (within the small ops)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.runtime_bench import OTHER_MACS, TIMBRAL_MACS
    from research_job.models.musicnn import MusicnnNet

    net = MusicnnNet().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(torch.zeros(1, 187, 96))
    counted = fc.get_total_flops()
    assert abs(2 * (TIMBRAL_MACS + OTHER_MACS) - counted) / counted < 0.01
    assert 0.75 < TIMBRAL_MACS / (TIMBRAL_MACS + OTHER_MACS) < 0.85


def test_precision_bench_per_track_cosine_hand_worked() -> None:
    from bench.precision_bench import per_track_cosine

    ref = {
        "a": np.array([1.0, 0.0], np.float32),
        "b": np.array([0.0, 2.0], np.float32),
        "c": np.ones(2, np.float32),
    }
    got = {"a": np.array([1.0, 1.0], np.float32), "b": np.array([0.0, 5.0], np.float32)}
    out = per_track_cosine(ref, got)
    assert (
        out["n_tracks"] == 2
        and abs(out["min"] - 2**-0.5) < 1e-6
        and abs(out["median"] - (1 + 2**-0.5) / 2) < 1e-6
    )
