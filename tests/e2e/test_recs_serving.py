"""Recommendations end to end: a listening log -> export-interactions -> train-recs -> validate -> the real Node
API serving the five endpoints over HTTP, with POST /feedback stored in a real PostgreSQL (pgserver) and read back
by the next export-interactions.

Parity: for every listener of the trained artifacts and every model (hybrid, cf, content, popularity), Node's
``POST /recommend/user`` returns the tracks and scores of :func:`research_job.recs.scoring.recommend` (Python, the
reference the evaluation ranks with); ``POST /recommend/similar`` the cosine to the seeds' mean computed here.
The log is seeded and planted: listeners of one composer group play and like that group's tracks and skip others.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from research_job import artifact_checks
from research_job.layout import ArtifactLayout
from research_job.recs import scoring
from tests.helpers.artifact_factory import Corpus, make_version
from tests.helpers.node_server import running_server
from tests.helpers.pg import Postgres, start_postgres
from tests.helpers.recs_factory import add_recs, cli_ok, train

pytestmark = pytest.mark.slow

N_USERS = 40
MODELS = ("hybrid", "cf", "content", "popularity")


def post_json(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON: (status, JSON body)."""
    req = urllib.request.Request(  # noqa: S310 (loopback URL built by the test)
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corpus, Path]]:
    root = tmp_path_factory.mktemp("recs_e2e")
    corpus = make_version(root, n=120, dim=16, n_composers=8)
    src = add_recs(corpus, root / "events.csv", N_USERS)
    yield corpus, src


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(trained: tuple[Corpus, Path], pg: Postgres) -> Iterator[str]:
    corpus, _ = trained
    with running_server(corpus.layout.version_dir, FEEDBACK_DATABASE_URL=pg.uri) as base:
        yield base


def test_the_trained_folder_validates(trained: tuple[Corpus, Path]) -> None:
    corpus, _ = trained
    assert artifact_checks.check(corpus.layout) == []
    ev = json.loads(corpus.layout.path("recs_eval").read_text(encoding="utf-8"))
    assert {"popularity", "trending", "als", "content", "hybrid"} <= set(ev["models"])


def test_node_recommends_what_python_recommends_for_every_listener(
    trained: tuple[Corpus, Path], api: str
) -> None:
    corpus, _ = trained
    arts = scoring.load_recs(corpus.layout.version_dir)
    users = json.loads(corpus.layout.path("recs_user_ids").read_text(encoding="utf-8"))["user_ids"]
    assert len(users) == N_USERS
    for user in users:
        for model in MODELS:
            want = scoring.recommend(arts, user, 10, model=model)
            status, got = post_json(f"{api}/recommend/user", {"user_id": user, "k": 10, "model": model})
            assert status == 200, got
            assert got["known_user"] is True
            assert [g["track_id"] for g in got["items"]] == [w["track_id"] for w in want], (user, model)
            np.testing.assert_allclose(
                [g["score"] for g in got["items"]],
                [w["score"] for w in want],
                atol=1e-4,
                err_msg=f"{user} {model}",
            )
            assert {g["source"] for g in got["items"]} == {w["source"] for w in want}


def test_similar_is_the_cosine_to_the_seeds_mean(trained: tuple[Corpus, Path], api: str) -> None:
    corpus, _ = trained
    x, ids = corpus.vectors.astype(np.float64), corpus.track_ids
    seeds = [ids[3], ids[40]]
    status, got = post_json(f"{api}/recommend/similar", {"track_ids": seeds, "k": 8})
    assert status == 200, got
    q = x[[3, 40]].mean(axis=0)
    q /= np.linalg.norm(q)
    s = x @ q
    s[[3, 40]] = -np.inf
    order = sorted(range(len(ids)), key=lambda i: (-s[i], i))[:8]
    assert [g["track_id"] for g in got["items"]] == [ids[i] for i in order]
    np.testing.assert_allclose([g["score"] for g in got["items"]], s[order], atol=1e-5)


def test_radio_is_deterministic_spaced_and_continues_without_repeats(
    trained: tuple[Corpus, Path], api: str
) -> None:
    corpus, _ = trained
    by_id = {r["track_id"]: r for r in corpus.rows}
    body = {"seed_track_id": corpus.track_ids[7], "n": 12, "composer_gap": 2, "album_gap": 3}
    s1, first = post_json(f"{api}/radio/generate", body)
    s2, again = post_json(f"{api}/radio/generate", body)
    assert s1 == s2 == 200, first
    assert [t["track_id"] for t in first["tracks"]] == [t["track_id"] for t in again["tracks"]]
    s3, more = post_json(f"{api}/radio/generate", {**body, "continuation": first["continuation"]})
    assert s3 == 200, more
    played = [t["track_id"] for t in first["tracks"] + more["tracks"]]
    assert len(played) == 24 and len(set(played)) == 24 and corpus.track_ids[7] not in played
    albums = [by_id[t]["album_id"] for t in played]
    for i in range(1, len(albums)):
        assert albums[i] not in albums[max(0, i - 3) : i], (i, albums)
    bad = post_json(f"{api}/radio/generate", {**body, "continuation": "bm90IGEgdG9rZW4"})
    assert bad[0] == 400 and "continuation" in json.dumps(bad[1])


def test_daily_mix_gives_one_mix_per_taste_cluster(trained: tuple[Corpus, Path], api: str) -> None:
    corpus, _ = trained
    status, got = post_json(f"{api}/daily-mix", {"user_id": "u001", "k": 2, "size": 6})
    assert status == 200, got
    assert 1 <= len(got["mixes"]) <= 2
    for mix in got["mixes"]:
        assert 1 <= len(mix["tracks"]) <= 6
        assert len({t["track_id"] for t in mix["tracks"]}) == len(mix["tracks"])
    assert post_json(f"{api}/daily-mix", {"user_id": "u001", "k": 2, "size": 6}) == (status, got)
    assert post_json(f"{api}/daily-mix", {"user_id": "nobody-here", "k": 2})[0] == 404


def test_feedback_is_stored_once_changes_picks_and_feeds_the_next_training(
    trained: tuple[Corpus, Path], api: str, pg: Postgres
) -> None:
    corpus, src = trained
    newcomer = "new-listener-1"
    status, cold = post_json(f"{api}/recommend/user", {"user_id": newcomer, "k": 5})
    assert status == 200 and cold["known_user"] is False
    assert {i["source"] for i in cold["items"]} == {"popularity"}
    liked = corpus.track_ids[11]
    event = {"user_id": newcomer, "track_id": liked, "event": "like", "idempotency_key": "fb-000000001"}
    assert post_json(f"{api}/feedback", event)[0] == 201
    dup = post_json(f"{api}/feedback", event)
    assert dup[0] == 200 and dup[1].get("duplicate") is True
    status, warm = post_json(f"{api}/recommend/user", {"user_id": newcomer, "k": 5})
    assert status == 200 and {i["source"] for i in warm["items"]} == {"content"}
    assert liked not in [i["track_id"] for i in warm["items"]]
    # a skip through feedback keeps the track off that listener's radio
    radio = post_json(f"{api}/radio/generate", {"user_id": "u002", "n": 10})[1]
    skipped = radio["tracks"][0]["track_id"]
    skip = {"user_id": "u002", "track_id": skipped, "event": "skip", "idempotency_key": "fb-000000002"}
    assert post_json(f"{api}/feedback", skip)[0] == 201
    again = post_json(f"{api}/radio/generate", {"user_id": "u002", "n": 10})[1]
    assert skipped not in [t["track_id"] for t in again["tracks"]]
    # errors name the field; an unknown track is a 404
    bad = post_json(f"{api}/feedback", {**event, "event": "love", "idempotency_key": "fb-000000003"})
    assert bad[0] == 400 and "event" in json.dumps(bad[1])
    missing = post_json(
        f"{api}/feedback", {**event, "track_id": "no-such-track", "idempotency_key": "fb-000000004"}
    )
    assert missing[0] == 404 and "no-such-track" in json.dumps(missing[1])
    # the next export reads the stored events back (origin "feedback") and train-recs learns the newcomer
    vdir = str(corpus.layout.version_dir)
    cli_ok(
        "export-interactions",
        "--version-dir",
        vdir,
        "--csv-path",
        str(src),
        "--feedback-database-url",
        pg.uri,
    )
    report = json.loads(corpus.layout.path("interactions_report").read_text(encoding="utf-8"))
    assert report["counts"]["by_origin"]["feedback"] == 2
    train(vdir)
    users = json.loads(ArtifactLayout(corpus.layout.version_dir).path("recs_user_ids").read_text())[
        "user_ids"
    ]
    assert newcomer in users
