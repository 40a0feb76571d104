"""Cross-runtime parity: the Node API serves exactly the rankings and metrics the research job computed.

The research job's own ``build-index`` and ``evaluate`` steps run on a seeded version folder (300 tracks,
clustered vectors, a few exact-duplicate vectors so ties must be broken the documented way: score descending,
then row ascending). The real Node server (``node_api/dist/src/server.js``) is started on 127.0.0.1 with the
exact backend, with the HNSW backend (both with the neighbour table off), and with the precomputed neighbour
table ``index/neighbors.i32`` in front of HNSW, and for every track:

- ``GET /tracks/:id/nearest?k=5`` returns Python's exact top-5 ids (self excluded by id), scores to 1e-5, and
  says which path answered (``method``);
- with ``exclude_same_album=true`` it returns Python's brute-force top-5 over the other albums' tracks;
- ``GET /tracks/:id/composer-eval?k=5`` metrics (P@5, HitRate@5, NDCG@5 and the full-ranking MRR) averaged
  over the scored queries equal ``eval_results.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.embeddings import load_embeddings
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.search import exact_scores, search
from research_job.steps import build_index, evaluate
from research_job.steps.build_index import BuildIndexConfig
from research_job.steps.evaluate import EvaluateConfig
from tests.helpers.artifact_factory import make_version
from tests.helpers.node_server import NODE_API, REPO, free_port, get_json, node_server_js

pytestmark = pytest.mark.slow

K = 5


class NodeServer:
    """The real Node API as a child process on a free loopback port."""

    def __init__(self, version_dir: Path, backend: str, table: str = "off") -> None:
        self.port = free_port()
        self.backend = backend
        self.table = table
        env = {
            **os.environ,
            "ARTIFACTS_DIR": str(version_dir),
            "ARTIFACT_SCHEMA_DIR": str(REPO / "artifact_schema"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "VECTOR_BACKEND": backend,
            "LOG_LEVEL": "warn",
            "RECALL_SAMPLE": "300",
            # ef >= N makes the HNSW graph search visit every node: its answers must then equal exact search
            # (the start-up tuner would otherwise pick the smallest ef with recall@5 >= 0.99 on the sample)
            "HNSW_EF": "300",
            "NEIGHBORS_TABLE": table,
        }
        self.proc = subprocess.Popen(
            ["node", str(node_server_js())],
            cwd=NODE_API,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"node_api exited with {self.proc.returncode}: {out[-2000:]}")
            try:
                if get_json(self.base + "/health")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)  # polling a child process's readiness, bounded by the deadline above
        self.close()
        raise AssertionError("node_api did not become healthy within 120 s")

    def get(self, path: str) -> tuple[int, dict]:
        return get_json(self.base + path)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> ArtifactLayout:
    root = tmp_path_factory.mktemp("parity")
    corpus = make_version(
        root, n=300, dim=32, n_composers=12, album_size=5, seed=7, indexes=("faiss-flat",), with_eval=False
    )
    layout = corpus.layout
    # exact duplicates (rows 10 = 200 = 201, 40 = 41): ties the rankings must break by row, in both runtimes
    vec = np.fromfile(layout.embeddings_f32, dtype="<f4").reshape(300, 32)
    vec[[200, 201]] = vec[10]
    vec[41] = vec[40]
    _rewrite_embeddings(layout, vec)
    common = CommonConfig(version_dir=layout.version_dir, model="fake-model")
    build_index.run(BuildIndexConfig(common=common, recall_queries=300))
    evaluate.run(EvaluateConfig(common=common, bootstrap_resamples=50))
    return layout


def _rewrite_embeddings(layout: ArtifactLayout, vec: np.ndarray) -> None:
    """Replace embeddings.f32 and keep embeddings_meta's checksum true (the factory wrote the old one)."""
    from research_job.io.atomic import write_bytes
    from research_job.provenance import sha256_file
    from research_job.schema import read_artifact, write_artifact

    write_bytes(layout.embeddings_f32, vec.astype("<f4").tobytes())
    meta = read_artifact(layout.embeddings_meta, "embeddings_meta")
    meta["files"]["embeddings_sha256"] = sha256_file(layout.embeddings_f32)
    write_artifact(layout.embeddings_meta, "embeddings_meta", meta)


#: (VECTOR_BACKEND, NEIGHBORS_TABLE): each search path alone, then the precomputed table in front of HNSW
MODES = [("exact", "off"), ("hnsw", "off"), ("hnsw", "require")]


@pytest.fixture(scope="module", params=MODES, ids=[f"{b}-table-{t}" for b, t in MODES])
def server(request: pytest.FixtureRequest, version: ArtifactLayout) -> Iterator[NodeServer]:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the Node API parity test needs Node 20")
    srv = NodeServer(version.version_dir, *request.param)
    try:
        yield srv
    finally:
        srv.close()


def test_nearest_equals_python_exact_search_for_every_track(
    server: NodeServer, version: ArtifactLayout
) -> None:
    vectors, ids, _ = load_embeddings(version)
    ref = search(vectors, ids, vectors, ids, K)
    mismatches = []
    for i, tid in enumerate(ids):
        status, body = server.get(f"/tracks/{tid}/nearest?k={K}")
        assert status == 200, body
        assert body["method"] == ("precomputed" if server.table == "require" else server.backend), body
        got_ids = [h["track_id"] for h in body["hits"]]
        want_ids = [ids[r] for r in ref.rows[i]]
        assert tid not in got_ids
        if got_ids != want_ids:
            mismatches.append((tid, want_ids, got_ids))
            continue
        np.testing.assert_allclose([h["score"] for h in body["hits"]], ref.scores[i], atol=1e-5)
    assert not mismatches, f"{len(mismatches)} tracks rank differently, first: {mismatches[:3]}"
    # the duplicates really are tied, and the tie went to the lower row in both runtimes
    assert [ids[r] for r in ref.rows[ids.index("t00200")][:2]] == ["t00010", "t00201"]


def test_nearest_excluding_same_album_equals_python_brute_force(
    server: NodeServer, version: ArtifactLayout
) -> None:
    """The album filter: Python's reference scores (float64, ties by row) over the tracks of other albums."""
    vectors, ids, _ = load_embeddings(version)
    album = {r.track_id: r.album_id for r in read_tracks_csv(version.tracks_csv)}
    scores = exact_scores(vectors, vectors)
    mismatches = []
    for i, tid in enumerate(ids):
        cand = [j for j in range(len(ids)) if album[ids[j]] != album[tid]]
        want = [ids[j] for j in sorted(cand, key=lambda j: (-scores[i, j], j))[:K]]
        status, body = server.get(f"/tracks/{tid}/nearest?k={K}&exclude_same_album=true")
        assert status == 200, body
        got = [h["track_id"] for h in body["hits"]]
        if got != want:
            mismatches.append((tid, want, got))
    assert not mismatches, f"{len(mismatches)} tracks rank differently, first: {mismatches[:3]}"


def test_composer_eval_averages_equal_eval_results(server: NodeServer, version: ArtifactLayout) -> None:
    results = json.loads(version.eval_results.read_text())
    _, ids, _ = load_embeddings(version)
    per_query: list[dict[str, float]] = []
    reasons: dict[str, int] = {}
    for tid in ids:
        status, body = server.get(f"/tracks/{tid}/composer-eval?k={K}")
        assert status == 200, body
        if body["metrics"] is None:
            reasons[body["reason"]] = reasons.get(body["reason"], 0) + 1
        else:
            per_query.append(body["metrics"])
    overall = results["overall"]
    assert len(per_query) == overall["n_queries"]
    assert reasons.get("missing_composer", 0) == results["query_policy"]["n_excluded_missing_composer"]
    assert (
        reasons.get("no_other_track_by_composer", 0) == results["query_policy"]["n_excluded_no_other_track"]
    )
    for name in ("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr"):
        mean = float(np.mean([m[name] for m in per_query]))
        assert mean == pytest.approx(overall["metrics"][name], abs=1e-9), name


def test_a_reranked_table_is_served_in_pythons_order(version: ArtifactLayout, tmp_path: Path) -> None:
    """build-index --rerank csls: the real server answers every track's /nearest in the order of Python's
    re-ranked exact top-k (research_job.rerank) and evaluate --rerank csls scores that same ranking."""
    from research_job.rerank import Rerank, topk

    copy = tmp_path / version.version_dir.name
    shutil.copytree(version.version_dir, copy)
    common = CommonConfig(version_dir=copy, model="fake-model")
    build_index.run(BuildIndexConfig(common=common, recall_queries=300, rerank="csls", rerank_k=10))
    vectors, ids, _ = load_embeddings(ArtifactLayout(copy))
    want, _ = topk(vectors, K, Rerank("csls", k=10))
    srv = NodeServer(copy, "exact", "require")
    try:
        mismatches = []
        for i, tid in enumerate(ids):
            status, body = srv.get(f"/tracks/{tid}/nearest?k={K}")
            assert status == 200 and body["method"] == "precomputed", body
            assert body["ranking"] == {"method": "csls", "params": {"k": 10}}
            got = [h["track_id"] for h in body["hits"]]
            if got != [ids[r] for r in want[i]]:
                mismatches.append((tid, got))
        assert not mismatches, f"{len(mismatches)} tracks differ, first: {mismatches[:3]}"
    finally:
        srv.close()
