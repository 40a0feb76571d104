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
