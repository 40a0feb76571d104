"""pgvector publishing against a real PostgreSQL (pgserver wheel, pgvector bundled).

Parity: for every track of a seeded corpus, the pgvector top-5 (HNSW) is compared with exact numpy search
(float64 dot products of the stored float32 vectors, self excluded by track_id, ties by row): recall@5 is
measured and must be >= 0.99; an exact scan (index scans off) must give the same ranking up to float32 ties.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from research_job.errors import ArtifactError, StorageError
from research_job.publish.pgvector import (
    connect,
    list_versions,
    nearest_pgvector,
    publish_pgvector,
    redact_url,
    resolve_latest,
    table_name_for,
)
from research_job.schema import write_artifact
from tests.helpers.artifact_factory import Corpus, make_version
from tests.helpers.publish_fixtures import pg_server

pytestmark = pytest.mark.network_services
AV = "v1_model_fake-model"
K = 5
TIE_TOL = 1e-6  # pgvector accumulates cosine terms in float32; numpy in float64


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with pg_server() as url:
        yield url


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_version(
        tmp_path_factory.mktemp("art"),
        n=300,
        dim=32,
        n_composers=12,
        album_size=6,
        seed=7,
        indexes=("hnswlib",),
    )


@pytest.fixture(scope="module")
def published(db: str, corpus: Corpus) -> str:
    r = publish_pgvector(corpus.layout.version_dir, database_url=db, release="parity")
    assert r["status"] == "published"
    return str(r["version"])


@pytest.fixture
def conn(db: str) -> Iterator[Any]:
    c = connect(db)
    c.autocommit = True
    yield c
    c.close()


def exact_topk(
    vectors: np.ndarray, albums: list[str], i: int, k: int, exclude_same_album: bool
) -> tuple[list[int], np.ndarray]:
    """Rows of the exact top-k of row i (score desc, row asc) and all scores of row i."""
    x = vectors.astype(np.float64)
    scores = x @ x[i]
    keep = np.ones(len(x), dtype=bool)
    keep[i] = False
    if exclude_same_album:
        keep &= np.array([a != albums[i] for a in albums])
    rows = np.flatnonzero(keep)
    order = np.lexsort((rows, -scores[rows]))
    return [int(r) for r in rows[order[:k]]], scores


def test_rows_metadata_and_vectors_are_stored_exactly(conn: Any, corpus: Corpus, published: str) -> None:
    table = table_name_for(published)
    rows = conn.execute(
        f'SELECT row_id, track_id, album_id, composer, title, embedding::text FROM "{table}" ORDER BY row_id'
    ).fetchall()
    assert [r[0] for r in rows] == list(range(300))
    assert [r[1] for r in rows] == corpus.track_ids
    for r, meta in zip(rows, corpus.rows, strict=True):
        assert (r[2], r[3], r[4]) == (meta["album_id"], meta["composer"], meta["title"])
    stored = np.array([json.loads(r[5]) for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(stored, corpus.vectors)  # bit-exact through binary COPY
    idx = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,)).fetchall()
    assert any("USING hnsw (embedding vector_cosine_ops)" in d[0] for d in idx)
    (v,) = [v for v in list_versions(conn) if v["version"] == published]
    assert (v["n"], v["dim"], v["model"], v["is_latest"]) == (300, 32, "fake-model", True)


@pytest.mark.parametrize("exclude_same_album", [False, True])
def test_parity_with_exact_numpy_search(
    conn: Any, corpus: Corpus, published: str, exclude_same_album: bool
) -> None:
    albums = [str(r["album_id"]) for r in corpus.rows]
    recalls, exact_mismatch = [], 0
    for i, tid in enumerate(corpus.track_ids):
        want, scores = exact_topk(corpus.vectors, albums, i, K, exclude_same_album)
        ann = nearest_pgvector(conn, published, tid, K, exclude_same_album, ef_search=100)
        full = nearest_pgvector(conn, published, tid, K, exclude_same_album, exact=True)
        for hits in (ann, full):
            assert len(hits) == K
            assert all(h["track_id"] != tid for h in hits)
            if exclude_same_album:
                assert all(h["album_id"] != albums[i] for h in hits)
            got_rows = [h["row_id"] for h in hits]
            np.testing.assert_allclose([h["score"] for h in hits], scores[got_rows], atol=1e-5)
        recalls.append(len({h["row_id"] for h in ann} & set(want)) / K)
        full_rows = [h["row_id"] for h in full]
        if full_rows != want:
            exact_mismatch += 1
            # only a float32-vs-float64 near-tie may swap two rows: same scores rank by rank
            np.testing.assert_allclose(scores[full_rows], scores[want], atol=TIE_TOL)
    recall = float(np.mean(recalls))
    print(
        f"\npgvector HNSW recall@{K} vs exact (exclude_same_album={exclude_same_album}): {recall:.4f}; "
        f"exact-scan rankings differing only by near-ties: {exact_mismatch}/{len(recalls)}"
    )
    assert recall >= 0.99
    assert exact_mismatch <= 2


def test_unknown_version_and_track_are_named(conn: Any, published: str) -> None:
    with pytest.raises(ArtifactError, match=r"Unknown version 'v1_model_fake-model/nope'. Known: .*parity"):
        nearest_pgvector(conn, f"{AV}/nope", "t00001", K)
    with pytest.raises(ArtifactError, match=r"Unknown track_id 'zzz'"):
        nearest_pgvector(conn, published, "zzz", K)


def test_republish_is_a_no_op_and_different_content_is_refused(tmp_path: Path, db: str, conn: Any) -> None:
    c = make_version(tmp_path, n=40, dim=8, seed=3, indexes=("hnswlib",))
    r1 = publish_pgvector(c.layout.version_dir, database_url=db, release="noop", set_latest=False)
    table = r1["table"]
    oid = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()[0]
    before = conn.execute(
        "SELECT published_at FROM vector_versions WHERE version = %s", (r1["version"],)
    ).fetchone()
    r2 = publish_pgvector(c.layout.version_dir, database_url=db, release="noop", set_latest=False)
    assert r2["status"] == "unchanged" and "copy_sec" not in r2
    assert conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()[0] == oid
    assert (
        conn.execute(
            "SELECT published_at FROM vector_versions WHERE version = %s", (r1["version"],)
        ).fetchone()
        == before
    )

    ev = json.loads(c.layout.eval_results.read_text())
    ev["created_at"] = "2026-11-23T04:00:00Z"  # a rerun: the same figures, other bytes
    write_artifact(c.layout.eval_results, "eval_results", ev)
    with pytest.raises(ArtifactError, match=r"different content: changed eval/eval_results\.json"):
        publish_pgvector(c.layout.version_dir, database_url=db, release="noop", set_latest=False)
    r3 = publish_pgvector(c.layout.version_dir, database_url=db, release="noop", set_latest=False, force=True)
    assert r3["status"] == "overwritten"
    assert conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == 40
    row = conn.execute(
        "SELECT content_sha256 FROM vector_versions WHERE version = %s", (r1["version"],)
    ).fetchone()
    assert row[0] == r3["content_sha256"] != r1["content_sha256"]


def test_versions_coexist_and_latest_switches_atomically(tmp_path: Path, db: str, conn: Any) -> None:
    model = "switch-model"
    av = f"v1_model_{model}"
    a = make_version(
        tmp_path / "a",
        model=model,
        n=50,
        dim=8,
        seed=11,
        created_at="2026-11-01T00:00:00Z",
        indexes=("hnswlib",),
    )
    b = make_version(
        tmp_path / "b",
        model=model,
        n=60,
        dim=8,
        seed=12,
        created_at="2026-11-02T00:00:00Z",
        indexes=("hnswlib",),
    )
    ra = publish_pgvector(a.layout.version_dir, database_url=db)
    assert resolve_latest(conn, av) == ra["version"]
    hits_a = nearest_pgvector(conn, ra["version"], "t00001", K)

    # an aborted publish leaves no trace
    def crash(_: Any) -> None:
        raise RuntimeError("simulated crash before commit")

    with pytest.raises(RuntimeError, match="simulated crash"):
        publish_pgvector(b.layout.version_dir, database_url=db, before_commit=crash)
    rb_version = f"{av}/20261102T000000Z"
    assert conn.execute("SELECT to_regclass(%s)", (table_name_for(rb_version),)).fetchone()[0] is None
    assert rb_version not in [v["version"] for v in list_versions(conn)]
    assert resolve_latest(conn, av) == ra["version"]

    # while B is being published (rows copied, index built, flag moved, not committed), another session sees A
    seen: dict[str, Any] = {}

    def look_from_outside(_: Any) -> None:
        seen["latest"] = resolve_latest(conn, av)
        seen["b_table"] = conn.execute("SELECT to_regclass(%s)", (table_name_for(rb_version),)).fetchone()[0]
        seen["hits"] = nearest_pgvector(conn, seen["latest"], "t00001", K)
        seen["n_latest"] = conn.execute(
            "SELECT count(*) FROM vector_versions WHERE artifact_version = %s AND is_latest", (av,)
        ).fetchone()[0]

    rb = publish_pgvector(b.layout.version_dir, database_url=db, before_commit=look_from_outside)
    assert seen == {"latest": ra["version"], "b_table": None, "hits": hits_a, "n_latest": 1}
    assert rb["version"] == rb_version and rb["latest_moved"]
    assert resolve_latest(conn, av) == rb_version
    # both versions stay queryable, each on its own rows
    assert nearest_pgvector(conn, ra["version"], "t00001", K) == hits_a
    hits_b = nearest_pgvector(conn, rb_version, "t00055", K)
    assert len(hits_b) == K and all(h["row_id"] < 60 for h in hits_b)
    with pytest.raises(ArtifactError, match="Unknown track_id 't00055'"):
        nearest_pgvector(conn, ra["version"], "t00055", K)
    # re-publishing A moves latest back without copying anything
    again = publish_pgvector(a.layout.version_dir, database_url=db)
    assert again["status"] == "unchanged" and again["latest_moved"]
    assert resolve_latest(conn, av) == ra["version"]


def test_short_lists_only_when_too_few_tracks_qualify(tmp_path: Path, db: str, conn: Any) -> None:
    c = make_version(tmp_path, model="tiny-model", n=7, dim=4, album_size=3, indexes=("hnswlib",))
    r = publish_pgvector(c.layout.version_dir, database_url=db)
    assert len(nearest_pgvector(conn, r["version"], "t00000", 10)) == 6
    # album al0000 = rows 0..2: excluding it leaves 4 candidates
    hits = nearest_pgvector(conn, r["version"], "t00000", 10, exclude_same_album=True)
    assert sorted(h["row_id"] for h in hits) == [3, 4, 5, 6]


def test_database_password_is_never_shown() -> None:
    assert redact_url("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    with pytest.raises(StorageError) as e:
        connect("postgresql://u:hunter2@127.0.0.1:1/x?connect_timeout=2")
    assert "hunter2" not in str(e.value) and "***" in str(e.value)


def test_step_run_to_pgvector(tmp_path: Path, db: str, conn: Any) -> None:
    from research_job.config import build_config
    from research_job.errors import ConfigError
    from research_job.steps import publish
    from research_job.steps.publish import PublishConfig

    c = make_version(tmp_path, model="step-model", n=20, dim=4, indexes=("hnswlib",))
    cfg = build_config(
        PublishConfig,
        section="publish",
        env={"RESEARCH_JOB_DATABASE_URL": db},
        overrides={"to": "pgvector", "version_dir": str(c.layout.version_dir), "hnsw_m": 8},
    )
    r = publish.run(cfg)
    assert r["status"] == "published" and resolve_latest(conn, "v1_model_step-model") == r["version"]
    with pytest.raises(ConfigError, match="needs --database-url"):
        publish.run(build_config(PublishConfig, section="publish", overrides={"to": "pgvector"}, env={}))


def test_documented_sql_is_the_sql_that_runs() -> None:
    """docs/publishing.md is the Node API's contract: its query must be NEAREST_SQL word for word."""
    import re

    from research_job.publish.pgvector import ALBUM_FILTER, NEAREST_SQL

    doc = (Path(__file__).resolve().parents[2] / "docs/publishing.md").read_text()
    block = doc[doc.index("SELECT row_id, track_id, album_id") : doc.index("LIMIT $3;") + len("LIMIT $3;")]

    def norm(text: str) -> str:
        text = re.sub(r"--[^\n]*", "", text).replace(";", "")
        return " ".join(text.split())

    code = NEAREST_SQL.replace("{album_filter}", ALBUM_FILTER)
    for a, b in [("{table}", '"<table>"'), ("%(track_id)s", "$1"), ("%(candidates)s", "$2"), ("%(k)s", "$3")]:
        code = code.replace(a, b)
    assert norm(block) == norm(code)


def test_a_live_publish_logs_and_reports_no_secret(tmp_path: Path, db: str) -> None:
    """pgserver trusts local connections, so a URL with any password gets in: the publish runs through the CLI
    (INFO and DEBUG log on), as a libpq keyword string with a quoted password and as a URL with
    ``&password=``; neither shows the secret, and a failure inside the transaction names the redacted URL."""
    from click.testing import CliRunner

    from research_job.cli import cli

    socket_dir = db.split("host=", 1)[1].split("&", 1)[0]
    keyword = f"host={socket_dir} dbname=postgres user=postgres password='with s3cret space'"
    query = f"{db}&password=s3cret"
    for i, url in enumerate([keyword, query]):
        c = make_version(
            tmp_path / str(i), model=f"secret-model-{i}", n=12, dim=4, indexes=("hnswlib",), with_eval=False
        )
        args = [
            "-v",
            "publish",
            "--to",
            "pgvector",
            "--version-dir",
            str(c.layout.version_dir),
            "--database-url",
            url,
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert f"v1_model_secret-model-{i}/" in result.output and "password=***" in result.output
        assert "s3cret" not in result.output and "with s" not in result.output

    def fail(conn: Any) -> None:
        conn.execute("SELECT 1 / 0")

    c = make_version(
        tmp_path / "fail", model="secret-model-fail", n=12, dim=4, indexes=("hnswlib",), with_eval=False
    )
    with pytest.raises(StorageError) as ei:
        publish_pgvector(c.layout.version_dir, database_url=query, before_commit=fail)
    msg = str(ei.value)
    assert msg.startswith("pgvector publish of v1_model_secret-model-fail/") and "password=***" in msg
    assert "division by zero" in msg and "s3cret" not in msg
    assert ei.value.__cause__ is None and ei.value.__context__ is None
